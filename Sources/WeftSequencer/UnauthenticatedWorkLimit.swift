import Synchronization

/// How much work calls without a token may cost a sequencer node: a token bucket shared by
/// `Onboard` calls and by the topology catch-ups that `GetChallenge` and `Authenticate` do for
/// a member this node does not know as active (perhaps onboarded through another node a
/// moment ago). Both need no token, so without a bound anyone who reaches the port over TLS
/// could make the node verify signatures and advance its writers' watermarks (database
/// writes) as fast as it can send calls (DESIGN.md §5: the onboarding call is rate-limited).
/// Beyond it `Onboard` is refused (the participant retries), and a catch-up waits for the
/// writers' heartbeats instead of asking for a write: its answer is as right, only later.
///
/// Members that are active cost no token: their authentication goes on whatever the bucket
/// holds. One bucket per node, not per caller: a flood delays onboarding, not the domain's
/// traffic.
public final class UnauthenticatedWorkLimit: Sendable {
    /// Calls a second the bucket refills with.
    public let perSecond: Double
    /// The most calls let through at once after a quiet spell.
    public let burst: Int
    private let state: Mutex<(tokens: Double, refilled: ContinuousClock.Instant)>

    /// 20 a second, 50 at once: a domain's participants restarting together re-authenticate
    /// without using it (they are active), and onboarding is one call per new participant.
    public init(perSecond: Double = 20, burst: Int = 50) {
        precondition(perSecond >= 0 && burst > 0)
        self.perSecond = perSecond
        self.burst = burst
        state = Mutex((Double(burst), ContinuousClock.now))
    }

    /// Takes one call's worth if the bucket holds it.
    public func take() -> Bool {
        state.withLock { state in
            let now = ContinuousClock.now
            let elapsed = now - state.refilled
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            state.tokens = min(Double(burst), state.tokens + seconds * perSecond)
            state.refilled = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}
