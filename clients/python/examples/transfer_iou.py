#!/usr/bin/env python3
"""Issues an IOU and transfers it through a participant's Ledger API, then reads the
transfer back: the completion stream, the transaction stream (flat and as a tree) and the
active contracts. Every step prints one JSON line on standard output.

    python3 clients/python/examples/transfer_iou.py --address localhost:5011 --ca ca.pem \
        --issuer 'bank::1220…' --owner 'alice::1220…' --new-owner 'bob::1220…' \
        [--token JWT | --token-file FILE | WEFT_TOKEN=…] [--package-id ID | --package iou.weft]

The issuer and the owner must be hosted on this participant with submission permission
(the token, when the participant checks tokens, needs actAs for both). The IOU package
(examples/packages/iou.weft) is found among the uploaded packages (any valid token),
uploaded from --package (admin rights), or named by --package-id.

Exit status: 0 done; 1 the participant refused a call (a JSON line with step "error" gives
the status code and Weft error id); 2 no connection or a broken one; 64 bad arguments.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import weft  # noqa: E402
from weft import ledger, values  # noqa: E402


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"transfer_iou.py: error: {message}", file=sys.stderr)
        sys.exit(64)


def arguments(argv):
    parser = Parser(description="Issue an IOU, transfer it, and read the transfer back (JSON lines).")
    parser.add_argument("--address", required=True, help="the participant's Ledger API, HOST:PORT")
    parser.add_argument("--ca", required=True, help="PEM root certificate the Ledger API's certificate chains to")
    parser.add_argument("--server-name", help="name in the server's certificate (default: the address's host)")
    parser.add_argument("--cert", help="client certificate (PEM), if the participant wants mutual TLS")
    parser.add_argument("--key", help="the client certificate's key (PEM)")
    parser.add_argument("--token", help="bearer token (default: --token-file, then $WEFT_TOKEN)")
    parser.add_argument("--token-file", help="file holding the bearer token")
    parser.add_argument("--issuer", required=True, help="the bank: signs the IOU")
    parser.add_argument("--owner", required=True, help="who the IOU is issued to, and who transfers it")
    parser.add_argument("--new-owner", required=True, help="who receives it")
    parser.add_argument("--amount", default="100.00", help="a Decimal, e.g. 100.00")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--package-id", help="the IOU package's id")
    parser.add_argument("--package", help="upload this package source (examples/packages/iou.weft) first")
    parser.add_argument("--application-id", default="transfer-iou-example")
    args = parser.parse_args(argv)
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                args.token = file.read().strip()
        except OSError as error:
            parser.error(f"cannot read --token-file: {error}")
    args.token = args.token or os.environ.get("WEFT_TOKEN")
    if args.package:
        try:
            with open(args.package, encoding="utf-8") as file:
                args.package_source = file.read()
        except OSError as error:
            parser.error(f"cannot read --package: {error}")
    return args


def package_id(client, args):
    if args.package_id:
        return args.package_id
    if args.package:
        return client.upload_package(args.package_source, os.path.basename(args.package))
    found = [package.package_id for package in client.list_packages() if "Iou" in package.template_names]
    if len(found) != 1:
        raise UsageError(
            f"{len(found)} uploaded packages define template Iou: name one with --package-id, "
            "or upload examples/packages/iou.weft with --package")
    return found[0]


def created(event):
    return {
        "contract_id": event.contract_id, "template": event.template_id.template_name,
        "arguments": values.to_python(event.create_arguments), "witness_parties": list(event.witness_parties),
    }


def run(client, args):
    iou = ledger.template(package_id(client, args), "Iou")
    emit("package", package_id=iou.package_id)

    # 1. The issuer creates the IOU and waits for its transaction.
    issue = client.commands(
        [ledger.create(iou, values.record(
            issuer=values.party(args.issuer), owner=values.party(args.owner),
            currency=values.text(args.currency), amount=values.decimal(args.amount)))],
        act_as=args.issuer)
    issued = client.submit_and_wait(issue)
    # Its contract id: the one create of that transaction, read from the (bounded) stream.
    (issue_transaction,) = client.transactions(
        [args.owner], begin_exclusive=issued.offset - 1, end_inclusive=issued.offset)
    (contract,) = [event.created for event in issue_transaction.events if event.WhichOneof("kind") == "created"]
    emit("issued", command_id=issue.command_id, transaction_id=issued.transaction_id, offset=issued.offset,
         **created(contract))

    # 2. The owner transfers it, asynchronously: the outcome comes on the completion stream.
    transfer = client.commands(
        [ledger.exercise(iou, contract.contract_id, "Transfer", values.record_value(newOwner=values.party(args.new_owner)))],
        act_as=args.owner)
    submission_id = client.submit(transfer)
    emit("submitted", command_id=transfer.command_id, submission_id=submission_id)
    for completion in client.completions([args.owner]):
        if completion.command_id == transfer.command_id:
            break  # leaving the loop cancels the stream
    emit("completed", command_id=completion.command_id, code=completion.status.code,
         error_id=completion.status.error_id, transaction_id=completion.transaction_id)
    if completion.status.code != 0:
        raise weft.WeftError(completion.status, "transfer completion")

    # 3. The transfer on the live transaction stream of the issuer and the owner.
    for transaction in client.transactions([args.issuer, args.owner], begin_exclusive=issued.offset):
        if transaction.transaction_id == completion.transaction_id:
            break
    emit("transferred", transaction_id=transaction.transaction_id, offset=transaction.offset,
         command_id=transaction.command_id,
         archived=[event.archived.contract_id for event in transaction.events if event.WhichOneof("kind") == "archived"],
         created=[created(event.created) for event in transaction.events if event.WhichOneof("kind") == "created"])

    # 4. The same transaction as a tree: the Transfer exercise and what it created.
    (tree,) = client.transaction_trees(
        [args.issuer, args.owner], begin_exclusive=transaction.offset - 1, end_inclusive=transaction.offset)
    events = {}
    for event in tree.events:
        kind = event.WhichOneof("kind")
        events[getattr(event, kind).event_id] = (kind, getattr(event, kind))

    def node(event_id):
        kind, event = events[event_id]
        if kind == "created":
            return {"created": event.contract_id}
        return {"exercised": event.choice, "contract_id": event.contract_id, "acting_parties": list(event.acting_parties),
                "consuming": event.consuming, "children": [node(child) for child in event.child_event_ids]}

    emit("tree", transaction_id=tree.transaction_id, roots=[node(root) for root in tree.root_event_ids])

    # 5. What the issuer holds now.
    contracts, offset = client.active_contracts([args.issuer], templates=[iou])
    emit("active", party=args.issuer, offset=offset, contract_ids=[event.contract_id for event in contracts])


def main(argv):
    args = arguments(argv)
    metadata = weft.bearer(args.token) if args.token else ()
    try:
        with weft.Connection(args.address, args.ca, server_name=args.server_name, certfile=args.cert, keyfile=args.key,
                             metadata=metadata) as connection:
            run(weft.LedgerClient(connection, application_id=args.application_id), args)
        return 0
    except weft.WeftError as error:
        code = error.code.name if isinstance(error.code, weft.StatusCode) else str(error.code)
        emit("error", method=error.method, code=code, code_number=int(error.code), error_id=error.error_id,
             message=error.message)
        print(f"transfer_iou.py: the participant refused: {error}", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"transfer_iou.py: {error}", file=sys.stderr)
        return 64
    except (weft.ConnectError, weft.ProtocolError) as error:
        print(f"transfer_iou.py: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
