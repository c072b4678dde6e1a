// Sets of parties as sorted arrays without duplicates: small, ordered the
// same way on every machine (so they serialize canonically) and cheap to
// merge.

extension Array where Element == Party {
    /// Sorted, without duplicates.
    func normalized() -> [Party] {
        var result = sorted()
        var write = 0
        for read in result.indices where read == 0 || result[read] != result[write - 1] {
            result[write] = result[read]
            write += 1
        }
        result.removeLast(result.count - write)
        return result
    }

    /// Both sorted sets together (`self` and `other` normalized).
    func union(_ other: [Party]) -> [Party] {
        if other.isEmpty { return self }
        if isEmpty { return other }
        var result: [Party] = []
        result.reserveCapacity(count + other.count)
        var i = 0
        var j = 0
        while i < count, j < other.count {
            if self[i] < other[j] {
                result.append(self[i])
                i += 1
            } else if other[j] < self[i] {
                result.append(other[j])
                j += 1
            } else {
                result.append(self[i])
                i += 1
                j += 1
            }
        }
        result.append(contentsOf: self[i...])
        result.append(contentsOf: other[j...])
        return result
    }

    /// The members of `self` not in `other` (both normalized).
    func subtracting(_ other: [Party]) -> [Party] {
        if other.isEmpty { return self }
        return filter { !other.containsSorted($0) }
    }

    /// The members of both (both normalized).
    func intersection(_ other: [Party]) -> [Party] { filter { other.containsSorted($0) } }

    func containsSorted(_ party: Party) -> Bool {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if self[middle] < party { low = middle + 1 } else { high = middle }
        }
        return low < count && self[low] == party
    }
}
