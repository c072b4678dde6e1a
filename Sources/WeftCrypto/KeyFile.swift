import COpenSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Private keys on disk: PKCS#8 PEM (what `openssl genpkey` writes and
/// `openssl pkey` reads), in files of mode 0600. A node refuses a key file
/// that others can read: a leaked signing key lets anyone act as the node.
public enum KeyFile {
    /// Writes `key` to a new file of mode 0600; refuses to replace a file.
    public static func write(_ key: SigningPrivateKey, to path: String) throws(CryptoError) {
        try write(key.key, to: path)
    }

    /// Writes `key` to a new file of mode 0600; refuses to replace a file.
    public static func write(_ key: EncryptionPrivateKey, to path: String) throws(CryptoError) {
        try write(key.key, to: path)
    }

    /// Reads an Ed25519 key file, checking its permissions first.
    public static func readSigningKey(at path: String) throws(CryptoError) -> SigningPrivateKey {
        let key = try read(path, type: EVP_PKEY_ED25519, name: "Ed25519")
        return try SigningPrivateKey(key: key)
    }

    /// Reads an X25519 key file, checking its permissions first.
    public static func readEncryptionKey(at path: String) throws(CryptoError) -> EncryptionPrivateKey {
        let key = try read(path, type: EVP_PKEY_X25519, name: "X25519")
        return try EncryptionPrivateKey(key: key)
    }

    private static func write(_ key: PKey, to path: String) throws(CryptoError) {
        ERR_clear_error()
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSL.failure("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key.pointer, nil, nil, 0, nil, nil) == 1 else {
            throw OpenSSL.failure("PEM_write_bio_PrivateKey")
        }
        var data: UnsafeMutablePointer<CChar>?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data)
        guard length > 0, let data else { throw OpenSSL.failure("BIO_get_mem_data") }
        try createFile(path, Array(UnsafeRawBufferPointer(start: data, count: length)), mode: 0o600)
    }

    /// Creates `path` with `mode` and writes `contents`, synced; never
    /// replaces an existing file.
    static func createFile(_ path: String, _ contents: [UInt8], mode: mode_t) throws(CryptoError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw .keyFile(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var written = 0
        while written < contents.count {
            let result = contents.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            guard result > 0 else { throw .keyFile(path: path, reason: "cannot write: \(String(cString: strerror(errno)))") }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw .keyFile(path: path, reason: "cannot sync: \(String(cString: strerror(errno)))") }
    }

    /// A small file's contents, refusing a private one that others can read.
    static func readBytes(_ path: String, requirePrivate: Bool) throws(CryptoError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .keyFile(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .keyFile(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
        let mode = status.st_mode & 0o777
        guard !requirePrivate || mode & 0o077 == 0 else {
            throw .keyFilePermissions(path: path, mode: "0" + String(mode, radix: 8))
        }
        guard status.st_size > 0, status.st_size < 64 * 1024 else {
            throw .keyFile(path: path, reason: "\(status.st_size) bytes is not the size of a PEM file")
        }
        var contents = [UInt8](repeating: 0, count: Int(status.st_size))
        var total = 0
        while total < contents.count {
            let result = contents.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + total, $0.count - total) }
            guard result > 0 else { throw .keyFile(path: path, reason: "cannot read: \(String(cString: strerror(errno)))") }
            total += result
        }
        return contents
    }

    static func readText(_ path: String, requirePrivate: Bool) throws(CryptoError) -> String {
        String(decoding: try readBytes(path, requirePrivate: requirePrivate), as: UTF8.self)
    }

    private static func read(_ path: String, type: Int32, name: String) throws(CryptoError) -> PKey {
        let contents = try readBytes(path, requirePrivate: true)
        ERR_clear_error()
        guard let bio = BIO_new_mem_buf(contents, Int32(contents.count)) else { throw OpenSSL.failure("BIO_new_mem_buf") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            ERR_clear_error()
            throw .keyFile(path: path, reason: "not a PEM private key (PKCS#8)")
        }
        let owned = PKey(takingOwnership: key)
        guard EVP_PKEY_get_base_id(key) == type else {
            throw .keyFile(path: path, reason: "holds a key of another algorithm; expected \(name)")
        }
        return owned
    }
}
