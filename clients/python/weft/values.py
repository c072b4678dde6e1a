"""Contract values (`weft.v1.Value`, `Record`) from and to plain Python.

Commands name their arguments as labelled records (docs/ledger-api.md, Commands); these
helpers build them without spelling out the protobuf oneofs, and turn what the ledger
returns into dicts and lists that print as JSON.
"""
from weft.v1 import common_pb2, value_pb2


def party(identifier):
    return value_pb2.Value(party=identifier)


def text(string):
    return value_pb2.Value(text=string)


def decimal(string):
    """A Decimal, as a string so that no digit is lost to floating point."""
    return value_pb2.Value(decimal=str(string))


def int64(number):
    return value_pb2.Value(int64=number)


def boolean(flag):
    return value_pb2.Value(bool=flag)


def contract_id(identifier):
    return value_pb2.Value(contract_id=identifier)


def time(micros_since_epoch):
    """A Time: microseconds since the Unix epoch, UTC (`weft.v1.Timestamp`)."""
    return value_pb2.Value(time=common_pb2.Timestamp(micros_since_epoch=micros_since_epoch))


def record(**fields):
    """A labelled `Record`: `record(owner=party(p), amount=decimal("1.0"))`."""
    return value_pb2.Record(fields=[value_pb2.RecordField(label=label, value=value) for label, value in fields.items()])


def record_value(**fields):
    """The same record as a `Value` (a choice argument is a Value)."""
    return value_pb2.Value(record=record(**fields))


def to_python(value):
    """A `Value` or `Record` as plain Python: records become dicts (labelled) or lists
    (positional), Decimals stay strings, a contract id is {"contract_id": …}."""
    if isinstance(value, value_pb2.Record):
        if all(field.label for field in value.fields):
            return {field.label: to_python(field.value) for field in value.fields}
        return [to_python(field.value) for field in value.fields]
    kind = value.WhichOneof("sum")
    if kind is None or kind == "unit":
        return None
    if kind == "time":
        return {"time": value.time.micros_since_epoch}
    if kind == "contract_id":
        return {"contract_id": value.contract_id}
    if kind == "list":
        return [to_python(element) for element in value.list.elements]
    if kind == "record":
        return to_python(value.record)
    return getattr(value, kind)
