#!/usr/bin/env python3
"""Cross-implementation check of Weft's wire format against Google's protobuf.

Weft encodes through protobuf-c; this script uses Google's Python `protobuf`
package with message classes built from the descriptor set alone (no Weft
code). For every message type it builds the sample values of the rule in
codegen/Sources/weft-codegen/SampleEmitter.swift, then:

  1. parses each sample Weft wrote (--weft-samples, JSON lines of
     {"type", "variant", "hex"}) and checks it equals its own sample, field
     by field, and that Weft's bytes equal its own encoding;
  2. writes its own encodings (--python-samples-out, same format) for Weft to
     decode and compare on its side.

Exit status 0 when everything matched; the last line says how many did.
"""
import argparse
import json
import sys

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory

MAX_DEPTH = 2
FD = descriptor.FieldDescriptor


def load_pool(path):
    files = descriptor_pb2.FileDescriptorSet.FromString(open(path, "rb").read()).file
    by_name = {f.name: f for f in files}
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):  # dependencies first
        if name in added:
            return
        for dependency in by_name[name].dependency:
            add(dependency)
        pool.Add(by_name[name])
        added.add(name)

    for name in by_name:
        add(name)
    messages = []
    for f in files:
        def walk(d):
            messages.append(d.full_name)
            for nested in d.nested_types:
                walk(nested)
        for d in pool.FindFileByName(f.name).message_types_by_name.values():
            walk(d)
    return pool, messages


def is_repeated(field):
    flag = getattr(field, "is_repeated", None)
    return flag if flag is not None else field.label == FD.LABEL_REPEATED


def value(field, k):
    t = field.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return -k
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return -k * 1000000007
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return k
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return k * 10000000019
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return k + 0.5
    if t == FD.TYPE_BOOL:
        return True
    if t == FD.TYPE_STRING:
        return "s%d-é✓" % k
    if t == FD.TYPE_BYTES:
        return bytes([k % 256, (k // 256) % 256, 0, 255])
    if t == FD.TYPE_ENUM:
        return max(v.number for v in field.enum_type.values)
    raise ValueError("unsupported field type %d" % t)


def variants(desc):
    return max([1] + [len(o.fields) for o in desc.oneofs])


def sample(desc, variant, depth):
    msg = message_factory.GetMessageClass(desc)()
    deep = depth >= MAX_DEPTH
    for field in desc.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.fields[variant % len(oneof.fields)] is not field:
            continue
        k = field.number * 100 + depth * 10 + variant + 1
        if field.type == FD.TYPE_MESSAGE:
            child = field.message_type
            if is_repeated(field):
                if not deep:
                    target = getattr(msg, field.name)
                    target.add().CopyFrom(sample(child, 0, depth + 1))
                    target.add().CopyFrom(sample(child, 1, depth + 1))
            elif oneof is not None:
                if deep:
                    getattr(msg, field.name).SetInParent()
                else:
                    getattr(msg, field.name).CopyFrom(sample(child, 0, depth + 1))
            elif not deep:
                getattr(msg, field.name).CopyFrom(sample(child, 0, depth + 1))
        elif is_repeated(field):
            getattr(msg, field.name).extend([value(field, k), value(field, k + 1)])
        else:
            setattr(msg, field.name, value(field, k))
    return msg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor-set", required=True)
    parser.add_argument("--weft-samples", required=True)
    parser.add_argument("--python-samples-out", required=True)
    args = parser.parse_args()

    pool, names = load_pool(args.descriptor_set)
    passed = failed = 0
    seen_types = set()
    for line in open(args.weft_samples):
        record = json.loads(line)
        desc = pool.FindMessageTypeByName(record["type"])
        seen_types.add(record["type"])
        weft_bytes = bytes.fromhex(record["hex"])
        expected = sample(desc, record["variant"], 0)
        decoded = message_factory.GetMessageClass(desc)()
        decoded.ParseFromString(weft_bytes)
        problems = []
        if decoded != expected:
            problems.append("decoded %r, expected %r" % (decoded, expected))
        # Byte equality also rules out fields Google's decoder kept as unknown.
        if expected.SerializeToString(deterministic=True) != weft_bytes:
            problems.append("bytes differ from Google's encoding")
        if problems:
            failed += 1
            print("MISMATCH %s variant %d: %s" % (record["type"], record["variant"], "; ".join(problems)))
        else:
            passed += 1
    missing = set(names) - seen_types
    for name in sorted(missing):
        failed += 1
        print("MISSING: Weft wrote no sample of %s" % name)

    with open(args.python_samples_out, "w") as out:
        for name in names:
            desc = pool.FindMessageTypeByName(name)
            for variant in range(variants(desc)):
                data = sample(desc, variant, 0).SerializeToString(deterministic=True)
                out.write(json.dumps({"type": name, "variant": variant, "hex": data.hex()}) + "\n")

    print("interop: %d passed, %d failed (%d message types)" % (passed, failed, len(names)))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
