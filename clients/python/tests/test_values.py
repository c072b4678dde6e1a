"""The value helpers (`weft.values`) against the schema: each kind built and read back.
No server needed; run with the error tests (see test_errors.py's docstring)."""
import unittest

from weft import values
from weft.v1 import value_pb2


class ValueHelperTests(unittest.TestCase):
    def round_trip(self, value):
        """Through the wire bytes, as a value from the ledger would come."""
        return values.to_python(value_pb2.Value.FromString(value.SerializeToString()))

    def test_every_scalar_kind_reads_back_as_built(self):
        self.assertEqual(self.round_trip(values.party("alice::1220ab")), "alice::1220ab")
        self.assertEqual(self.round_trip(values.text("héllo")), "héllo")
        self.assertEqual(self.round_trip(values.decimal("1.0000000001")), "1.0000000001")
        self.assertEqual(self.round_trip(values.int64(-(2**63))), -(2**63))
        self.assertEqual(self.round_trip(values.boolean(True)), True)
        self.assertEqual(self.round_trip(values.contract_id("00ab")), {"contract_id": "00ab"})
        self.assertEqual(self.round_trip(values.time(1_764_979_200_000_001)), {"time": 1_764_979_200_000_001})
        self.assertIsNone(self.round_trip(value_pb2.Value()))

    def test_records_read_back_as_dicts_and_lists(self):
        nested = values.record_value(owner=values.party("bob"), due=values.time(5), amount=values.decimal("2.5"))
        self.assertEqual(self.round_trip(nested), {"owner": "bob", "due": {"time": 5}, "amount": "2.5"})
        positional = value_pb2.Value(record=value_pb2.Record(fields=[value_pb2.RecordField(value=values.int64(1))]))
        self.assertEqual(self.round_trip(positional), [1])
        listed = value_pb2.Value(list=value_pb2.ValueList(elements=[values.time(7), values.text("x")]))
        self.assertEqual(self.round_trip(listed), [{"time": 7}, "x"])


if __name__ == "__main__":
    unittest.main()
