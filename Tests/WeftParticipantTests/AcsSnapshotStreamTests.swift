import Testing
import WeftContracts
import WeftCrypto
import WeftParticipant
import WeftWire

/// How a snapshot travels in `ExportAcs` / `ImportAcs` (docs/participant.md, "Losing the
/// database after pruning"): a header without contracts, then the contracts in batches that
/// keep each message under the transport's limit; reassembled, it is the same snapshot.
struct AcsSnapshotStreamTests {
    static func snapshot(contracts count: Int, bytesEach: Int) -> AcsSnapshot {
        let contracts = (0..<count).map { (number: Int) -> AcsSnapshot.Contract in
            let idBytes: [UInt8] = [UInt8](repeating: UInt8(number % 256), count: 31) + [UInt8(number / 256)]
            let stored: [UInt8] = [UInt8](repeating: UInt8(number % 251), count: bytesEach)
            return AcsSnapshot.Contract(
                id: ContractID(Digest32(idBytes)!), stakeholders: ["alice::1220aa", "bank::1220bb"], stored: stored)
        }
        return AcsSnapshot(
            domain: "domain1::1220cc", exporter: "participant2::1220dd", counterParticipant: "participant1::1220ee",
            fromExclusive: 1_000_000, toInclusive: 2_000_000, exporterNextCounter: 42, exporterLastTimestamp: 2_500_000,
            contracts: contracts)
    }

    @Test func batchesStayUnderTheBudgetAndReassembleToTheSameSnapshot() throws {
        let snapshot = Self.snapshot(contracts: 300, bytesEach: 1000)
        let budget = 16 * 1024
        let (header, batches) = snapshot.streamed(batchBytes: budget)
        #expect(header.contracts.isEmpty && header.exporter == snapshot.exporter)
        #expect(batches.count > 1, "300 contracts of 1 kB in batches of 16 kB")
        for batch in batches {
            let bytes = try Weft.V1.ExportAcsResponse(snapshotContracts: batch).serializedBytes().count
            #expect(bytes <= budget, "a batch of \(batch.count) contracts is \(bytes) bytes")
        }
        var wire = header
        wire.contracts = batches.flatMap { $0 }
        #expect(try AcsSnapshot(wire: wire) == snapshot)
    }

    @Test func aContractLargerThanTheBudgetTravelsAlone() {
        let (_, batches) = Self.snapshot(contracts: 3, bytesEach: 5000).streamed(batchBytes: 1000)
        #expect(batches.map(\.count) == [1, 1, 1])
        #expect(Self.snapshot(contracts: 0, bytesEach: 0).streamed(batchBytes: 1000).batches.isEmpty)
    }

    @Test func theBudgetIsAQuarterOfTheMessageLimitAtMostOneMebibyte() {
        #expect(AcsSnapshot.streamBatchBytes(messageLimit: 4 << 20) == 1 << 20)
        #expect(AcsSnapshot.streamBatchBytes(messageLimit: 64 * 1024) == 16 * 1024)
    }
}
