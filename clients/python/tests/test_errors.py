"""The Python client's typed errors against a live participant (run by the Swift test
Tests/WeftParticipantTests/ClientExampleTests.swift, which serves the Ledger API with token
verification and sets):

    WEFT_TEST_ADDRESS  the Ledger API, HOST:PORT (TLS)
    WEFT_TEST_CA       its root certificate
    WEFT_TEST_TOKEN    a valid token with readAs WEFT_TEST_PARTY only
    WEFT_TEST_PARTY, WEFT_TEST_OTHER_PARTY   two parties hosted there

    PYTHONPATH=clients/python python3 -m unittest discover -s clients/python/tests -v
"""
import os
import socket
import unittest

import weft
from weft.v1 import ledger_pb2


def environment(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: these tests need a live participant (see this file's docstring)")
    return value


class LedgerAPIErrorTests(unittest.TestCase):
    def setUp(self):
        self.address = environment("WEFT_TEST_ADDRESS")
        self.ca = environment("WEFT_TEST_CA")
        self.token = environment("WEFT_TEST_TOKEN")
        self.party = environment("WEFT_TEST_PARTY")
        self.other = environment("WEFT_TEST_OTHER_PARTY")

    def connect(self, metadata=()):
        connection = weft.Connection(self.address, self.ca, server_name="localhost", metadata=metadata)
        self.addCleanup(connection.close)
        return connection

    def test_a_call_without_a_token_is_unauthenticated(self):
        with self.assertRaises(weft.WeftError) as raised:
            weft.LedgerClient(self.connect()).ledger_end()
        self.assertEqual(raised.exception.code, weft.StatusCode.UNAUTHENTICATED)
        self.assertEqual(raised.exception.error_id, "AUTH_TOKEN_MISSING")
        self.assertIn("authorization: Bearer", raised.exception.message)

    def test_a_bad_token_is_unauthenticated_and_the_connection_goes_on(self):
        connection = self.connect()
        client = weft.LedgerClient(connection)
        with self.assertRaises(weft.WeftError) as raised:
            connection.unary("/weft.v1.TransactionService/GetLedgerEnd", ledger_pb2.GetLedgerEndRequest(),
                             ledger_pb2.GetLedgerEndResponse, metadata=weft.bearer("not.a-token"))
        self.assertEqual(raised.exception.code, weft.StatusCode.UNAUTHENTICATED)
        self.assertEqual(raised.exception.error_id, "AUTH_TOKEN_MALFORMED")
        self.assertEqual(raised.exception.method, "/weft.v1.TransactionService/GetLedgerEnd")
        # The refusal ended one call, not the connection: the next call, with a good token, works.
        response = connection.unary("/weft.v1.TransactionService/GetLedgerEnd", ledger_pb2.GetLedgerEndRequest(),
                                    ledger_pb2.GetLedgerEndResponse, metadata=weft.bearer(self.token))
        self.assertGreaterEqual(response.offset, 0)
        self.assertIsInstance(client, weft.LedgerClient)

    def test_an_unknown_method_is_unimplemented(self):
        connection = self.connect(weft.bearer(self.token))
        with self.assertRaises(weft.WeftError) as raised:
            connection.unary("/weft.v1.TransactionService/NoSuchMethod", ledger_pb2.GetLedgerEndRequest(),
                             ledger_pb2.GetLedgerEndResponse)
        self.assertEqual(raised.exception.code, weft.StatusCode.UNIMPLEMENTED)
        self.assertEqual(raised.exception.error_id, "RPC_UNKNOWN_METHOD")

    def test_a_stream_for_a_party_the_token_does_not_name_is_refused(self):
        client = weft.LedgerClient(self.connect(weft.bearer(self.token)))
        with self.assertRaises(weft.WeftError) as raised:
            list(client.transactions([self.other], end_inclusive=1))
        self.assertEqual(raised.exception.code, weft.StatusCode.PERMISSION_DENIED)
        self.assertEqual(raised.exception.error_id, "AUTH_MISSING_CLAIM")
        self.assertIn(self.other, raised.exception.message)
        # The token's own party reads fine on the same connection.
        contracts, _ = client.active_contracts([self.party])
        self.assertIsInstance(contracts, list)

    def test_nothing_listening_is_a_connect_error(self):
        with socket.socket() as probe:  # a port that was free a moment ago
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with self.assertRaises(weft.ConnectError) as raised:
            weft.Connection(f"127.0.0.1:{port}", self.ca)
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", str(raised.exception))

    def test_a_malformed_address_is_refused_before_connecting(self):
        with self.assertRaises(ValueError) as raised:
            weft.Connection("localhost", self.ca)
        self.assertIn("HOST:PORT", str(raised.exception))


if __name__ == "__main__":
    unittest.main()
