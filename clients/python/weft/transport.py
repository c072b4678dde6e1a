"""The Weft transport in Python: TLS 1.3 with ALPN `weft/1`, the preface, frames and streams.

Written from docs/wire-protocol.md alone. A `Connection` makes one call at a time (no
threads): it sends a stream's `open`, request and `half_close`, then reads frames until the
stream's `close`, answering pings and returning flow-control credit as it reads.
"""
import socket
import ssl
import time

from weft.errors import ConnectError, ProtocolError, StatusCode, WeftError
from weft.v1 import frame_pb2, status_pb2

PREFACE = b"WEFT\x01\x00\r\n"
ALPN = "weft/1"
# A receiver checks the 5-byte prefix against its limit before reading the body (§3).
MAX_FRAME_BYTES = 4 * 1024 * 1024
# Every stream starts with a 64 KiB window in each direction (§4.2); this client grants
# back what it has read once half the window is used.
INITIAL_WINDOW_BYTES = 65536


def encode_frame(frame):
    """The bytes of one frame: flag 0, 4-byte big-endian length, the `weft.v1.Frame`."""
    body = frame.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def parse_address(address):
    """`HOST:PORT` (or `[v6]:PORT`) as (host, port); ValueError says what is wrong."""
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r} is not HOST:PORT (for example localhost:5011)")
    return host.strip("[]"), int(port)


class Connection:
    """One TLS connection to a Weft node.

    `metadata` (pairs of lower-case key and text value) is sent with every call, e.g. from
    `bearer(token)`. Use it as a context manager, or call `close()`.

    `connect_timeout` bounds the TCP connect and the TLS handshake. Reads then wait as long
    as it takes (`read_timeout=None`), because a live stream may be quiet for hours: the node
    pings a quiet connection every 30 s (wire-protocol.md §4.4) and this client answers, so a
    `read_timeout` of a minute or more notices a node that vanished without closing.

    Between calls nothing reads the connection, so nothing answers the node's pings: a node
    closes a connection whose ping goes unanswered for 10 s. A call after the connection was
    quiet for `idle_reconnect_seconds` (25 s, under the node's 30 s ping interval) therefore
    opens a new connection first; no call is in flight then, so nothing is lost or repeated.

    `max_frame_bytes` is the node's `rpc.max-frame-bytes` (4 MiB unless its operator raised it):
    a larger request is refused here, with the reason, rather than by the node closing the
    connection.
    """

    def __init__(self, address, ca_file, server_name=None, certfile=None, keyfile=None, metadata=(),
                 connect_timeout=30, read_timeout=None, idle_reconnect_seconds=25, max_frame_bytes=MAX_FRAME_BYTES):
        self.address = address
        self.metadata = tuple(metadata)
        self.idle_reconnect_seconds = idle_reconnect_seconds
        self.max_frame_bytes = max_frame_bytes
        self._settings = (ca_file, server_name, certfile, keyfile, connect_timeout, read_timeout)
        # Stream ids keep increasing across reconnections, so that a generator of an earlier
        # connection, closed late, cancels no call of the new one.
        self.next_stream = 1
        self._connect()

    def _connect(self):
        """Opens the TLS connection and sends the preface."""
        address = self.address
        ca_file, server_name, certfile, keyfile, connect_timeout, read_timeout = self._settings
        host, port = parse_address(address)
        try:
            context = ssl.create_default_context(cafile=ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.set_alpn_protocols([ALPN])
            if certfile:
                context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as error:
            raise ConnectError(f"cannot use the TLS files (CA {ca_file}, certificate {certfile}): {error}") from error
        try:
            raw = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise ConnectError(f"cannot connect to {address}: {error.strerror or error}; is the node running there?") from error
        try:
            self.socket = context.wrap_socket(raw, server_hostname=server_name or host)
        except (OSError, ssl.SSLError) as error:
            raw.close()
            raise ConnectError(f"TLS handshake with {address} failed: {error}") from error
        if self.socket.selected_alpn_protocol() != ALPN:
            self.socket.close()
            raise ConnectError(f"{address} did not agree on ALPN {ALPN} (got {self.socket.selected_alpn_protocol()}); is it a Weft node?")
        self.socket.settimeout(read_timeout)
        self.last_stream_allowed = None  # set by go_away
        self.last_activity = time.monotonic()
        self._send_bytes(PREFACE)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.socket.close()

    def _send_bytes(self, data):
        self.last_activity = time.monotonic()
        try:
            self.socket.sendall(data)
        except OSError as error:
            raise ProtocolError(f"connection to {self.address} broke while sending: {error}") from error

    def send(self, frame):
        self._send_bytes(encode_frame(frame))

    def _read_exactly(self, count):
        data = bytearray()
        while len(data) < count:
            try:
                chunk = self.socket.recv(count - len(data))
            except OSError as error:
                raise ProtocolError(f"connection to {self.address} broke while reading: {error}") from error
            if not chunk:
                raise ProtocolError(f"{self.address} closed the connection inside a frame ({len(data)} of {count} bytes)")
            data += chunk
        self.last_activity = time.monotonic()
        return bytes(data)

    def receive(self):
        """The next frame from the server."""
        prefix = self._read_exactly(5)
        if prefix[0] != 0:
            raise ProtocolError(f"unsupported frame flag {prefix[0]} (only 0, uncompressed, is defined)")
        length = int.from_bytes(prefix[1:], "big")
        if length > self.max_frame_bytes:
            raise ProtocolError(f"grpc: received message larger than max ({length} vs. {self.max_frame_bytes})")
        try:
            return frame_pb2.Frame.FromString(self._read_exactly(length))
        except Exception as error:  # protobuf's DecodeError
            raise ProtocolError(f"a frame from {self.address} does not decode: {error}") from error

    def unary(self, path, request, response_class, metadata=(), timeout_seconds=None):
        """Calls a unary method; returns the response or raises WeftError."""
        responses = list(self.server_stream(path, request, response_class, metadata, timeout_seconds))
        if len(responses) != 1:
            raise ProtocolError(f"the unary call {path} returned {len(responses)} responses")
        return responses[0]

    def server_stream(self, path, request, response_class, metadata=(), timeout_seconds=None):
        """Calls a method and yields each response until the call's close; raises WeftError
        if the close carries an error status. Closing the generator early (a `break` out of
        the loop) cancels the call, so the server stops its work."""
        if self.last_stream_allowed is not None:
            raise ProtocolError(f"{self.address} sent go_away: open a new connection")
        if time.monotonic() - self.last_activity >= self.idle_reconnect_seconds:
            # Quiet long enough that the node may have pinged unanswered and closed it.
            self.socket.close()
            self._connect()
        payload = request.SerializeToString()
        if len(payload) > self.max_frame_bytes - 64:
            # The node refuses the frame at its length and closes the connection; say why here.
            raise WeftError(_status(StatusCode.RESOURCE_EXHAUSTED, "RPC_MESSAGE_TOO_LARGE",
                                    f"the request is {len(payload)} bytes; a frame carries at most {self.max_frame_bytes}"), path)
        stream = self.next_stream
        self.next_stream += 2
        opening = frame_pb2.Frame(stream_id=stream)
        opening.open.method = path
        for key, value in self.metadata + tuple(metadata):
            opening.open.metadata.add(key=key, text_value=value)
        if timeout_seconds is not None:
            opening.open.timeout.micros = int(timeout_seconds * 1_000_000)
        message = frame_pb2.Frame(stream_id=stream)
        message.message.payload = payload
        half_close = frame_pb2.Frame(stream_id=stream)
        half_close.half_close.SetInParent()
        self._send_bytes(b"".join(encode_frame(frame) for frame in (opening, message, half_close)))
        finished = False
        try:
            read_since_grant = 0
            while True:
                frame = self.receive()
                kind = frame.WhichOneof("kind")
                if kind == "ping":  # keepalive: answer at once, whatever the stream
                    pong = frame_pb2.Frame(stream_id=0)
                    pong.pong.data = frame.ping.data
                    self.send(pong)
                    continue
                if kind == "go_away":
                    self.last_stream_allowed = frame.go_away.last_stream_id
                    if frame.go_away.status.code not in (0, 14):
                        # Not a drain: the server refused bytes it received (a frame over its
                        # limit, a malformed one) and closes the connection; its status says why.
                        finished = True
                        raise WeftError(frame.go_away.status, path)
                    if stream > frame.go_away.last_stream_id:
                        finished = True
                        raise WeftError(frame.go_away.status, path)
                    continue
                if frame.stream_id != stream:
                    continue  # frames of a call cancelled earlier
                if kind == "message":
                    yield response_class.FromString(frame.message.payload)
                    # The message has been consumed: return its bytes to the server's window.
                    read_since_grant += len(frame.message.payload)
                    if read_since_grant >= INITIAL_WINDOW_BYTES // 2:
                        grant = frame_pb2.Frame(stream_id=stream)
                        grant.window_update.increment_bytes = read_since_grant
                        self.send(grant)
                        read_since_grant = 0
                elif kind == "close":
                    finished = True
                    if frame.close.status.code != 0:
                        raise WeftError(frame.close.status, path)
                    return
        finally:
            if not finished:
                self._cancel(stream)

    def _cancel(self, stream):
        """Abandons `stream` (the caller stopped reading); a broken connection needs nothing."""
        cancel = frame_pb2.Frame(stream_id=stream)
        cancel.cancel.reason = "the client stopped reading"
        try:
            self.send(cancel)
        except ProtocolError:
            pass


def _status(code, error_id, message):
    """A `weft.v1.Status` made on this side, for a call refused before it was sent."""
    return status_pb2.Status(code=int(code), error_id=error_id, message=message)


def bearer(token):
    """The metadata that carries a Ledger API token (docs/ledger-api.md, Authorization)."""
    return (("authorization", f"Bearer {token}"),)
