public import WeftWire

extension Weft.V1.DomainParameters {
    /// `mediator_reaction_timeout` when the parameters leave it unset (Canton's default too).
    public static let defaultMediatorReactionTimeoutMicros: Int64 = 30_000_000

    /// The time after which a request sequenced at `requestMicros` (µs since the epoch) has no
    /// verdict any more: its sequencing time plus `participant_response_timeout` plus
    /// `mediator_reaction_timeout`. The mediator's verdict must be sequenced by then, and a
    /// participant whose stream passes it without one rejects the request itself. Both read it
    /// from the parameters in force at the request's time, so every node computes the same
    /// instant. Nil without a response timeout (parameters not yet known).
    public func decisionTime(ofRequestAt requestMicros: Int64) -> Int64? {
        guard let response = participantResponseTimeout?.micros else { return nil }
        let reaction = mediatorReactionTimeout?.micros ?? Self.defaultMediatorReactionTimeoutMicros
        let (sum, overflow) = requestMicros.addingReportingOverflow(max(0, response))
        let (decision, overflow2) = sum.addingReportingOverflow(max(0, reaction))
        return overflow || overflow2 ? .max : decision
    }
}
