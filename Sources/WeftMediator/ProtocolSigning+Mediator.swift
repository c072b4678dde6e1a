// The protocol pieces participants share with the mediator (signed messages, reject reason
// ids, request ids) live in WeftProtocol; the mediator's API hands them out (verdicts carry
// `RequestID`s and signed messages), so its users get them with it.
@_exported public import WeftProtocol
import WeftWire

extension ProtocolSigning {
    /// `content(of:)` with the mediator's error: content that does not decode is a
    /// malformed response.
    static func mediatorContent(of message: Weft.V1.SignedProtocolMessage) throws(MediatorError)
        -> Weft.V1.SignedContent
    {
        do throws(ProtocolMessageError) {
            return try content(of: message)
        } catch {
            throw .malformedResponse("\(error)")
        }
    }
}
