"""The simulator's world: its own billing table on DynamoDB Local, its own in-process Stripe emulator (no
webhook endpoint: the simulator delivers Stripe's events itself, with the faults it chose), and per
scenario the real service graph (`build_services`) on a simulated clock, with faults injected at the
boundaries: the DynamoDB table (conflicts, throttling, a crash before or after a write) and the Stripe
gateway (429, 5xx, a timeout before or after Stripe acted)."""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import boto3
import botocore
import botocore.context
import stripe
from boto3.dynamodb.conditions import AttributeBase, ConditionBase, Key
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.dynamo import PerThreadTable
from shared.errors import StripeTimeoutError, ThrottledError, UpstreamError
from shared.settings import ApiSettings
from shared.stripe_gateway import StripeGateway
from shared.wiring import Services, build_services
from tests.local import cfn, lean_http
from tests.local.stripe_emulator import StripeEmulator
from tests.local.stripe_emulator.in_process import InProcessClient

API_KEY = "sk_test_local"

# DynamoDB calls a repository makes (on the Table resource, or on its client for transactions).
TABLE_WRITES = ("put_item", "update_item")
CLIENT_WRITES = ("transact_write_items", "put_item")
TABLE_READS = ("get_item", "query")


class SimCrash(Exception):
    """The process died here (a Lambda timeout, an out-of-memory kill): nothing after this point ran.
    Raised by the simulator only; product code never catches it (it is not a DomainError)."""


class SimClock:
    """The scenario's "now": it moves only when the simulator moves it."""

    def __init__(self, now: datetime):
        self.at = now

    def now(self) -> datetime:
        return self.at


@dataclass
class FaultPlan:
    """Which faults this scenario injects, drawn from its seed: a rate per fault kind (0 = never) and the
    random stream that decides each call. `log` counts the faults injected."""

    rng: random.Random
    rates: dict[str, float]
    armed: bool = True  # off while the simulator itself reads (invariants) or sets a scenario up
    log: list[str] = field(default_factory=list)
    calls: int = 0  # DynamoDB and Stripe calls made by the services (the cost of a scenario)
    outbox_writes: int = 0  # DynamoDB writes tried that name an outbox item (the stream's only news)

    def fire(self, kind: str) -> bool:
        rate = self.rates.get(kind, 0.0)
        if not self.armed or rate <= 0 or self.rng.random() >= rate:
            return False
        self.log.append(kind)
        return True


def _client_error(code: str, operation: str) -> ClientError:
    if code == "TransactionConflict":
        response: dict[str, Any] = {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": "TransactionConflict"}],
        }
    else:
        response = {"Error": {"Code": code, "Message": "Rate exceeded"}}
    return ClientError(response, operation)  # type: ignore[arg-type]


def _names_outbox(request: dict[str, Any]) -> bool:
    """Whether a write puts or updates an outbox item (`OUTBOX#`: what the table's stream hands over)."""
    writes = [next(iter(i.values())) for i in request.get("TransactItems", [])] or [request]
    keys = [(w.get("Item") or w.get("Key") or {}).get("SK", "") for w in writes]
    return any(str(k.get("S", "") if isinstance(k, dict) else k).startswith("OUTBOX#") for k in keys)


def _guarded(call: Callable[..., Any], name: str, faults: FaultPlan, *, write: bool) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        faults.calls += 1
        faults.outbox_writes += write and _names_outbox(kwargs)
        if write and name == "transact_write_items" and faults.fire("ddb_conflict"):
            raise _client_error("TransactionConflict", name)
        if faults.fire("ddb_throttle"):
            raise _client_error("ThrottlingException", name)
        if write and faults.fire("crash_before_write"):
            raise SimCrash(f"crash before {name}")
        result = call(*args, **kwargs)
        if write and faults.fire("crash_after_write"):
            raise SimCrash(f"crash after {name}")
        return result

    return run


class FaultyClient:
    def __init__(self, client: Any, faults: FaultPlan):
        self._client, self._faults = client, faults

    def __getattr__(self, name: str) -> Any:
        got = getattr(self._client, name)
        if name in CLIENT_WRITES or name in ("batch_get_item", "transact_get_items"):
            return _guarded(got, name, self._faults, write=name in CLIENT_WRITES)
        return got


class _Meta:
    def __init__(self, meta: Any, faults: FaultPlan):
        self.client = FaultyClient(meta.client, faults)
        self._meta = meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meta, name)


class FaultyTable:
    """A boto3 Table whose calls may fail as the scenario's faults say."""

    def __init__(self, table: Any, faults: FaultPlan):
        self._table, self._faults = table, faults
        self.name = table.name
        self.meta = _Meta(table.meta, faults)

    def __getattr__(self, name: str) -> Any:
        got = getattr(self._table, name)
        if name in TABLE_WRITES or name in TABLE_READS:
            return _guarded(got, name, self._faults, write=name in TABLE_WRITES)
        return got


# Gateway methods that only read: a fault there is a failed read, never a half-done action.
_STRIPE_FAULTS: tuple[tuple[str, Callable[[], Exception]], ...] = (
    ("stripe_429", lambda: ThrottledError("Stripe is rate limiting; retry shortly.")),
    ("stripe_5xx", lambda: UpstreamError("Stripe answered 500.")),
    ("stripe_timeout", lambda: StripeTimeoutError("Stripe did not answer in time.")),
)


class FaultyGateway:
    """The real gateway, each call of which may fail as Stripe can: 429 / 5xx before it acted, or a
    timeout after it acted (the answer lost: a retry with the same idempotency key finds it done)."""

    def __init__(self, gateway: StripeGateway, faults: FaultPlan):
        self._gateway, self._faults = gateway, faults

    def __getattr__(self, name: str) -> Any:
        got = getattr(self._gateway, name)
        if not callable(got) or name.startswith("_") or name in ("parse_webhook", "price_id"):
            return got
        faults = self._faults

        def call(*args: Any, **kwargs: Any) -> Any:
            faults.calls += 1
            for kind, error in _STRIPE_FAULTS[:2]:
                if faults.fire(kind):
                    raise error()
            result = got(*args, **kwargs)
            if faults.fire("stripe_timeout"):
                raise _STRIPE_FAULTS[2][1]()
            return result

        return call


class MemoryDocuments:
    """Invoice PDFs and CSVs kept in memory (S3 is not what the simulation is about)."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.saved[key] = body

    def get(self, key: str) -> bytes:
        return self.saved[key]

    def url(self, key: str, filename: str, expires: int = 900) -> str:
        return f"memory://{key}"


def _in_process_gateway(emulator: StripeEmulator, base: str) -> StripeGateway:
    """The real gateway (one per account: as a warm Lambda keeps its own), whose SDK client reaches the
    emulator without HTTP: the emulator's request handler runs in the calling thread (the SDK's request
    building, retries and error mapping unchanged). HTTP to a local server costs ~1.5 ms of this process's CPU
    a call."""
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=base)
    connection = gateway._connection  # the SDK's client, made as the product makes it; its transport replaced
    connection.client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": base},
        max_network_retries=gateway._max_retries,
        http_client=InProcessClient(emulator),
    )
    return gateway


# Orgs (scenarios) that live in one Stripe account before a worker opens a new one. An account's lists (the
# reconciler's events of the account, a customer's objects among the account's) then cost what a few orgs'
# lives made, not the whole run's: one emulator for every scenario made each scenario's reconciliation read
# every earlier scenario's events (the run's cost grew as the square of its scenarios).
ACCOUNT_ORGS = 8


class StripeAccount:
    """One Stripe account: its emulator (in process, no socket), the real gateway on it, the simulator's own
    SDK client (Stripe's side of the world: refunds, disputes...), and its events dealt to their customers."""

    def __init__(self) -> None:
        self.emulator = StripeEmulator(api_key=API_KEY, webhook_secret="whsec_local", strict_contract=True)
        base = self.emulator.start_in_process()
        self.emulator.set_webhook_endpoint(None)
        self.gateway = _in_process_gateway(self.emulator, base)
        self.sdk = stripe.StripeClient(
            API_KEY, base_addresses={"api": base}, max_network_retries=0, http_client=InProcessClient(self.emulator)
        )
        self.orgs = 0
        self._cursor, self._mail = 0, dict[str, list[dict[str, Any]]]()

    @property
    def store(self) -> Any:
        return self.emulator.store

    def events_for(self, customer: str) -> list[dict[str, Any]]:
        """Stripe's events about the customer not taken yet, oldest first (each scenario takes its own)."""
        store = self.emulator.store
        with store.lock:
            fresh = [store.objects[i] for i in store.event_ids[self._cursor :]]
            self._cursor = len(store.event_ids)
        for event in fresh:
            owner = self._customer_of(event["data"]["object"])
            if owner:
                self._mail.setdefault(owner, []).append(_copied(event))
        return self._mail.pop(customer, [])

    def _customer_of(self, obj: dict[str, Any]) -> str | None:
        """The customer an event is about: the object's own, or its charge's or payment's (a dispute or a
        refund names no customer: dealt by its object alone, their webhooks were never delivered)."""
        if obj.get("object") == "customer":
            return str(obj["id"])
        if isinstance(obj.get("customer"), str):
            return str(obj["customer"])
        store = self.emulator.store
        for paid_by in ("charge", "payment_intent"):
            paid = obj.get(paid_by)
            if isinstance(paid, str):
                with store.lock:
                    owner = (store.objects.get(paid) or {}).get("customer")
                if isinstance(owner, str):
                    return owner
        return None

    def stop(self) -> None:
        self.emulator.stop()


# DynamoDB Local reads only the credential's access key from the Authorization header (under -sharedDb, not
# even that) and checks no signature: SigV4's hashing and HMACs (~0.2 ms a call) are skipped for the world's
# session, its requests carrying a well-formed header with no signature worth computing.
_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
)


def _unsigned(session: Any) -> None:
    def authorize(request: Any, **_: Any) -> None:
        request.headers["Authorization"] = _AUTHORIZATION

    session.register("choose-signer.dynamodb", lambda **_: botocore.UNSIGNED)
    session.register("request-created.dynamodb", authorize)


_PARAMS_COPY = "dynamodb-create-params-copy"  # boto3.dynamodb.transform.DynamoDBHighLevelResource's handler
# Immutable: deepcopy hands back the same object; or only read (boto3 builds an expression of a condition).
_SHARED = (str, int, float, bool, bytes, Decimal, type(None), ConditionBase, AttributeBase)


def _copied(value: Any) -> Any:
    """`copy.deepcopy` of a call's parameters (what boto3's DynamoDB resources do, so that their serializing in
    place spares the caller's dicts), a few times faster: dicts and lists made anew, immutable values shared (as
    deepcopy shares them; conditions too, which boto3 only reads), anything else deep-copied."""
    kind = type(value)
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if isinstance(value, _SHARED):
        return value
    return copy.deepcopy(value)


class _EndpointOnce:
    """A DynamoDB client resolving its endpoint once per operation. Given an endpoint URL (DynamoDB Local), DynamoDB's
    endpoint rule set answers that URL whatever the call's parameters, but botocore resolves it anew for each call
    (its parameters drawn from the call: ~5% of a call's Python). The user-agent features the resolution registered
    are registered again for each call (the same `User-Agent`); an answer with properties is not kept."""

    _ruleset_resolver: Any

    def _resolve_endpoint_ruleset(self, operation_model: Any, params: Any, request_context: Any, *args: Any) -> Any:
        resolve = super()._resolve_endpoint_ruleset  # type: ignore[misc]
        resolver, context = self._ruleset_resolver, botocore.context.get_context()
        if resolver is None or context is None or not resolver._builtins.get("SDK::Endpoint"):
            return resolve(operation_model, params, request_context, *args)
        known = self.__dict__.setdefault("_endpoints", {})
        if operation_model.name in known:
            (url, headers, properties), features = known[operation_model.name]
            context.features.update(features)
            return url, dict(headers), dict(properties)
        before = set(context.features)
        resolved = resolve(operation_model, params, request_context, *args)
        if not resolved[2]:
            known[operation_model.name] = resolved, context.features - before
        return resolved


def lean_session(session: Any) -> None:
    """The world's botocore session: its requests unsigned, botocore's client-side parameter checks (~0.2 ms a call)
    off (DynamoDB Local refuses a malformed request all the same: a ValidationException, which no_server_error
    reports), sent by `lean_http` (a socket of the thread's own; the replies read without urllib3 and
    http.client), the parameters copied without `copy.deepcopy`, the endpoint resolved once per operation. What
    reaches DynamoDB Local and what the services get back are botocore's own (tests/sim/test_lean_http.py compares
    them)."""
    session.set_default_client_config(Config(parameter_validation=False))
    _unsigned(session)
    lean_http.install(session)
    # Under boto3's own id: the resources' deep copy is then not registered.
    session.register("provide-client-params.dynamodb", lambda params, **_: _copied(params), unique_id=_PARAMS_COPY)
    session.register("creating-client-class.dynamodb", lambda base_classes, **_: base_classes.insert(0, _EndpointOnce))


@dataclass
class ScenarioServices:
    services: Services
    clock: SimClock
    faults: FaultPlan
    gateway: StripeGateway  # the real one, fault free (the simulator's own Stripe reads and helpers)
    table: Any  # the real table, fault free (the invariants' reads)
    stripe: StripeAccount  # the org's Stripe account


def _streamless(table: dict[str, Any]) -> dict[str, Any]:
    """The billing table as the template declares it (keys, indexes, TTL), without its stream: the simulation's
    stream is simulated (`outbox.py` reads the org's new outbox items), and DynamoDB Local would otherwise write
    a stream record beside every write of the run and read the stream's description for each (~8 % of its CPU)."""
    properties = {k: v for k, v in table["Properties"].items() if k != "StreamSpecification"}
    return {**table, "Properties": properties}


class SimWorld:
    """One table shared by every scenario of a run (each scenario is one org), and per worker thread a Stripe
    account shared by `ACCOUNT_ORGS` scenarios in turn."""

    def __init__(self, table_name: str | None = None) -> None:
        """A new table, or (`table_name`) the table another process's world made: the run's scenarios share
        one table whichever process runs them (the invoice series, the invoice run's index are the table's)."""
        self.table_name = table_name or f"Sim{uuid.uuid4().hex[:10]}"
        if table_name is None:
            billing = cfn.load_template()["Resources"]["BillingTable"]
            cfn.create_tables(boto3.client("dynamodb"), {"Resources": {self.table_name: _streamless(billing)}})
        self._accounts: list[StripeAccount] = []
        self._account = threading.local()
        self.documents = MemoryDocuments()
        # Typesetting a PDF costs more than a whole scenario's DynamoDB calls and is not what the simulation is
        # about (tests/integration/test_invoice_* render them): the invoice's own JSON stands in for it.
        self._pdf = mock.patch("shared.invoices.service.render_pdf", lambda invoice: invoice.model_dump_json().encode())
        self._pdf.start()
        self._tables = PerThreadTable(self.table_name)  # boto3 resources are per thread, and costly to make
        lean_session(self._tables._session._session)
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._pdf.stop()
        for account in self._accounts:
            account.stop()

    def account(self) -> StripeAccount:
        """This thread's Stripe account for one more org; a new one once it holds `ACCOUNT_ORGS`."""
        account: StripeAccount | None = getattr(self._account, "current", None)
        if account is None or account.orgs >= ACCOUNT_ORGS:
            fresh = self._account.current = StripeAccount()
            with self._lock:
                self._accounts = [a for a in self._accounts if a is not account] + [fresh]
            if account is not None:
                account.stop()
            account = fresh
        account.orgs += 1
        return account

    def invoice_counters(self) -> dict[str, int]:
        """Each invoice series' counter (`LB-<year>-`: the last number the year gave out). The numbers issued
        are read from each scenario's org at its end (`Outcome.numbers`): a scan of the whole table cost
        seconds at the end of a CI run, growing with it."""
        table = boto3.resource("dynamodb").Table(self.table_name)
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq("INVOICE_NUMBERS") & Key("SK").begins_with("YEAR#"),
            "ConsistentRead": True,
        }
        counters = {}
        while True:
            page = table.query(**query)
            for item in page["Items"]:
                counters[f"LB-{str(item['SK']).removeprefix('YEAR#')}-"] = int(item["last"])
            if "LastEvaluatedKey" not in page:
                return counters
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def scenario(self, now: datetime, faults: FaultPlan) -> ScenarioServices:
        table = self._tables
        account = self.account()
        gateway = account.gateway
        settings = ApiSettings(
            table_name=self.table_name, notifications_topic_arn="", event_bus_name="sim", documents_bucket=""
        )
        clock = SimClock(now)
        services = build_services(
            settings,
            clock=clock,
            table=FaultyTable(table, faults),
            gateway=FaultyGateway(gateway, faults),  # type: ignore[arg-type]
            documents=self.documents,  # type: ignore[arg-type]
        )
        return ScenarioServices(services, clock, faults, gateway, table, account)
