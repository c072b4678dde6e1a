#!/usr/bin/env python3
"""Writes starting inputs for the fuzz targets: a few valid frames, hand-encoded.

Usage: make_seeds.py REGISTRY_SWIFT CORPUS_FRAME_DECODER CORPUS_MESSAGES [CORPUS_JSON]

Valid seeds let libFuzzer start from inputs that get past the frame prefix and
into every message type instead of discovering the encoding byte by byte.
"""
import hashlib
import os
import re
import sys


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3 | 0) + varint(value)


def field_bytes(number, value):
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def frame_prefix(body):
    return b"\x00" + len(body).to_bytes(4, "big") + body


# weft.v1.Frame bodies (Proto/weft/v1/frame.proto).
metadata = field_bytes(1, "traceparent") + field_bytes(2, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
binary_metadata = field_bytes(1, "weft-token-bin") + field_bytes(3, bytes(range(16)))
status = field_varint(1, 3) + field_bytes(2, "bad request") + field_bytes(3, "WEFT-WIRE-0001") + field_bytes(
    5, field_bytes(1, "field") + field_bytes(2, "stream_id"))
frames = [
    field_varint(1, 1) + field_bytes(2, field_bytes(1, "/weft.v1.Health/Check") + field_bytes(2, metadata)
                                    + field_bytes(2, binary_metadata) + field_bytes(3, field_varint(1, 5_000_000))),
    field_varint(1, 1) + field_bytes(3, field_bytes(1, b"\x0a\x03abc\x10\x2a")),
    field_varint(1, 1) + field_bytes(4, b""),
    field_varint(1, 1) + field_bytes(5, field_bytes(1, status) + field_bytes(2, metadata)),
    field_varint(1, 3) + field_bytes(6, field_bytes(1, "client went away")),
    field_varint(1, 0) + field_bytes(7, field_varint(1, 65535)),
    field_bytes(8, field_varint(1, 0x0123456789ABCDEF)),
    field_bytes(9, field_varint(1, 0x0123456789ABCDEF)),
    field_bytes(10, field_varint(1, 7) + field_bytes(2, status)),
    field_varint(1, 9) + field_bytes(99, b"unknown field"),
]


def write(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    registry, frame_corpus, message_corpus = sys.argv[1:4]
    json_corpus = sys.argv[4] if len(sys.argv) > 4 else None

    # FuzzFrameDecoder: byte 0 is the chunk size minus one; the rest a stream.
    stream = b"".join(frame_prefix(body) for body in frames)
    for chunk_byte in (0, 4, 255):
        write(frame_corpus, bytes([chunk_byte]) + stream)
    for body in frames:
        write(frame_corpus, b"\xff" + frame_prefix(body))

    # FuzzMessages: byte 0 selects the type in `Weft.V1.messageTypes` order.
    source = open(registry).read()
    listing = re.search(r"messageTypes\b[^=]*=\s*\[(.*?)\n\s*\]", source, re.S)
    types = re.findall(r"(Weft\.V1\.[A-Za-z0-9_.]+)\.self", listing.group(1) if listing else "")
    if not types:
        sys.exit(f"make_seeds.py: no Weft.V1.messageTypes list in {registry}")
    for index in range(len(types)):
        write(message_corpus, bytes([index]))  # the empty message, valid for every type
    if "Weft.V1.Frame" in types:
        frame_index = types.index("Weft.V1.Frame")
        for body in frames:
            write(message_corpus, bytes([frame_index]) + body)
    if "Weft.V1.SequencedEvent" in types:
        # Each case of its oneof `event` (deliver = 5, deliver_error = 6), empty: a submessage
        # held in a oneof is what LeakSanitizer cannot see from a pooled storage (the case is in
        # the pointer's spare bits), hence WireThreadCaches.release after every input.
        event_index = types.index("Weft.V1.SequencedEvent")
        for number in (5, 6):
            write(message_corpus, bytes([event_index]) + field_varint(1, 7) + field_bytes(number, b""))

    # FuzzJSON: byte 0 selects the type as above; the rest is proto3 JSON text.
    if json_corpus:
        for index in range(len(types)):
            write(json_corpus, bytes([index]) + b"{}")
        documents = [
            '{"streamId":1,"open":{"method":"/weft.v1.HealthService/Check","metadata":[{"key":"traceparent",'
            '"textValue":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},{"key":"k-bin","binaryValue":"AAEC"}],'
            '"timeout":{"micros":"5000000"}}}',
            '{"stream_id":3,"close":{"status":{"code":5,"message":"unknown \\u00e9","errorId":"X","details":[{"key":"a"}]}}}',
            '{"ping":{"data":18446744073709551615},"@unknown":[{"number":99,"wireType":0,"varint":"300"},'
            '{"number":100,"wireType":2,"bytes":"aGk="},{"number":101,"wireType":5,"fixed32":7}]}',
            '{"message":{"payload":"-_8B"},"streamId":null}',
        ]
        if "Weft.V1.Frame" in types:
            for document in documents:
                write(json_corpus, bytes([types.index("Weft.V1.Frame")]) + document.encode())


if __name__ == "__main__":
    main()
