#!/usr/bin/env python3
"""Health/Check and Health/Watch from the command line, with the `weft` package beside it.

    python3 weft_client.py health --host 127.0.0.1 --port 4443 --ca ca.pem \
        --server-name localhost [--service weft.v1.SequencerService]

prints the Health/Check answer and exits 0 if the service is SERVING, 1 if the
call failed (the status is printed), 2 on a connection or protocol error.
`watch` (same options) prints each Health/Watch update of the server stream.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import weft  # noqa: E402
from weft.v1 import health_pb2  # noqa: E402  (generated)


def main(argv):
    parser = argparse.ArgumentParser(description="Weft client: Health/Check (health) and Health/Watch (watch)")
    parser.add_argument("command", choices=["health", "watch"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="PEM root certificate of the domain")
    parser.add_argument("--server-name", required=True, help="hostname the server's certificate names")
    parser.add_argument("--service", default="", help="service to ask about (empty: the node)")
    args = parser.parse_args(argv)
    try:
        connection = weft.Connection(f"{args.host}:{args.port}", args.ca, server_name=args.server_name)
    except weft.ConnectError as error:
        print(f"cannot connect: {error}")
        return 2
    health = weft.HealthClient(connection)
    try:
        if args.command == "watch":
            for update in health.watch(args.service):
                print(f"update: {health_pb2.ServingStatus.Name(update.status)}")
            print("stream ended")
            return 0
        response = health.check(args.service)
        print(f"status: {health_pb2.ServingStatus.Name(response.status)}")
        print(f"detail: {response.detail}")
        return 0 if response.status == health_pb2.SERVING_STATUS_SERVING else 1
    except weft.WeftError as error:
        print(f"call failed: {error}")
        return 1
    except weft.ProtocolError as error:
        print(f"protocol error: {error}")
        return 2
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
