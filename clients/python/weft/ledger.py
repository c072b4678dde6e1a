"""A small client of the Ledger API (docs/ledger-api.md): commands, completions,
transactions (flat and trees), active contracts, and the package and party calls an
application needs to get going.

Every method is one call on the connection; streams are generators (break out of the loop
to cancel the call). Refusals raise `weft.WeftError` with the status code and error id the
API documents, e.g. UNAUTHENTICATED / AUTH_TOKEN_MISSING without a token.
"""
import uuid

from weft.v1 import ledger_pb2, value_pb2

SERVICE = "/weft.v1."


def _path(service, method):
    return f"{SERVICE}{service}/{method}"


def template(package_id, name):
    return value_pb2.TemplateId(package_id=package_id, template_name=name)


def create(template_id, arguments):
    """A create command; `arguments` is a labelled Record (`weft.values.record(...)`)."""
    return ledger_pb2.Command(create=ledger_pb2.CreateCommand(template_id=template_id, create_arguments=arguments))


def exercise(template_id, contract_id, choice, argument):
    """An exercise command; `argument` is a Value holding the choice's record."""
    return ledger_pb2.Command(
        exercise=ledger_pb2.ExerciseCommand(
            template_id=template_id, contract_id=contract_id, choice=choice, choice_argument=argument))


class LedgerClient:
    """The Ledger API of one participant, over a `weft.Connection`.

    `application_id` names the application in its commands and completion stream.
    """

    def __init__(self, connection, application_id="weft-python"):
        self.connection = connection
        self.application_id = application_id

    def commands(self, commands, act_as, command_id=None):
        """A `Commands` message acting as `act_as` (a party or a list of parties), with a
        fresh command id unless one is given (reuse an id to resubmit safely)."""
        parties = [act_as] if isinstance(act_as, str) else list(act_as)
        return ledger_pb2.Commands(
            command_id=command_id or f"py-{uuid.uuid4()}", application_id=self.application_id,
            act_as=parties, commands=list(commands))

    # Commands

    def submit(self, commands):
        """Submits and returns the submission id at once; the outcome comes on the completion stream."""
        return self.connection.unary(
            _path("CommandService", "Submit"), ledger_pb2.SubmitRequest(commands=commands),
            ledger_pb2.SubmitResponse).submission_id

    def submit_and_wait(self, commands):
        """Submits and waits: a `SubmitAndWaitResponse` (transaction id, ledger offset), or
        WeftError ABORTED with the reject reason as its error id."""
        return self.connection.unary(
            _path("CommandService", "SubmitAndWait"), ledger_pb2.SubmitAndWaitRequest(commands=commands),
            ledger_pb2.SubmitAndWaitResponse)

    def completions(self, parties, begin_exclusive=0):
        """Yields this application's `Completion`s for `parties` after the completion offset
        `begin_exclusive`, then live."""
        request = ledger_pb2.CompletionStreamRequest(
            application_id=self.application_id, parties=list(parties), begin_exclusive=begin_exclusive)
        for response in self.connection.server_stream(
                _path("CompletionService", "CompletionStream"), request, ledger_pb2.CompletionStreamResponse):
            yield response.completion

    # Reading the ledger

    @staticmethod
    def _filter(parties, templates):
        return ledger_pb2.TransactionFilter(parties=list(parties), template_ids=list(templates))

    def transactions(self, parties, begin_exclusive=0, end_inclusive=0, templates=()):
        """Yields the flat `Transaction`s of `parties` after ledger offset `begin_exclusive`,
        up to `end_inclusive` (0: then live, for ever)."""
        request = ledger_pb2.GetTransactionsRequest(
            begin_exclusive=begin_exclusive, end_inclusive=end_inclusive, filter=self._filter(parties, templates))
        for response in self.connection.server_stream(
                _path("TransactionService", "GetTransactions"), request, ledger_pb2.GetTransactionsResponse):
            yield response.transaction

    def transaction_trees(self, parties, begin_exclusive=0, end_inclusive=0, templates=()):
        """The same transactions as `TransactionTreeView`s: creates and exercises linked by
        `child_event_ids`, from `root_event_ids`."""
        request = ledger_pb2.GetTransactionTreesRequest(
            begin_exclusive=begin_exclusive, end_inclusive=end_inclusive, filter=self._filter(parties, templates))
        for response in self.connection.server_stream(
                _path("TransactionService", "GetTransactionTrees"), request, ledger_pb2.GetTransactionTreesResponse):
            yield response.transaction

    def ledger_end(self):
        """The ledger offset of the participant's last transaction (0: empty)."""
        return self.connection.unary(
            _path("TransactionService", "GetLedgerEnd"), ledger_pb2.GetLedgerEndRequest(),
            ledger_pb2.GetLedgerEndResponse).offset

    def active_contracts(self, parties, templates=()):
        """The active contracts of `parties`: (list of `CreatedEvent`, the ledger offset the set is valid at)."""
        contracts, offset = [], 0
        for response in self.connection.server_stream(
                _path("ActiveContractsService", "GetActiveContracts"),
                ledger_pb2.GetActiveContractsRequest(filter=self._filter(parties, templates)),
                ledger_pb2.GetActiveContractsResponse):
            contracts.extend(response.active_contracts)
            offset = response.offset or offset
        return contracts, offset

    # Packages and parties (when the API checks tokens: listing and reading packages needs
    # any valid token; uploading packages and managing parties need admin rights)

    def upload_package(self, source, file_name="package.weft"):
        """Uploads a contract package's source; returns its package id (uploading twice is harmless)."""
        return self.connection.unary(
            _path("PackageManagementService", "UploadPackage"),
            ledger_pb2.UploadPackageRequest(source=source, file_name=file_name),
            ledger_pb2.UploadPackageResponse).package_id

    def list_packages(self):
        """The uploaded packages' `PackageDetails`."""
        return list(self.connection.unary(
            _path("PackageManagementService", "ListPackages"), ledger_pb2.ListPackagesRequest(),
            ledger_pb2.ListPackagesResponse).packages)

    def allocate_party(self, hint, display_name=""):
        """Allocates `hint::<participant namespace>`; returns the party id once it can submit."""
        return self.connection.unary(
            _path("PartyManagementService", "AllocateParty"),
            ledger_pb2.AllocatePartyRequest(party_id_hint=hint, display_name=display_name),
            ledger_pb2.AllocatePartyResponse).party_details.party
