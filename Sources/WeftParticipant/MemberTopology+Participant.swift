public import WeftTopology

/// A participant node follows its domain's topology with `MemberTopology`: persisted, fed with
/// the topology snapshot and broadcasts of its own stream.
extension MemberTopology: ParticipantTopology {}
