"""`weft.v1.HealthService`, which every Weft node serves without a token."""
from weft.v1 import health_pb2

CHECK = "/weft.v1.HealthService/Check"
WATCH = "/weft.v1.HealthService/Watch"


class HealthClient:
    def __init__(self, connection):
        self.connection = connection

    def check(self, service=""):
        """The node's status (service "") or one service's; a `CheckResponse`."""
        return self.connection.unary(CHECK, health_pb2.CheckRequest(service=service), health_pb2.CheckResponse)

    def watch(self, service=""):
        """Yields a `WatchResponse` now and at every change, until the node ends the stream."""
        return self.connection.server_stream(WATCH, health_pb2.WatchRequest(service=service), health_pb2.WatchResponse)
