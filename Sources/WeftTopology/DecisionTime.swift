public import WeftWire

extension Weft.V1.DomainParameters {
    /// The `mediator_reaction_timeout` a new domain starts with (`weft` domain managers), as in
    /// Canton.
    public static let defaultMediatorReactionTimeoutMicros: Int64 = 30_000_000

    /// The time after which a request sequenced at `requestMicros` (µs since the epoch) has no
    /// verdict any more: its sequencing time plus `participant_response_timeout` plus
    /// `mediator_reaction_timeout`. The mediator's verdict must be sequenced by then, and a
    /// participant whose stream passes it without one rejects the request itself. Both read it
    /// from the parameters in force at the request's time, so every node computes the same
    /// instant.
    ///
    /// Nil — no decision time: participants wait for a verdict however late, and the mediator
    /// sends one however late — without a response timeout (parameters not yet known) or
    /// without `mediator_reaction_timeout`. The latter keeps a domain whose parameters predate it
    /// as it was: its mediator sent late verdicts under later windows, and a participant
    /// replaying that stream must apply them as its peers did.
    public func decisionTime(ofRequestAt requestMicros: Int64) -> Int64? {
        guard let response = participantResponseTimeout?.micros, let reaction = mediatorReactionTimeout?.micros else {
            return nil
        }
        let (sum, overflow) = requestMicros.addingReportingOverflow(max(0, response))
        let (decision, overflow2) = sum.addingReportingOverflow(max(0, reaction))
        return overflow || overflow2 ? .max : decision
    }
}
