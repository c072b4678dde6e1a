import Foundation
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport

/// The seed's onboarding, typed as an operator types it: the domain owner runs a
/// sequencer and a domain manager; a participant prints its id, is refused until the
/// owner allow-lists it with set-state, then connects with connect-multi and the root
/// certificate.
@Suite(.timeLimit(.minutes(5))) struct OnboardingTests {
    @Test func theSeedsOnboardingWithTheCLI() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            func weft(_ arguments: String...) async throws -> (Int32, String, String) {
                try await WeftProcess.run(arguments, directory: dir)
            }
            // The domain owner's keys, certificates and nodes (sequencer, domain manager, mediator).
            let processDomain = try await ProcessDomain.start(fixture: fixture, directory: directory)
            let domain = processDomain.process
            let (domainID, sequencerPort, managerPort) = (processDomain.domainID, processDomain.sequencerPort, processDomain.managerPort)

            // The participant's operator.
            try processDomain.writeParticipant("participant1", directory: directory)
            let (_, idLine, idError) = try await weft("participant", "id", "-c", "participant1.yaml")
            let participant = idLine.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(participant.hasPrefix("participant1::1220"), "\(idError)")
            // Not allow-listed yet: refused with what to ask for.
            let (refused, _, refusal) = try await weft(
                "participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem", "-c", "participant1.yaml")
            #expect(refused != 0)
            #expect(refusal.contains("is not allow-listed on \(domainID)") && refusal.contains("weft domain-manager set-state \(participant)"), "\(refusal)")

            // The domain owner allow-lists it (admin API with mutual TLS).
            let admin = processDomain.admin
            let (allowed, allowedOutput, allowedError) = try await WeftProcess.run(
                ["domain-manager", "set-state", participant, "--permission", "submission"] + admin, directory: dir)
            #expect(allowed == 0, "\(allowedError)\ndomain log:\n\(domain.standardError.suffix(4000))")
            #expect(allowedOutput.contains("\(participant): submission, ordinary, in effect after"), "\(allowedOutput)")
            // Without the operator's certificate the admin API refuses the connection.
            let (anonymous, _, _) = try await WeftProcess.run(
                ["domain-manager", "members", "--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem"], directory: dir)
            #expect(anonymous != 0)

            // Now the participant connects and authenticates.
            let (connected, connectedOutput, connectedError) = try await weft(
                "participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem", "-c", "participant1.yaml")
            #expect(connected == 0, "\(connectedError)")
            #expect(connectedOutput.contains("PAR::\(participant) is a member of \(domainID) (mydomain) and authenticated at 127.0.0.1:\(sequencerPort)"), "\(connectedOutput)")
            // The domain manager lists it, keys registered.
            let (_, members, membersError) = try await WeftProcess.run(["domain-manager", "members", "--output", "json"] + admin, directory: dir)
            #expect(members.contains(#""member":"PAR::\#(participant)""#) && members.contains(#""registered":true"#), "\(members) \(membersError)")

            // The participant as a daemon: connected through its admin API, it keeps the connection
            // in its database and resumes it after a restart.
            func startParticipant() async throws -> (WeftProcess, [String]) { try await processDomain.startParticipant("participant1") }
            var (participantNode, participantAPI) = try await startParticipant()
            let (_, noDomains, _) = try await WeftProcess.run(["participant", "domains"] + participantAPI, directory: dir)
            #expect(noDomains.contains("no domain connections"), "\(noDomains)")
            // The Ledger API answers, but says it has no domain yet.
            let (unconnected, _, unconnectedError) = try await WeftProcess.run(["ledger-end"] + participantAPI, directory: dir)
            #expect(unconnected != 0 && unconnectedError.contains("PARTICIPANT_NOT_CONNECTED"), "\(unconnectedError)")
            let (joined, joinedOutput, joinedError) = try await weft(
                "participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem",
                "--remote", participantAPI[1], "--remote-plaintext")
            #expect(joined == 0, "\(joinedError)\nparticipant log:\n\(participantNode.standardError.suffix(4000))")
            #expect(joinedOutput.contains("\(participant) is connected to \(domainID) (mydomain) through https://127.0.0.1:\(sequencerPort)"), "\(joinedOutput)")
            participantNode.signal(SIGTERM)
            #expect(await participantNode.exitStatus() == 0, "\(participantNode.standardError)")
            (participantNode, participantAPI) = try await startParticipant()
            let (_, domains, _) = try await WeftProcess.run(["participant", "domains", "--output", "json"] + participantAPI, directory: dir)
            #expect(
                domains.contains(#""alias":"mydomain""#) && domains.contains(#""connected":true"#) && domains.contains(#""domain":"\#(domainID)""#),
                "\(domains)")
            #expect(participantNode.standardError.contains("connected to sequencer"), "\(participantNode.standardError.suffix(4000))")
            let (ended, ledgerEnd, ledgerEndError) = try await WeftProcess.run(["ledger-end"] + participantAPI, directory: dir)
            #expect(ended == 0 && ledgerEnd == "0\n", "\(ledgerEnd) \(ledgerEndError)")
            participantNode.signal(SIGTERM)
            #expect(await participantNode.exitStatus() == 0, "\(participantNode.standardError)")

            // The domain parameters: shown, changed (signed and broadcast), shown again.
            let (changed, _, changeError) = try await WeftProcess.run(
                ["domain-manager", "parameters", "--set", "participant-response-timeout=45s"] + admin, directory: dir)
            #expect(changed == 0, "\(changeError)")
            let (_, parameters, _) = try await WeftProcess.run(["domain-manager", "parameters", "--output", "json"] + admin, directory: dir)
            #expect(parameters.contains(#""participant-response-timeout-micros":45000000"#), "\(parameters)")

            domain.signal(SIGTERM)
            #expect(await domain.exitStatus() == 0, "\(domain.standardError)")
        }
    }
}
