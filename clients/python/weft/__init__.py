"""Weft's Python client: message classes generated from Proto/ (`weft.v1`, by
codegen/generate), the transport (`weft.transport`: TLS 1.3, ALPN weft/1, frames, streams),
typed errors (`weft.errors`), and clients of the Health and Ledger APIs.

    import weft
    with weft.Connection("localhost:5011", "ca.pem", metadata=weft.bearer(token)) as connection:
        ledger = weft.LedgerClient(connection, application_id="my-app")
        print(ledger.ledger_end())

See docs/clients.md.
"""
from weft.errors import ClientError, ConnectError, ProtocolError, StatusCode, WeftError
from weft.health import HealthClient
from weft.ledger import LedgerClient
from weft.transport import Connection, bearer

__all__ = [
    "ClientError", "ConnectError", "Connection", "HealthClient", "LedgerClient", "ProtocolError", "StatusCode",
    "WeftError", "bearer",
]
