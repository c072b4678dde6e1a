import COpenSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TLS certificate and its private key, both PEM.
public struct TLSCredentials: Sendable, Hashable {
    /// The certificate, `-----BEGIN CERTIFICATE-----`.
    public var certificatePEM: String
    /// The private key, PKCS#8 `-----BEGIN PRIVATE KEY-----`. Secret.
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }

    /// Writes the certificate (mode 0644: it is public) and the key (0600) to
    /// new files; refuses to replace either.
    public func write(certificateTo certificatePath: String, keyTo keyPath: String) throws(CryptoError) {
        try KeyFile.createFile(certificatePath, Array(certificatePEM.utf8), mode: 0o644)
        try KeyFile.createFile(keyPath, Array(privateKeyPEM.utf8), mode: 0o600)
    }

    /// Reads a certificate file and a key file (refused if others can read it).
    public static func read(certificateAt certificatePath: String, keyAt keyPath: String) throws(CryptoError) -> TLSCredentials {
        TLSCredentials(
            certificatePEM: try KeyFile.readText(certificatePath, requirePrivate: false),
            privateKeyPEM: try KeyFile.readText(keyPath, requirePrivate: true))
    }
}

/// The domain owner's certificate authority, for the seed's step "the
/// provider passes the root public cert": a self-signed root, and node
/// certificates it signs for sequencers and participants, without
/// hand-written openssl incantations.
///
/// TLS keys are ECDSA P-256, which every TLS stack a client author may use
/// accepts; Weft's protocol identities stay Ed25519 (`SigningPrivateKey`).
public enum CertificateAuthority {
    /// A self-signed root certificate (CA:TRUE with pathlen:0: it signs node certificates,
    /// never another CA; keyCertSign, cRLSign).
    public static func makeRoot(commonName: String, validDays: Int = 3650) throws(CryptoError) -> TLSCredentials {
        let key = try generateP256()
        let certificate = try build(
            subject: commonName, key: key.pointer, issuer: nil, issuerKey: key.pointer, validDays: validDays,
            extensions: [
                (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                (NID_key_usage, "critical,keyCertSign,cRLSign"),
                (NID_subject_key_identifier, "hash"),
            ])
        defer { X509_free(certificate) }
        return TLSCredentials(certificatePEM: try certificatePEM(certificate), privateKeyPEM: try keyPEM(key.pointer))
    }

    /// A node certificate signed by `ca`, valid for `hostnames` (DNS names or
    /// IP addresses) as a TLS server and as a TLS client (mutual TLS).
    public static func issue(
        commonName: String, hostnames: [String], validDays: Int = 825, signedBy ca: TLSCredentials
    ) throws(CryptoError) -> TLSCredentials {
        guard !hostnames.isEmpty else { throw .openSSL(function: "issue", reason: "a node certificate needs at least one hostname") }
        let caKey = try readKey(ca.privateKeyPEM)
        let caCertificate = try readCertificate(ca.certificatePEM)
        defer { X509_free(caCertificate) }
        let key = try generateP256()
        let names = try hostnames.map { (name) throws(CryptoError) -> String in
            guard !name.isEmpty, !name.contains(","), !name.contains(":") || OpenSSL.isIPAddress(name) else {
                throw .openSSL(function: "issue", reason: "'\(name)' is not a hostname or IP address")
            }
            return (OpenSSL.isIPAddress(name) ? "IP:" : "DNS:") + name
        }
        let certificate = try build(
            subject: commonName, key: key.pointer, issuer: caCertificate, issuerKey: caKey.pointer, validDays: validDays,
            extensions: [
                (NID_basic_constraints, "critical,CA:FALSE"),
                // A P-256 key signs (TLS 1.3); RFC 5480 allows no keyEncipherment for EC keys.
                (NID_key_usage, "critical,digitalSignature"),
                (NID_ext_key_usage, "serverAuth,clientAuth"),
                (NID_subject_alt_name, names.joined(separator: ",")),
                (NID_subject_key_identifier, "hash"),
                (NID_authority_key_identifier, "keyid:always"),
            ])
        defer { X509_free(certificate) }
        return TLSCredentials(certificatePEM: try certificatePEM(certificate), privateKeyPEM: try keyPEM(key.pointer))
    }

    // MARK: - libcrypto

    private static func generateP256() throws(CryptoError) -> PKey {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw OpenSSL.failure("EVP_PKEY_CTX_new_id(EC)") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1,
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) == 1,
            EVP_PKEY_keygen(context, &key) == 1, let key
        else { throw OpenSSL.failure("EVP_PKEY_keygen(P-256)") }
        return PKey(takingOwnership: key)
    }

    /// Builds and signs a certificate. `issuer` nil means self-signed.
    private static func build(
        subject: String, key: OpaquePointer, issuer: OpaquePointer?, issuerKey: OpaquePointer, validDays: Int,
        extensions: [(Int32, String)]
    ) throws(CryptoError) -> OpaquePointer {
        ERR_clear_error()
        guard let certificate = X509_new() else { throw OpenSSL.failure("X509_new") }
        var ok = X509_set_version(certificate, 2) == 1  // v3
        // A random 127-bit serial, as RFC 5280 asks (positive, at most 20 bytes).
        var serialBytes = try OpenSSL.randomBytes(16)
        serialBytes[0] &= 0x7F
        if let serial = BN_bin2bn(serialBytes, 16, nil) {
            ok = ok && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(certificate)) != nil
            BN_free(serial)
        } else {
            ok = false
        }
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(certificate), -300) != nil  // 5 minutes of clock skew
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(certificate), validDays * 86_400) != nil
        ok = ok && X509_set_pubkey(certificate, key) == 1
        if let name = X509_get_subject_name(certificate) {
            ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, subject, -1, -1, 0) == 1
            ok = ok && X509_set_issuer_name(certificate, issuer.map { X509_get_subject_name($0) } ?? name) == 1
        } else {
            ok = false
        }
        var context = X509V3_CTX()  // zeroed: no config database
        X509V3_set_ctx(&context, issuer ?? certificate, certificate, nil, nil, 0)
        for (nid, value) in extensions where ok {
            guard let extensionValue = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                ok = false
                break
            }
            ok = X509_add_ext(certificate, extensionValue, -1) == 1
            X509_EXTENSION_free(extensionValue)
        }
        ok = ok && X509_sign(certificate, issuerKey, EVP_sha256()) > 0
        guard ok else {
            X509_free(certificate)
            throw OpenSSL.failure("building the certificate for \(subject)")
        }
        return certificate
    }

    private static func certificatePEM(_ certificate: OpaquePointer) throws(CryptoError) -> String {
        try withMemoryBIO { bio in PEM_write_bio_X509(bio, certificate) == 1 }
    }

    /// The key as PKCS#8 PEM.
    private static func keyPEM(_ key: OpaquePointer) throws(CryptoError) -> String {
        try withMemoryBIO { bio in PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 }
    }

    private static func withMemoryBIO(_ write: (OpaquePointer) -> Bool) throws(CryptoError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSL.failure("BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) else { throw OpenSSL.failure("PEM_write") }
        var data: UnsafeMutablePointer<CChar>?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data)
        guard length > 0, let data else { throw OpenSSL.failure("BIO_get_mem_data") }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    private static func readKey(_ pem: String) throws(CryptoError) -> PKey {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        guard let bio = BIO_new_mem_buf(bytes, Int32(bytes.count)) else { throw OpenSSL.failure("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw OpenSSL.failure("reading the CA key") }
        return PKey(takingOwnership: key)
    }

    private static func readCertificate(_ pem: String) throws(CryptoError) -> OpaquePointer {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        guard let bio = BIO_new_mem_buf(bytes, Int32(bytes.count)) else { throw OpenSSL.failure("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else { throw OpenSSL.failure("reading the CA certificate") }
        return certificate
    }
}
