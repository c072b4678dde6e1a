import COpenSSL
import Logging
import WeftCrypto

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Owns an `SSL_CTX` built from a `TLSConfiguration`: shared by every
/// connection of one listener or client, immutable once built.
public final class TLSContext: @unchecked Sendable {
    // SSL_CTX is safe to share between threads once configured; nothing here
    // changes it after `init`.
    let pointer: OpaquePointer
    let configuration: TLSConfiguration
    /// ALPN wire form: one length byte, then the protocol id.
    let alpnWire: [UInt8]
    /// A copy of `alpnWire` that the server's ALPN callback reads; freed with the context.
    private let alpnStorage: UnsafeMutablePointer<UInt8>
    private let keyLog: KeyLogFile?

    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        // Everything that can fail before the instance is whole comes first: once all
        // stored properties are set, a later throw runs `deinit`, which frees the context.
        keyLog = try configuration.keyLogPath.map { (path) throws(TLSError) -> KeyLogFile in try KeyLogFile(path: path) }
        if let path = configuration.keyLogPath {
            Logger(label: "weft.tls").warning(
                "writing TLS session secrets to the key log: anyone who reads it can decrypt this node's traffic; use it only for debugging",
                metadata: ["key_log": "\(path)"])
        }
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_method()) else { throw .configuration("SSL_CTX_new: \(OpenSSL.takeError())") }
        pointer = context
        self.configuration = configuration
        let id = Array(configuration.applicationProtocol.utf8)
        alpnWire = [UInt8(id.count)] + id
        alpnStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: alpnWire.count)
        alpnStorage.initialize(from: alpnWire, count: alpnWire.count)

        let minimum = configuration.minimumVersion == .v1_2 ? TLS1_2_VERSION : TLS1_3_VERSION
        guard COpenSSL_SSL_CTX_set_min_proto_version(context, minimum) == 1 else {
            throw .configuration("cannot require \(configuration.minimumVersion): \(OpenSSL.takeError())")
        }
        if let credentials = configuration.credentials { try loadCredentials(credentials) }
        if let roots = configuration.trustRootsPEM { try loadTrustRoots(roots) }

        switch configuration.role {
        case .client:
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            guard SSL_CTX_set_alpn_protos(context, alpnWire, UInt32(alpnWire.count)) == 0 else {
                throw .configuration("cannot set ALPN: \(OpenSSL.takeError())")
            }
        case .server(let requireClientCertificate):
            guard configuration.credentials != nil else { throw .configuration("a server needs a certificate and key") }
            if requireClientCertificate {
                guard configuration.trustRootsPEM != nil else {
                    throw .configuration("mutual TLS needs the roots client certificates must chain to")
                }
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            } else {
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            }
            // Select our protocol if the client offers it; otherwise no ALPN, and the
            // handshake check below refuses the connection with a clear error.
            SSL_CTX_set_alpn_select_cb(
                context,
                { _, out, outLength, input, inputLength, argument in
                    guard let argument, let input else { return SSL_TLSEXT_ERR_ALERT_FATAL }
                    let wanted = argument.assumingMemoryBound(to: UInt8.self)
                    var selected: UnsafeMutablePointer<UInt8>?
                    let status = SSL_select_next_proto(&selected, outLength, wanted, UInt32(wanted[0]) + 1, input, inputLength)
                    guard status == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_ALERT_FATAL }
                    out?.pointee = UnsafePointer(selected)
                    return SSL_TLSEXT_ERR_OK
                }, UnsafeMutableRawPointer(alpnStorage))
        }
        if let keyLog {
            SSL_CTX_set_ex_data(context, Self.keyLogIndex, Unmanaged.passUnretained(keyLog).toOpaque())
            SSL_CTX_set_keylog_callback(context) { ssl, line in
                guard let ssl, let line, let context = SSL_get_SSL_CTX(ssl),
                    let file = SSL_CTX_get_ex_data(context, TLSContext.keyLogIndex)
                else { return }
                Unmanaged<KeyLogFile>.fromOpaque(file).takeUnretainedValue().append(line)
            }
        }
    }

    deinit {
        SSL_CTX_free(pointer)
        alpnStorage.deallocate()
    }

    // MARK: - Configuration helpers

    private static let keyLogIndex: Int32 = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, nil, nil, nil, nil)

    private func loadCredentials(_ credentials: TLSCredentials) throws(TLSError) {
        let certificates = try Self.readCertificates(credentials.certificatePEM)
        defer { certificates.forEach { X509_free($0) } }
        guard let leaf = certificates.first else { throw .configuration("the certificate PEM holds no certificate") }
        guard SSL_CTX_use_certificate(pointer, leaf) == 1 else { throw .configuration("certificate: \(OpenSSL.takeError())") }
        for intermediate in certificates.dropFirst() {
            guard COpenSSL_SSL_CTX_add1_chain_cert(pointer, intermediate) == 1 else {
                throw .configuration("certificate chain: \(OpenSSL.takeError())")
            }
        }
        let keyBytes = Array(credentials.privateKeyPEM.utf8)
        guard let bio = BIO_new_mem_buf(keyBytes, Int32(keyBytes.count)) else { throw .configuration("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw .configuration("private key: \(OpenSSL.takeError())") }
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(pointer, key) == 1, SSL_CTX_check_private_key(pointer) == 1 else {
            throw .configuration("the private key does not match the certificate: \(OpenSSL.takeError())")
        }
    }

    private func loadTrustRoots(_ pem: String) throws(TLSError) {
        let certificates = try Self.readCertificates(pem)
        defer { certificates.forEach { X509_free($0) } }
        guard !certificates.isEmpty else { throw .configuration("the trusted roots PEM holds no certificate") }
        guard let store = SSL_CTX_get_cert_store(pointer) else { throw .configuration("SSL_CTX_get_cert_store") }
        for certificate in certificates {
            guard X509_STORE_add_cert(store, certificate) == 1 else { throw .configuration("trusted root: \(OpenSSL.takeError())") }
        }
    }

    private static func readCertificates(_ pem: String) throws(TLSError) -> [OpaquePointer] {
        let bytes = Array(pem.utf8)
        guard let bio = BIO_new_mem_buf(bytes, Int32(bytes.count)) else { throw .configuration("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        var certificates: [OpaquePointer] = []
        while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { certificates.append(certificate) }
        ERR_clear_error()  // the loop ends on a "no start line" error
        return certificates
    }
}

/// Appends NSS key log lines (`CLIENT_HANDSHAKE_TRAFFIC_SECRET …`) to a file
/// of mode 0600, for decrypting captures in Wireshark. Each line is one
/// `write` to a file opened with O_APPEND, so lines from several connections
/// never interleave.
final class KeyLogFile: @unchecked Sendable {
    private let descriptor: Int32

    init(path: String) throws(TLSError) {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .configuration("cannot open the key log \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    func append(_ line: UnsafePointer<CChar>) {
        let length = strlen(line)
        var bytes = [UInt8](repeating: 0x0A, count: length + 1)  // the line, then "\n"
        bytes.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: line, byteCount: length) }
        _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }
}
