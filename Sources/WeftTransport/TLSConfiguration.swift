public import WeftCrypto

/// How one side of a Weft TLS connection authenticates itself and its peer.
///
/// TLS 1.3 only unless `minimumVersion` allows 1.2; ALPN `weft/1` required on both sides. Servers present a
/// certificate chaining to the domain's root (`weft certs`); clients verify
/// it against `trustRootsPEM` and the expected hostname. Mutual TLS adds the
/// same in the other direction.
public struct TLSConfiguration: Sendable {
    public enum Role: Sendable {
        /// Verifies the server's certificate for `serverHostname` (also sent as SNI).
        case client(serverHostname: String)
        /// With `requireClientCertificate`, refuses clients without a certificate
        /// chaining to `trustRootsPEM` (mutual TLS).
        case server(requireClientCertificate: Bool)
    }

    public var role: Role
    /// This side's certificate (PEM, leaf first; more certificates form the chain) and key.
    /// Required for servers; for clients only with mutual TLS.
    public var credentials: TLSCredentials?
    /// PEM certificates this side trusts: the domain's root.
    public var trustRootsPEM: String?
    /// The ALPN protocol id both sides must agree on.
    public var applicationProtocol = "weft/1"
    /// Where to append the NSS key log (for Wireshark); nil: none. Secret.
    public var keyLogPath: String?
    /// The oldest TLS version this side accepts: 1.3 unless an operator opts
    /// in to 1.2 for a peer that cannot do better.
    public var minimumVersion: TLSVersion = .v1_3

    public init(role: Role, credentials: TLSCredentials? = nil, trustRootsPEM: String? = nil, keyLogPath: String? = nil) {
        self.role = role
        self.credentials = credentials
        self.trustRootsPEM = trustRootsPEM
        self.keyLogPath = keyLogPath
    }
}

/// A TLS protocol version Weft can negotiate.
public enum TLSVersion: Sendable, Hashable, CustomStringConvertible {
    /// TLS 1.2: only by explicit configuration.
    case v1_2
    /// TLS 1.3: the default and the only version unless configured otherwise.
    case v1_3

    public var description: String {
        switch self {
        case .v1_2: "TLS 1.2"
        case .v1_3: "TLS 1.3"
        }
    }
}

/// Why a TLS connection failed. The description says what to check.
public enum TLSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The configuration cannot be used (missing certificate, unreadable PEM, …).
    case configuration(String)
    /// The handshake failed; `reason` is OpenSSL's, `verification` the
    /// certificate verification result when that was the cause.
    case handshakeFailed(reason: String, verification: String?)
    /// The peer does not speak `weft/1`.
    case applicationProtocolMismatch(offered: String?)
    /// The handshake did not complete in time.
    case handshakeTimeout
    /// The connection closed before the handshake completed.
    case closedDuringHandshake
    /// After the handshake, OpenSSL could not read or write a record (a bad record MAC, an
    /// unexpected message): the connection cannot go on.
    case recordFailed(reason: String)

    public var description: String {
        switch self {
        case .configuration(let reason):
            return "TLS configuration: \(reason)"
        case .handshakeFailed(let reason, let verification?):
            return "TLS handshake failed: certificate verification: \(verification) (\(reason)); check the peer's certificate, the trusted root and the hostname"
        case .handshakeFailed(let reason, nil):
            return "TLS handshake failed: \(reason)"
        case .applicationProtocolMismatch(let offered):
            return "the peer does not speak weft/1 (ALPN: \(offered ?? "none"))"
        case .handshakeTimeout:
            return "TLS handshake timed out"
        case .closedDuringHandshake:
            return "the connection closed during the TLS handshake"
        case .recordFailed(let reason):
            return "TLS record failed: \(reason); the connection is closed (a corrupted or hostile peer, or a bug: see both sides' logs)"
        }
    }
}
