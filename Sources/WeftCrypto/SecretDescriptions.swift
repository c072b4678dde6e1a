// Types that hold secret bytes describe and reflect themselves without them: Swift's default
// description and mirror (`"\(value)"`, `dump`, a logged error's payload) would otherwise print
// the secret.

extension TLSCredentials: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    public var description: String { "TLSCredentials(certificate: \(certificatePEM.utf8.count) bytes of PEM, private key: redacted)" }
    public var debugDescription: String { description }
}

extension SessionKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    public var description: String { "SessionKey(key: redacted, wrapped for \(wrapped.count) recipients)" }
    public var debugDescription: String { description }
}

extension ViewSeed: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    public var description: String { "ViewSeed(redacted)" }
    public var debugDescription: String { description }
}

extension SigningPrivateKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    public var description: String { "SigningPrivateKey(public key \(publicKey.fingerprint), private part redacted)" }
    public var debugDescription: String { description }
}

extension EncryptionPrivateKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    public var description: String { "EncryptionPrivateKey(private part redacted)" }
    public var debugDescription: String { description }
}
