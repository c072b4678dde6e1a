"""Typed errors of the Weft Python client.

A call the server refused raises `WeftError` with the gRPC status code and Weft's stable
error id (docs/wire-protocol.md §4.1); a connection that could not be made or broke raises
`ConnectError` or `ProtocolError`. Applications branch on `code` and `error_id`, never on
message text.
"""
import enum


class StatusCode(enum.IntEnum):
    """gRPC's status codes, as `weft.v1.Status.code` carries them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ClientError(Exception):
    """Base class of every error this package raises."""


class WeftError(ClientError):
    """A call that ended with a non-OK status (a `close` frame, or a `go_away` that cut it off).

    `code` is a `StatusCode` (or the raw number for a code this client does not know),
    `error_id` Weft's stable id (e.g. `AUTH_TOKEN_MISSING`), `correlation_id` names the
    server's log line when set.
    """

    def __init__(self, status, method=""):
        try:
            self.code = StatusCode(status.code)
        except ValueError:
            self.code = status.code
        self.error_id = status.error_id
        self.message = status.message
        self.correlation_id = status.correlation_id
        self.method = method
        self.status = status
        name = self.code.name if isinstance(self.code, StatusCode) else "code"
        where = f"{method}: " if method else ""
        super().__init__(f"{where}status {int(self.code)} {self.error_id} ({name}): {self.message}")


class ConnectError(ClientError):
    """The TLS connection could not be made: address, certificate or ALPN."""


class ProtocolError(ClientError):
    """The connection broke or the peer broke the wire protocol; calls on it cannot go on."""
