"""`python -m tests.bench.run [--quick] [--build sam|make|none]`: runs `sam build` (group 8), then starts
the local stack once and runs the seven other benchmark groups, prints one table and writes
bench/results.json. `--quick` runs every group at a tiny scale (for tests); its build group runs only
one function's `make build-*` target (seconds), not the whole `sam build` with the dependencies layer.

Every figure is a ratio against a baseline measured in the same run on the same engine (DynamoDB
Local), so the ratios hold on a noisy shared machine even when the absolute numbers do not."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.probe import PROBE, Tally
from tests.local.samples import sample_event

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results.json"

# AWS list prices, us-east-1, on-demand
PRICE_WRU = 1.25 / 1e6
PRICE_RRU = 0.25 / 1e6
PRICE_GB_S = 0.0000133334  # Lambda arm64
LAMBDA_GB = 0.5
PRICE_LAMBDA_REQ = 0.20 / 1e6
PRICE_TRANSITION = 25 / 1e6


@dataclass
class Figure:
    value: float
    unit: str
    baseline: float | None = None
    baseline_unit: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Group:
    name: str
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _byo_orgs(stack: Any, n: int, label: str) -> list[Any]:
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from tests.integration.credit_kit import credit_kit

    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], _now())
    owner = Caller(f"bench_{uuid.uuid4().hex[:8]}", None, frozenset())
    return [
        kit.orgs.create_org(
            owner, name=f"{label} {i}", billing_mode=BillingMode.BYO, currency="USD", plan_id="free"
        ).org
        for i in range(n)
    ]


# ---------------------------------------------------------------------- 1. wallet throughput
def _hammer(workers: list[Callable[[int], None]], seconds: float) -> tuple[int, int]:
    """Runs each worker in its own thread for `seconds`; returns (successes, failures)."""
    ok = [0] * len(workers)
    bad = [0] * len(workers)
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            try:
                workers[i](n)
                ok[i] += 1
            except Exception:
                bad[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(ok), sum(bad)


def _side_by_side(ours: list[Callable[[int], None]], raw: list[Callable[[int], None]], seconds: float) -> list[int]:
    """[ours ok, ours failed, raw ok, raw failed] over `seconds` each. DynamoDB Local is a JVM and gets
    faster as it warms up: both run untimed first, then alternate in short rounds so neither gets the
    warmer engine."""
    _hammer(ours, seconds / 5)
    _hammer(raw, seconds / 5)
    rounds, counts = 4, [0, 0, 0, 0]
    for r in range(rounds):
        pair = [(ours, 0), (raw, 2)] if r % 2 == 0 else [(raw, 2), (ours, 0)]
        for workers, at in pair:
            ok, bad = _hammer(workers, seconds / rounds)
            counts[at] += ok
            counts[at + 1] += bad
    return counts


def _raw_transact(client: Any, items: list[dict[str, Any]]) -> bool:
    """One TransactWriteItems; False if a condition or a concurrent transaction cancelled it."""
    try:
        client.transact_write_items(TransactItems=items)
    except client.exceptions.TransactionCanceledException:
        return False
    return True


def _raw_hold(client: Any, table: str, pk: str, hold_id: str) -> None:
    """A hold's reads and transaction shape, written with boto3 alone: the org and the project's budget
    limits read; the account update under its condition, the hold put, the project's budget counters
    under their condition and the check of its limits (a project without a budget)."""
    expires = "2099-01-01T00:00:00Z"
    item = {
        "PK": {"S": pk},
        "SK": {"S": f"HOLD#{hold_id}"},
        "type": {"S": "wallet_hold"},
        "GSI2PK": {"S": "BENCH_RAW_HOLDS"},
        "GSI2SK": {"S": expires},
        "hold_id": {"S": hold_id},
        "project_id": {"S": "p"},
        "platform": {"S": "meta"},
        "amount_minor": {"N": "1"},
        "currency": {"S": "USD"},
        "status": {"S": "pending"},
        "created_at": {"S": expires},
        "expires_at": {"S": expires},
    }
    update = {
        "TableName": table,
        "Key": {"PK": {"S": pk}, "SK": {"S": "WALLET"}},
        "UpdateExpression": "SET held = held + :a, available = available - :a",
        "ConditionExpression": "available >= :a AND #s <> :paused AND billing_mode = :agency",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":a": {"N": "1"}, ":paused": {"S": "paused"}, ":agency": {"S": "agency"}},
    }
    client.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": "ORG"}}, ConsistentRead=True)
    rule = {"PK": {"S": pk}, "SK": {"S": "BUDGET#p"}}
    client.get_item(TableName=table, Key=rule, ConsistentRead=True)
    counters = {
        "TableName": table,
        "Key": {"PK": {"S": pk}, "SK": {"S": "BUDGETP#2099-01-01T00:00:00Z#p"}},
        "UpdateExpression": "SET project_id = :p ADD held :a, committed :a",
        "ExpressionAttributeValues": {":p": {"S": "p"}, ":a": {"N": "1"}},
    }
    if not _raw_transact(
        client,
        [
            {"Update": update},
            {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}},
            {"Update": counters},
            {"ConditionCheck": {"TableName": table, "Key": rule, "ConditionExpression": "attribute_not_exists(PK)"}},
        ],
    ):
        raise RuntimeError("raw hold refused")


def _raw_debit(client: Any, table: str, pk: str, bill_id: str) -> None:
    """A debit's transaction shape, written with boto3 alone: read the account, then the versioned update,
    the entry with its spend and fee lines, the bill's marker and the period aggregate; on a lost race,
    read again after the same jittered backoff as the service."""
    from shared.retry import backoff
    from shared.wallet.poster import MAX_ATTEMPTS

    def put(sk: str, **fields: dict[str, str]) -> dict[str, Any]:
        item = {"PK": {"S": pk}, "SK": {"S": sk}, **fields}
        return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}

    def add(sk: str, expression: str, values: dict[str, Any]) -> dict[str, Any]:
        key = {"PK": {"S": pk}, "SK": {"S": sk}}
        return {
            "Update": {
                "TableName": table,
                "Key": key,
                "UpdateExpression": expression,
                "ExpressionAttributeValues": values,
            }
        }

    for attempt in range(MAX_ATTEMPTS):
        got = client.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": "WALLET"}}, ConsistentRead=True)
        version, seq, balance = (int(got["Item"][k]["N"]) for k in ("version", "seq", "balance"))
        spend, fee = 100, 5
        lines = [
            {"M": {"kind": {"S": kind}, "amount": {"N": str(-a)}, "balance_after": {"N": str(b)}}}
            for kind, a, b in (("ad_spend", spend, balance - spend), ("platform_fee", fee, balance - spend - fee))
        ]
        entries = [put(f"WLEDGER#{seq + 1:012d}", lines={"L": lines})]
        account = {
            "Update": {
                "TableName": table,
                "Key": {"PK": {"S": pk}, "SK": {"S": "WALLET"}},
                "UpdateExpression": "SET balance = :b, version = :v, seq = :s, available = available - :d",
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {
                    ":b": {"N": str(balance - spend - fee)},
                    ":v": {"N": str(version + 1)},
                    ":s": {"N": str(seq + 2)},
                    ":d": {"N": str(spend + fee)},
                    ":read": {"N": str(version)},
                },
            }
        }
        marker = put(f"IDEM#bill:meta:{bill_id}", amount_minor={"N": str(spend)}, fee_minor={"N": str(fee)})
        period = add(
            "WPERIOD#bench#meta#p",
            "ADD ad_spend :s, fee :f, bills :one",
            {":s": {"N": "100"}, ":f": {"N": "5"}, ":one": {"N": "1"}},
        )
        if _raw_transact(client, [account, *entries, marker, period]):
            return
        time.sleep(backoff(attempt))
    raise RuntimeError("raw debit: too many conflicts")


def bench_wallet(stack: Any, quick: bool) -> Group:
    import boto3

    from shared.wallet.service import Bill
    from tests.integration.wallet_kit import agency_org, fund, wallet_kit

    g = Group("1 wallet throughput")
    seconds = 0.5 if quick else 5.0
    threads = 8
    kit = wallet_kit(stack, _now())
    org_id, project_id, _ = agency_org(kit)
    fund(kit, org_id, 10**12, uuid.uuid4().hex)
    kits = [wallet_kit(stack, _now()) for _ in range(threads)]
    table = stack.env["TABLE_NAME"]
    raw_pk = f"ORG#bench_raw_{uuid.uuid4().hex[:8]}"
    boto3.Session().client("dynamodb").put_item(
        TableName=table,
        Item={
            "PK": {"S": raw_pk},
            "SK": {"S": "WALLET"},
            "balance": {"N": str(10**12)},
            "held": {"N": "0"},
            "available": {"N": str(10**12)},
            "status": {"S": "active"},
            "billing_mode": {"S": "agency"},
            "version": {"N": "1"},
            "seq": {"N": "0"},
        },
    )
    clients = [boto3.Session().client("dynamodb") for _ in range(threads)]

    def unique(i: int, n: int) -> str:
        return f"{i}-{n}-{uuid.uuid4().hex[:6]}"

    def our_hold(i: int) -> Callable[[int], None]:
        return lambda n: (
            kits[i].wallet.hold(
                org_id=org_id, hold_id=f"h{unique(i, n)}", project_id=project_id, platform="meta", amount_minor=1
            )
            and None
        )

    def our_debit(i: int) -> Callable[[int], None]:
        return lambda n: (
            kits[i].wallet.record_bill(
                Bill(
                    org_id=org_id,
                    platform="meta",
                    bill_id=f"b{unique(i, n)}",
                    project_id=project_id,
                    amount_minor=100,
                    currency="USD",
                    billed_on=_now().date(),
                    hold_id=None,
                    actor="bench",
                )
            )
            and None
        )

    def raw_hold(i: int) -> Callable[[int], None]:
        return lambda n: _raw_hold(clients[i], table, raw_pk, f"h{unique(i, n)}")

    def raw_debit(i: int) -> Callable[[int], None]:
        return lambda n: _raw_debit(clients[i], table, raw_pk, f"b{unique(i, n)}")

    notes = []
    for name, ours, raw, what in (
        ("holds/s (8 clients, one wallet)", our_hold, raw_hold, "holds/s"),
        ("debits/s (8 clients, one wallet)", our_debit, raw_debit, "debits/s"),
    ):
        # Debits serialize on the account's version: give them longer, for as many samples as holds.
        span = seconds * (3 if what == "debits/s" else 1)
        ok, bad, raw_ok, raw_bad = _side_by_side(
            [ours(i) for i in range(threads)], [raw(i) for i in range(threads)], span
        )
        f = Figure(ok / span, what, raw_ok / span, f"raw {what}", "ratio >= 0.8")
        f.met = (f.ratio or 0) >= 0.8
        g.figures[name] = f
        notes.append(f"{what.split('/')[0]} failed: ours {bad}, raw {raw_bad}")
    g.notes.append(
        f"{seconds:g}s (debits {seconds * 3:g}s) each after a warm-up, in 4 alternating rounds; "
        f"{'; '.join(notes)}. The raw side writes the same transaction shape with boto3 alone: "
        "a hold's two items; a debit's read, then six items under the account's version, "
        "retried with the same backoff."
    )
    return g


# ---------------------------------------------------------------------- 2. handler overhead
ROUTES = [
    ("ApiFunction", "list_plans"),
    ("ApiFunction", "create_org"),
    ("ApiFunction", "get_template"),
    ("ApiFunction", "get_wallet"),
    ("InternalApiFunction", "sdk_events_batch"),
    ("InternalApiFunction", "wallet_hold"),
]


def _handler(spec_handler: str) -> Callable[[Any, Any], Any]:
    module, attr = spec_handler.rsplit(".", 1)
    fn: Callable[[Any, Any], Any] = getattr(importlib.import_module(module.replace("/", ".")), attr)
    return fn


def bench_handlers(stack: Any, quick: bool) -> Group:
    g = Group("2 handler overhead")
    warm, n = (3, 20) if quick else (20, 200)
    for function, sample in ROUTES:
        handler = _handler(stack.functions[function].handler)
        sample_text = json.dumps(sample_event(stack, ROOT / "events" / function / f"{sample}.json"))
        totals: list[float] = []
        ddb: list[float] = []
        for i in range(warm + n):
            event = json.loads(sample_text.replace("hold_sample_0001", f"hold_bench_{i}"))  # a new hold each time
            PROBE.reset_thread()
            started = time.perf_counter()
            reply = handler(event, _Context())
            elapsed = time.perf_counter() - started
            if i == 0 and not (200 <= int(reply.get("statusCode", 0)) < 300):
                g.notes.append(f"{function}/{sample} replied {reply.get('statusCode')}")
            if i >= warm:
                totals.append(elapsed * 1000)
                ddb.append(PROBE.ddb_seconds() * 1000)
        ddb50 = statistics.median(ddb)
        p50, p99 = statistics.median(totals), _pct(totals, 0.99)
        over50 = p50 - ddb50
        g.figures[f"{sample} p50 over DynamoDB"] = Figure(
            over50, "ms", ddb50, "ms DynamoDB p50", "<= 2 ms over DynamoDB", over50 <= 2.0
        )
        g.figures[f"{sample} p50 / p99 total"] = Figure(p50, "ms", ddb50, "ms DynamoDB p50", f"p99 {p99:.2f} ms")
    g.notes.append(f"{n} warm invocations each after {warm} warm-up, in-process with the sample event.")
    return g


# ---------------------------------------------------------------------- 3. cold import
PYCACHE = ROOT / ".local" / "bench-pycache"


def _import_seconds(statement: str, env: dict[str, str]) -> float:
    code = f"import time; t=time.perf_counter(); {statement}; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _import_ms(statement: str, env: dict[str, str], repeats: int, bytecode: bool = True) -> float:
    """Median import time in fresh interpreters. With `bytecode`, as the deployed artifact runs: every
    module already compiled (`make build-*` ships .pyc files); the first, untimed import writes them."""
    if bytecode:
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": str(PYCACHE)}
        _import_seconds(statement, env)
    else:
        env = env | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(PYCACHE / "none")}
    return statistics.median(_import_seconds(statement, env) for _ in range(repeats)) * 1000


# What every function needs before any of our code: boto3, Powertools' three (as observability sets them
# up) and pydantic. Measured, so the README can say how much of a handler's import is ours.
LIBRARY_FLOOR = (
    "import boto3, boto3.dynamodb.conditions; from pydantic import BaseModel, Field; "
    "from aws_lambda_powertools import Logger, Metrics, Tracer; "
    "Logger(); Metrics(); Tracer(patch_modules=['botocore'])"
)


def _lambda_env(stack: Any, spec: Any) -> dict[str, str]:
    """The function's environment as Lambda gives it: the template's variables, the runtime's own
    (the X-Ray SDK and Powertools check them) and tracing and metrics on, as deployed."""
    env = {**os.environ, **stack.env, **spec.environment}
    for local_only in ("POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_DISABLED"):
        env.pop(local_only, None)
    return env | {
        "LAMBDA_TASK_ROOT": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "_HANDLER": spec.handler,
    }


def bench_imports(stack: Any, quick: bool) -> Group:
    g = Group("3 cold import")
    repeats = 1 if quick else 5
    specs = sorted(stack.functions.values(), key=lambda spec: spec.handler)
    env = _lambda_env(stack, specs[0])
    base = _import_ms("import boto3", env, repeats)
    floor = _import_ms(LIBRARY_FLOOR, env, repeats)
    g.figures["library floor (boto3, Powertools, pydantic)"] = Figure(
        floor, "ms", base, "ms import boto3", "<= 1.5x boto3"
    )
    g.figures["library floor (boto3, Powertools, pydantic)"].met = floor / base <= 1.5
    ours = []
    for spec in specs:
        module = spec.handler.rsplit(".", 1)[0].replace("/", ".")
        t = _import_ms(f"import {module}", _lambda_env(stack, spec), repeats)
        f = Figure(t, "ms", base, "ms import boto3", "<= 1.5x boto3")
        f.met = (f.ratio or 99) <= 1.5
        g.figures[module] = f
        ours.append(f"{module.split('.')[1]} +{t - floor:.0f} ms")
    api = next(spec for spec in specs if spec.logical_id == "ApiFunction")
    module = api.handler.rsplit(".", 1)[0].replace("/", ".")
    g.figures["api handler without bytecode"] = Figure(
        _import_ms(f"import {module}", _lambda_env(stack, api), repeats, bytecode=False),
        "ms",
        g.figures[module].value,
        "ms with bytecode",
        "- (why the build compiles)",
    )
    g.notes.append(
        f"median of {repeats} fresh interpreters each, in each function's Lambda environment (tracing on), "
        "with bytecode as `make build-*` ships it. "
        f"Over the library floor: {', '.join(ours)}."
    )
    return g


# ---------------------------------------------------------------------- 4. SDK ingestion
# Before issue 22 (batches deduped by batch_id only, one ADD per org per batch, no per-event markers),
# measured by this group on this machine: 28,891 events/s, 100 counter writes and 110 writes in all per
# 100k events (10 orgs, batches of 10,000). Kept here to print next to the metering path's figures.
BEFORE_22 = {"events/s": 28_891.0, "counter writes": 100.0, "all writes": 110.0}


def bench_ingest(stack: Any, quick: bool) -> Group:
    from functions.limits import MAX_USAGE_EVENTS
    from shared.usage.metering import UsageEvent
    from shared.usage.service import SdkEvent
    from tests.integration.credit_kit import credit_kit

    g = Group("4 SDK ingestion")
    total, batch, n_orgs, naive_n = (1_000, 500, 10, 100) if quick else (100_000, 10_000, 10, 2_000)
    per_event_total = 1_000 if quick else 20_000  # one marker write each: 100k would take minutes here
    orgs = _byo_orgs(stack, n_orgs, "Ingest")
    now = _now()  # (after the orgs were made: usage dated before an org is refused)
    usage = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], now).usage
    naive = _naive_seconds(stack, orgs, naive_n)
    stack.flush_outbox()  # (the orgs' own messages are sent before the tally starts)
    scale = 100_000 / total
    # The SDK collector's batch route (an adapter onto the metering path: a marker per org and day)
    entries = [SdkEvent(orgs[i % n_orgs].org_id, now, 1) for i in range(total)]
    batches = [entries[i : i + batch] for i in range(0, total, batch)]
    counter_writes = 0
    with PROBE.measuring() as tally:
        started = time.perf_counter()
        for b in batches:
            counter_writes += usage.ingest_sdk_events(f"bench-{uuid.uuid4().hex}", b).groups  # an ADD each
        ours = time.perf_counter() - started
    t: Tally = tally[0]
    counter_writes *= scale
    target = n_orgs * len(batches) * scale
    g.figures["batch route: events/s"] = Figure(
        total / ours, "events/s", 1 / naive, "naive events/s", "> naive", ours < naive * total
    )
    g.figures["batch route: counter writes / 100k"] = Figure(
        counter_writes, "items", 100_000, "naive writes", f"<= {target:g} (orgs x batches)", counter_writes <= target
    )
    g.figures["batch route: all writes / 100k"] = Figure(t.write_items * scale, "items", 100_000, "naive writes")
    # POST /v1/internal/usage/events and Usage.EventsReported: each event deduped by its own id
    run = uuid.uuid4().hex[:8]
    events = [UsageEvent("sdk_events", orgs[i % n_orgs].org_id, now, 1, f"{run}-{i}") for i in range(per_event_total)]
    requests = [events[i : i + MAX_USAGE_EVENTS] for i in range(0, per_event_total, MAX_USAGE_EVENTS)]
    counters = markers = transactions = 0
    started = time.perf_counter()
    for r in requests:
        metered = usage.record_events(r)
        counters, markers = counters + metered.counter_writes, markers + metered.marker_writes
        transactions += metered.transactions
    per_event = time.perf_counter() - started
    k = 100_000 / per_event_total
    g.figures["events route: events/s"] = Figure(
        per_event_total / per_event, "events/s", 1 / naive, "naive events/s", "- (a marker per event id)"
    )
    chunk_target = (transactions + n_orgs * len(requests)) * k
    g.figures["events route: counter writes / 100k"] = Figure(
        counters * k,
        "items",
        100_000,
        "naive writes",
        f"<= {chunk_target:g} (org x chunk of 97)",
        counters * k <= chunk_target,
    )
    g.figures["events route: marker writes / 100k"] = Figure(markers * k, "items", 100_000, "naive writes", "= events")
    g.figures["before issue 22: events/s"] = Figure(BEFORE_22["events/s"], "events/s", target="batch_id dedupe only")
    g.figures["before issue 22: all writes / 100k"] = Figure(BEFORE_22["all writes"], "items", target="-")
    g.notes.append(
        f"batch route: {total:,} events, {n_orgs} orgs, batches of {batch:,}; events route: {per_event_total:,} "
        f"events in requests of {MAX_USAGE_EVENTS:,} ({transactions:,} transactions), scaled to 100k; naive = "
        f"{naive_n:,} UpdateItems timed" + (" (quick)" if quick else "")
    )
    return g


def _naive_seconds(stack: Any, orgs: list[Any], n: int) -> float:
    """Seconds per event of the naive way: one UpdateItem ADD per event."""
    import boto3

    client = boto3.Session().client("dynamodb")
    started = time.perf_counter()
    for i in range(n):
        client.update_item(
            TableName=stack.env["TABLE_NAME"],
            Key={"PK": {"S": f"ORG#{orgs[i % len(orgs)].org_id}"}, "SK": {"S": "BENCH#NAIVE"}},
            UpdateExpression="ADD sdk_events :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    return (time.perf_counter() - started) / n


# ---------------------------------------------------------------------- 5. invoice assembly
def bench_assembly(stack: Any, quick: bool) -> tuple[Group, int]:
    from functions.api.container import services
    from shared.credits.periods import period_containing
    from tests.integration.wallet_kit import agency_org, fund, wallet_kit

    g = Group("5 invoice assembly")
    big = 200 if quick else 10_000
    kit = wallet_kit(stack, _now())
    org_id, _, _ = agency_org(kit)
    for i in range(10):
        fund(kit, org_id, 1_000, f"asm-{uuid.uuid4().hex[:6]}-{i}")
    org = services().orgs._repo.get_org(org_id)
    assert org is not None
    period = period_containing(org, _now())
    small = services().invoices.assemble(org, period).reads
    table = kit.repo._table
    with table.batch_writer() as batch:
        for seq in range(big):
            batch.put_item(
                Item={
                    "PK": f"ORG#{org_id}",
                    "SK": f"WLEDGER#{900_000 + seq:012d}",
                    "kind": "ad_spend",
                    "amount": -1,
                    "balance_after": 0,
                    "currency": "USD",
                    "created_at": _now().date().isoformat(),
                }
            )
    large = services().invoices.assemble(org, period).reads
    g.figures["items read, 10 ledger entries"] = Figure(small, "items", target="constant")
    g.figures[f"items read, {big:,} more entries"] = Figure(large, "items", small, "items at 10", "ratio 1.0")
    g.figures[f"items read, {big:,} more entries"].met = large == small
    return g, small


# ---------------------------------------------------------------------- 6. invoice run
@dataclass
class RunStats:
    seconds: float
    invocations: int
    lambda_seconds: float
    tally: Tally
    status: str
    history_events: int = 0  # the parent execution's
    issued: tuple[int, int] = (0, 0)  # of a sample of its invoices: (issued, sampled)


RUN_SETUP_CLIENTS = 4


def _billed_org(kit: Any) -> dict[str, str]:
    """An org with something to bill, as production makes one: on Free, subscribed to Pro (the webhook's
    mirror), agency mode, a project, a top-up, one Meta bill: its invoice has ad spend and fee lines paid
    from the wallet, so it is collected, numbered, rendered and issued (not closed as empty)."""
    from shared.credits.periods import period_containing
    from shared.wallet.service import Bill
    from tests.integration.wallet_kit import agency_org, fund

    org_id, project_id, _ = agency_org(kit, "pro")
    fund(kit, org_id, 100_000, uuid.uuid4().hex[:12])
    bill_id = f"meta-{uuid.uuid4().hex[:12]}"
    today = kit.clock.now().date()
    kit.wallet.record_bill(Bill(org_id, "meta", bill_id, project_id, 12_345, "USD", today, None, "bench"))
    org = kit.org_repo.require_org(org_id)
    return {"org_id": org_id, "period_key": period_containing(org, kit.clock.now()).key}


def _billed_orgs(stack: Any, n: int) -> list[dict[str, str]]:
    """`n` billed orgs (their due (org, period) pairs), made by RUN_SETUP_CLIENTS clients at once."""
    from tests.integration.wallet_kit import wallet_kit

    now = _now()
    kits = [wallet_kit(stack, now) for _ in range(RUN_SETUP_CLIENTS)]
    made: list[list[dict[str, str]]] = [[] for _ in kits]

    def client(k: int) -> None:
        made[k] = [_billed_org(kits[k]) for _ in range(k, n, RUN_SETUP_CLIENTS)]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(RUN_SETUP_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    due = [pair for part in made for pair in part]
    if len(due) != n:
        raise RuntimeError(f"made {len(due)} of {n} billed orgs")
    return due


RUN_REAL_ORGS = 40  # made through the services; the rest of a run's orgs are their copies


def _swapped(value: Any, ids: dict[str, str]) -> Any:
    """`value` with every id in `ids` replaced by its new one, in strings, lists and maps alike."""
    if isinstance(value, str):
        for old, new in ids.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _swapped(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_swapped(v, ids) for v in value]
    return value


def _copied_orgs(stack: Any, n: int) -> list[dict[str, str]]:
    """`n` billed orgs: RUN_REAL_ORGS made through the services (`_billed_org`), the others exact copies of
    those orgs' items (their whole partition: the org, its member, project, wallet, ledger entries, spend
    aggregate, period index) under new org and user ids, 25 to a batch write. Making 10,000 orgs through
    the services takes longer than invoicing them; what the run reads is the same."""
    from shared.ids import new_id
    from tests.integration.wallet_kit import wallet_kit

    real = _billed_orgs(stack, min(n, RUN_REAL_ORGS))
    table = wallet_kit(stack, _now()).repo._table
    templates = []
    for due in real:
        got = table.query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": f"ORG#{due['org_id']}"})
        owner = next(str(i["user_id"]) for i in got["Items"] if i.get("type") == "member")
        templates.append((due, owner, got["Items"]))
    copies = []
    with table.batch_writer() as batch:
        for k in range(n - len(real)):
            due, owner, items = templates[k % len(templates)]
            ids = {due["org_id"]: new_id("org"), owner: f"bench_{uuid.uuid4().hex[:10]}"}
            for item in items:
                batch.put_item(Item=_swapped(item, ids))
            copies.append({"org_id": ids[due["org_id"]], "period_key": due["period_key"]})
    return real + copies


def _invoice_run(stack: Any, n: int) -> RunStats:
    due = _copied_orgs(stack, n)
    local = stack.local_lambda
    durations: list[float] = []
    original = local.invoke

    def timed(name: str, event: Any) -> tuple[bytes, str | None]:
        started = time.perf_counter()
        try:
            return original(name, event)  # type: ignore[no-any-return]
        finally:
            durations.append(time.perf_counter() - started)

    local.invoke = timed
    from tests.helpers import start_invoice_run

    try:
        with PROBE.measuring() as tally:
            started = time.perf_counter()
            arn = start_invoice_run(stack, due, f"bench-{n}-{uuid.uuid4().hex[:8]}")
            status = stack.wait_for_execution(arn, timeout=7200)["status"]
            seconds = time.perf_counter() - started
    finally:
        local.invoke = original
    pages = stack.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=arn)
    events = sum(len(page["events"]) for page in pages)
    return RunStats(seconds, len(durations), sum(durations), tally[0], str(status), events, _issued(stack, due))


def _issued(stack: Any, due: list[dict[str, str]], sample: int = 50) -> tuple[int, int]:
    """How many of a sample of the run's invoices were issued (numbered, rendered, announced)."""
    import random

    from shared.invoices.repository import InvoiceRepository
    from tests.integration.wallet_kit import wallet_kit

    repo = InvoiceRepository(wallet_kit(stack, _now()).repo._table)
    picked = random.sample(due, min(sample, len(due)))
    statuses = [getattr(repo.get(d["org_id"], d["period_key"]), "status", None) for d in picked]
    return statuses.count("issued"), len(picked)


def bench_invoice_run(stack: Any, quick: bool, budget: float) -> tuple[Group, RunStats]:
    g = Group("6 invoice run")
    small_n = 3 if quick else 100
    small = _invoice_run(stack, small_n)
    large_n = 6 if quick else int(os.environ.get("BENCH_INVOICE_ORGS", "10000"))
    if not quick and small.seconds * large_n / small_n * 1.2 > budget:
        fit = max(300, int(budget / 1.2 / small.seconds * small_n) // 100 * 100)
        g.notes.append(f"{large_n:,} orgs would take ~{small.seconds * large_n / small_n:.0f}s: ran {fit:,} instead")
        large_n = fit
    large = _invoice_run(stack, large_n)
    g.figures[f"parent history events, {small_n} orgs"] = Figure(small.history_events, "events", target="constant")
    f = Figure(large.history_events, "events", small.history_events, f"events at {small_n} orgs", "ratio 1.0")
    f.met = large.history_events == small.history_events
    g.figures[f"parent history events, {large_n} orgs"] = f
    g.figures[f"wall time, {small_n} orgs"] = Figure(small.seconds, "s", target=f"status {small.status}")
    k = large_n / small_n
    f = Figure(large.seconds, "s", k * small.seconds, f"s = {k:g} x t{small_n}", "ratio <= 1.0 (linear)")
    f.met = (f.ratio or 99) <= 1.0
    g.figures[f"wall time, {large_n} orgs"] = f
    issued, sampled = large.issued
    f = Figure(large.seconds / large_n * 1000, "ms/org", target=f"{large.status}, {issued} of {sampled} issued")
    f.met = large.status == "SUCCEEDED" and issued == sampled > 0
    g.figures[f"per org, {large_n} orgs"] = f
    g.notes.append(
        f"agency orgs on Pro with a Meta bill (ad spend and fee lines: collected, numbered, rendered, issued), "
        f"{RUN_REAL_ORGS} made through the services, the others copies of their items; "
        f"{issued} of {sampled} sampled invoices issued; {large.invocations} Lambda invocations for {large_n} "
        "orgs; moto runs the state machine, Lambdas run in-process one at a time"
    )
    return g, large if large.invocations else small


# ---------------------------------------------------------------------- 9. sweeper
SWEEP_CLIENTS = 8


def _sweep_orgs(stack: Any, kit: Any, orgs: int) -> list[tuple[str, str]]:
    """`orgs` agency orgs on Scale (Free, then the webhook's mirror), funded, with a project each."""
    from tests.integration.wallet_kit import agency_org, fund

    made = []
    for _ in range(orgs):
        org_id, project, _owner = agency_org(kit, "scale")
        fund(kit, org_id, 1_000_000, uuid.uuid4().hex[:12])
        made.append((org_id, project))
    return made


def _open_many(stack: Any, now: datetime, made: list[tuple[str, str]], per_org: int) -> float:
    """A reservation and a hold `per_org` times in every org, from SWEEP_CLIENTS clients at once (a kit
    each); returns the seconds it took."""
    from tests.integration.wallet_kit import wallet_kit

    kits = [wallet_kit(stack, now) for _ in range(SWEEP_CLIENTS)]
    work = [(org_id, project) for _ in range(per_org) for org_id, project in made]

    def client(n: int) -> None:
        kit = kits[n]
        for org_id, project in work[n::SWEEP_CLIENTS]:
            run = f"sweep-{uuid.uuid4().hex[:12]}"
            kit.services.credits.reserve(
                org_id=org_id,
                project_id=project,
                template_id="social-content",
                generation_type="image",
                quantity=1,
                workflow_run_id=run,
                actor="bench",
            )
            kit.wallet.hold(org_id=org_id, hold_id=f"h-{run}", project_id=project, platform="meta", amount_minor=100)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(SWEEP_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _drain(stack: Any, at: datetime, workers: int) -> tuple[int, float, str, Tally]:
    """The sweeper's two expiries on its own wiring (a table resource per worker thread), `workers` at a
    time, at clock `at`: (expired, seconds, what failed or was left, the DynamoDB calls it made)."""
    from shared import sweep as sweep_module
    from shared.dynamo import PerThreadTable
    from tests.integration.wallet_kit import wallet_kit

    sweeper = wallet_kit(stack, at, PerThreadTable(stack.env["TABLE_NAME"]))
    configured, sweep_module.SWEEP_WORKERS = sweep_module.SWEEP_WORKERS, workers
    try:
        with PROBE.measuring() as tally:
            started = time.perf_counter()
            reports = [sweeper.services.credits.expire_due(), sweeper.wallet.expire_holds()]
            seconds = time.perf_counter() - started
    finally:
        sweep_module.SWEEP_WORKERS = configured
    what = ", ".join(f"{r.name}: failed {r.failed}, left behind {r.left_behind}" for r in reports)
    return sum(r.done for r in reports), seconds, what, tally[0]


def bench_sweeper(stack: Any, quick: bool) -> Group:
    """Reservations and holds across many orgs (several clients), then the sweeper's drain of them all once
    expired: one batch with one worker (the baseline), the same again SWEEP_WORKERS at a time; and the
    DynamoDB calls per expiry (the sweeper ends an org's entries together: shared/sweep.py)."""
    from datetime import timedelta

    from shared.sweep import SWEEP_WORKERS
    from tests.integration.wallet_kit import wallet_kit

    g = Group("9 sweeper")
    first = _now() - timedelta(days=400)  # only this group's entries are due at its drains' clocks
    orgs, per_org = (4, 3) if quick else (50, 10)
    n = 2 * orgs * per_org
    made = _sweep_orgs(stack, wallet_kit(stack, first), orgs)
    open_s = _open_many(stack, first, made, per_org)
    one, one_s, _, _ = _drain(stack, first + timedelta(hours=25), 1)
    second = first + timedelta(days=2)
    _open_many(stack, second, made, per_org)
    done, drain_s, what, calls = _drain(stack, second + timedelta(hours=25), SWEEP_WORKERS)
    opened = f"reservations + holds/s, {orgs} orgs ({SWEEP_CLIENTS} clients)"
    g.figures[opened] = Figure(n / open_s, "items/s", target="-")
    g.figures[f"sweeper drain, {n} expired, 1 worker"] = Figure(one / one_s, "expired/s", target=">= 100/s")
    g.figures[f"sweeper drain, {n} expired, 1 worker"].met = one == n and one / one_s >= 100
    f = Figure(done / drain_s, "expired/s", one / one_s, "expired/s, 1 worker", ">= 100/s")
    f.met = done == n and done / drain_s >= 100
    g.figures[f"sweeper drain, {n} expired, {SWEEP_WORKERS} workers"] = f
    per = Figure(calls.calls / max(done, 1), "calls/expiry", target="<= 1 (one by one: ~4)")
    per.met = per.value <= 1
    g.figures[f"DynamoDB calls per expiry, {per_org} per org"] = per
    g.figures["transaction items per expiry"] = Figure(calls.transact_items / max(done, 1), "items", target="-")
    g.notes.append(
        f"drained {one} of {n} in {one_s:.1f}s (1 worker), {done} of {n} in {drain_s:.1f}s ({what}); "
        f"{calls.calls} DynamoDB calls, {calls.transactions} transactions"
    )
    return g


# ---------------------------------------------------------------------- 10. reconciliation
RECONCILE_READS_PER_S = 20.0  # the function's share of Stripe's read limit (template.yaml)


def _reconcile_orgs(stack: Any, n: int, bills: int) -> tuple[Any, list[str]]:
    """Agency orgs with a month of bills, each billed as the platform reported it (a clean month)."""
    from datetime import timedelta

    from shared.reconcile.models import SpendReport
    from shared.reconcile.wiring import build_reconciliation
    from shared.settings import ApiSettings
    from shared.stripe_gateway import StripeGateway
    from shared.wallet.service import Bill
    from tests.integration.wallet_kit import _settings, agency_org, wallet_kit

    kit = wallet_kit(stack, _now())
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    settings = ApiSettings.model_validate(_settings(stack.env))
    recon = build_reconciliation(settings, clock=kit.clock, table=kit.repo._table, gateway=gateway, reads_per_s=1e6)
    import stripe

    client = stripe.StripeClient("sk_test_local", base_addresses={"api": stack.env["STRIPE_API_BASE"]})
    orgs = []
    for _ in range(n):
        org_id, project, _ = agency_org(kit)
        _paid_top_up(kit, client, org_id)
        for i in range(bills):
            day = (_now() - timedelta(days=2 + i % 20)).date()
            bill = Bill(org_id, "meta", f"b-{uuid.uuid4().hex}", project, 1_000 + i, "USD", day, None, "bench")
            kit.wallet.record_bill(bill)
            report = SpendReport(org_id, "meta", project, day.isoformat(), 1_000 + i, "USD", bill.bill_id, "t")
            recon.desk.report_spend(report)  # one bill a day per project: the report equals the bill
        orgs.append(org_id)
    return recon, orgs


def _paid_top_up(kit: Any, client: Any, org_id: str) -> None:
    """A card payment in Stripe for the org's wallet (its own customer), credited as the webhook does."""
    customer = client.v1.customers.create(params={"name": org_id, "metadata": {"org_id": org_id}})
    kit.org_repo.link_stripe_customer(org_id, customer.id)
    topup_id = f"tu-{uuid.uuid4().hex[:12]}"
    intent = client.v1.payment_intents.create(
        params={
            "amount": 100_000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"org_id": org_id, "kind": "wallet_topup", "topup_id": topup_id},
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    kit.wallet.topup_succeeded(
        org_id=org_id,
        topup_id=topup_id,
        payment_intent_id=intent.id,
        charge_id=intent.latest_charge,
        amount_minor=100_000,
    )


def bench_reconcile(stack: Any, quick: bool) -> Group:
    """The daily reconciliation's cost per org (DynamoDB, Stripe reads, Lambda time) on a clean month, and
    a re-run of the same day (it must write nothing)."""
    from datetime import timedelta

    g = Group("10 reconciliation")
    n, bills = (3, 5) if quick else (40, 20)
    recon, orgs = _reconcile_orgs(stack, n, bills)
    day_from, day_to = (_now() - timedelta(days=30)).date(), (_now() + timedelta(days=1)).date()
    with PROBE.measuring() as tally:
        reads_before = recon.reconciler.stripe_reads
        started = time.perf_counter()
        found = sum(len(recon.reconciler.reconcile_org(o, day_from, day_to).findings) for o in orgs)
        per_org_s = (time.perf_counter() - started) / n
        stripe_reads = (recon.reconciler.stripe_reads - reads_before) / n
    with PROBE.measuring() as again:
        refound = sum(len(recon.reconciler.reconcile_org(o, day_from, day_to).findings) for o in orgs)
    wcu, rcu = _per_op(tally[0], n)
    cost = (wcu * PRICE_WRU + rcu * PRICE_RRU + per_org_s * 1.0 * PRICE_GB_S) * 10_000  # 1,024 MB function
    g.figures["per org, clean month"] = Figure(per_org_s * 1000, "ms", target=f"{bills} bills, {found} found")
    g.figures["DynamoDB per org"] = Figure(rcu, "RRU", target=f"{wcu:.1f} WRU")
    g.figures["Stripe reads per org (one top-up)"] = Figure(stripe_reads, "requests", target="-")
    g.figures["10,000 orgs a day"] = Figure(cost, "USD", target="DynamoDB + Lambda")
    stripe_hours = 10_000 * stripe_reads / RECONCILE_READS_PER_S / 3600
    g.figures["10,000 orgs, Stripe-bound"] = Figure(stripe_hours, "h", target=f"at {RECONCILE_READS_PER_S:.0f} reads/s")
    f = Figure(_billed_wcu(again[0]), "WRU", 0.0, "WRU", "0 (idempotent)")
    f.met = again[0].write_items == 0 and refound == 0
    g.figures["re-run of the same day: writes"] = f
    g.notes.append(
        "each org: a month of bills with matching platform reports and one card top-up in Stripe (its own "
        "customer); Stripe reads: the customer's intents of the range, then the intent, its refunds and disputes; "
        "the range's refund, dispute and payment-event lists once a run. The run resumes across 15-minute "
        "invocations"
    )
    return g


# ---------------------------------------------------------------------- 7. cost
def _billed_wcu(t: Tally) -> float:
    """AWS bills 2 WRU per transactional item (up to 1 KB); DynamoDB Local reports less."""
    return max(t.wcu, 2.0 * t.transact_items)


def _per_op(t: Tally, ops: int) -> tuple[float, float]:
    return _billed_wcu(t) / ops, t.rcu / ops


def bench_cost(stack: Any, quick: bool, run: RunStats, run_orgs: int, assembly_reads: int) -> Group:
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from shared.wallet.service import Bill
    from tests.integration.credit_kit import credit_kit
    from tests.integration.wallet_kit import agency_org, fund, wallet_kit
    from tests.paid import mirror_subscription

    g = Group("7 cost (USD)")
    n = 10 if quick else 200
    kit = wallet_kit(stack, _now())
    org_id, project_id, _ = agency_org(kit)
    fund(kit, org_id, 10**12, uuid.uuid4().hex)
    with PROBE.measuring() as tally:
        started = time.perf_counter()
        for _ in range(n):
            kit.wallet.record_bill(
                Bill(
                    org_id=org_id,
                    platform="meta",
                    bill_id=f"meta-{uuid.uuid4().hex}",
                    project_id=project_id,
                    amount_minor=100,
                    currency="USD",
                    billed_on=_now().date(),
                    hold_id=None,
                    actor="bench",
                )
            )
        debit_s = (time.perf_counter() - started) / n
    wcu, rcu = _per_op(tally[0], n)
    debit_items = tally[0].transact_items / n
    reported = tally[0].capacity_reported
    lambda_cost = debit_s * LAMBDA_GB * PRICE_GB_S + PRICE_LAMBDA_REQ
    debit = (wcu * PRICE_WRU + rcu * PRICE_RRU + lambda_cost) * 1e6
    debit_min = (3 * 2 * PRICE_WRU) * 1e6  # account + entry + marker in one transaction, each <= 1 KB
    g.figures["per 1M debits"] = Figure(debit, "USD", debit_min, "USD theoretical min", f"{wcu:.1f} WRU {rcu:.1f} RRU")

    ck = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], _now())
    owner = Caller(f"bench_{uuid.uuid4().hex[:8]}", None, frozenset())
    # A Pro agency org as production makes one: on Free, subscribed (the webhook's mirror), then agency mode
    org = ck.orgs.create_org(owner, name="Credits", billing_mode=BillingMode.BYO, currency="USD", plan_id="free")
    mirror_subscription(ck.mirror, org.org.org_id, "pro", start=ck.clock.now())
    ck.orgs.update_org(owner, org.org.org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    project = ck.orgs.create_project(owner, org.org.org_id, name="P")
    try:
        with PROBE.measuring() as tally:
            started = time.perf_counter()
            for _ in range(n):
                run_id = uuid.uuid4().hex
                ck.credits.reserve(
                    org_id=org.org.org_id,
                    project_id=project.project_id,
                    template_id="social-content",
                    generation_type="image",
                    quantity=1,
                    workflow_run_id=run_id,
                    actor="bench",
                )
                ck.credits.settle(
                    org_id=org.org.org_id, workflow_run_id=run_id, quantity=None, occurred_at=None, actor="bench"
                )
            consume_s = (time.perf_counter() - started) / n
        wcu, rcu = _per_op(tally[0], n)
        reported += tally[0].capacity_reported
        lambda_cost = consume_s * LAMBDA_GB * PRICE_GB_S + 2 * PRICE_LAMBDA_REQ
        consume = (wcu * PRICE_WRU + rcu * PRICE_RRU + lambda_cost) * 1e6
        # reserve: balance + reservation in one transaction; settle: balance + reservation + ledger entry
        consume_min = ((2 + 3) * 2 * PRICE_WRU) * 1e6
        g.figures["per 1M credit consumptions"] = Figure(
            consume, "USD", consume_min, "USD theoretical min", f"{wcu:.1f} WRU {rcu:.1f} RRU"
        )
    except Exception as exc:  # report it, do not abort the run
        g.notes.append(f"credit consumption not measured: {type(exc).__name__}: {exc}")
        g.figures["per 1M credit consumptions"] = Figure(float("nan"), "USD")

    transitions = 1 + 5 * run_orgs  # the Map state + five Task states per org (no retries or failures)
    t = run.tally
    invoices = (
        (
            _billed_wcu(t) * PRICE_WRU
            + t.rcu * PRICE_RRU
            + run.lambda_seconds * LAMBDA_GB * PRICE_GB_S
            + run.invocations * PRICE_LAMBDA_REQ
            + transitions * PRICE_TRANSITION
        )
        / run_orgs
        * 1000
    )
    # one Lambda doing the whole invoice: its assembly reads, one transactional write (invoice + marker),
    # one state transition and one request; Lambda time not counted
    invoice_min = (assembly_reads * PRICE_RRU + 2 * 2 * PRICE_WRU + PRICE_TRANSITION + PRICE_LAMBDA_REQ) * 1000
    g.figures["per 1,000 invoices"] = Figure(
        invoices,
        "USD",
        invoice_min,
        "USD theoretical min",
        f"{_billed_wcu(t) / run_orgs:.1f} WRU {t.rcu / run_orgs:.1f} RRU {transitions / run_orgs:.1f} transitions/org",
    )
    below = [k for k, f in g.figures.items() if f.baseline is not None and f.value < f.baseline]
    if below:
        g.notes.append(
            f"{', '.join(below)}: below the theoretical minimum, which real DynamoDB cannot do; DynamoDB Local "
            f"under-reports transactional capacity (AWS bills 2 WRU per transactional item per KB; debits wrote "
            f"{debit_items:.1f} transactional items each)"
        )
    g.notes.append(
        "WRU = the larger of DynamoDB Local's ConsumedCapacity and 2 per transactional item (<= 1 KB), "
        "as AWS bills transactions"
    )
    if reported == 0:
        g.notes.append("DynamoDB Local returned no ConsumedCapacity: capacity figures are zero (not estimated)")
    else:
        g.notes.append("capacity from DynamoDB Local's ConsumedCapacity (ReturnConsumedCapacity=TOTAL injected)")
    g.notes.append(
        "Lambda GB-s from in-process wall time at 512 MB; invoices: the billed agency orgs of group 6; S3 PUTs "
        "(PDF, CSV), EventBridge and SNS not priced; 'target' column shows capacity units per operation"
    )
    return g


# ---------------------------------------------------------------------- 8. sam build
SAM = ROOT / ".venv-sam" / "bin" / "sam"
BUILD_DIR = ROOT / ".local" / "bench-build"
BUILD_TARGET_S = 90.0
LAMBDA_UNZIPPED_MB = 250.0  # a function's code and all its layers, unzipped
MB = 2**20  # Lambda's "250 MB" is 262,144,000 bytes
OUR_CODE = {"functions", "shared"}


def _tree_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / MB


def _ours_only(artifact: Path) -> bool:
    """A function's artifact holds our two packages (bytecode next to the sources) and nothing else."""
    return {p.name for p in artifact.iterdir()} <= OUR_CODE


def _build_failed(g: Group, what: str, run: subprocess.CompletedProcess[str]) -> Group:
    tail = " | ".join((run.stdout + run.stderr).strip().splitlines()[-8:])
    g.notes.append(f"{what} failed ({run.returncode}): {tail}")
    g.figures[f"{what} wall time"] = Figure(float("nan"), "s", target=f"<= {BUILD_TARGET_S:g} s", met=False)
    return g


def bench_build(mode: str) -> Group:
    """`sam build` as a user runs it (samconfig.toml: in source), into .local/bench-build: wall time, the
    number of layers, and every artifact's unzipped size. `mode="make"` (quick): one function's Makefile
    target into a temporary directory, to keep this code working in seconds."""
    from tests.local.cfn import load_template

    g = Group("8 sam build")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    if mode == "make":
        template = load_template()
        function = next(k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function")
        with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
            started = time.perf_counter()
            run = subprocess.run(
                ["make", "--no-print-directory", f"build-{function}", f"ARTIFACTS_DIR={tmp}"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - started
            if run.returncode != 0:
                return _build_failed(g, f"make build-{function}", run)
            g.figures[f"make build-{function} wall time"] = Figure(wall, "s", target="- (quick: no sam build)")
            f = Figure(_tree_mb(Path(tmp)), "MB", target="our code only")
            f.met = _ours_only(Path(tmp))
            g.figures[f"{function} (unzipped)"] = f
        g.notes.append("quick: one function's make target only; `make bench` runs the whole `sam build` with the layer")
        return g

    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    started = time.perf_counter()
    run = subprocess.run(
        [str(SAM), "build", "--build-dir", str(BUILD_DIR)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if run.returncode != 0:
        return _build_failed(g, "sam build", run)
    built = load_template(BUILD_DIR / "template.yaml")["Resources"]
    layers = sorted(k for k, v in built.items() if v["Type"] == "AWS::Serverless::LayerVersion")
    functions = sorted(k for k, v in built.items() if v["Type"] == "AWS::Serverless::Function")
    f = Figure(wall, "s", target=f"<= {BUILD_TARGET_S:g} s, one dependencies layer")
    f.met = wall <= BUILD_TARGET_S and len(layers) == 1
    g.figures["sam build wall time"] = f
    layer_mb = 0.0
    for layer in layers:
        size = _tree_mb(BUILD_DIR / layer)
        layer_mb += size
        g.figures[f"{layer} (unzipped)"] = Figure(size, "MB", target="the locked runtime dependencies")
    sizes: dict[str, float] = {}
    for function in functions:
        sizes[function] = _tree_mb(BUILD_DIR / function)
        f = Figure(sizes[function], "MB", target="our code only")
        f.met = _ours_only(BUILD_DIR / function)
        g.figures[f"{function} (unzipped)"] = f
    largest = max(sizes.values(), default=0.0) + layer_mb
    f = Figure(largest, "MB", LAMBDA_UNZIPPED_MB, "MB Lambda limit", f"<= {LAMBDA_UNZIPPED_MB:g} MB")
    f.met = largest <= LAMBDA_UNZIPPED_MB
    g.figures["largest function + layers"] = f
    g.notes.append(
        f"`{SAM.relative_to(ROOT)} build` (samconfig.toml: build_in_source) into {BUILD_DIR.relative_to(ROOT)}; "
        f"{len(functions)} functions, {len(layers)} layer(s); sizes unzipped, MB = 2^20 bytes"
    )
    return g


# ---------------------------------------------------------------------- output
def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 0.01 else f"{x:.2f}"


def render(groups: list[Group]) -> str:
    rows = [("group", "figure", "value", "baseline", "ratio", "target", "met?")]
    for g in groups:
        for name, f in g.figures.items():
            met = "-" if f.met is None else ("yes" if f.met else "NO")
            rows.append(
                (
                    g.name,
                    name,
                    f"{_fmt(f.value)} {f.unit}",
                    f"{_fmt(f.baseline)} {f.baseline_unit}" if f.baseline is not None else "-",
                    _fmt(f.ratio),
                    f.target or "-",
                    met,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for g in groups:
        for note in g.notes:
            lines.append(f"[{g.name}] {note}")
    return "\n".join(lines)


def _json_num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def to_json(groups: list[Group], quick: bool, seconds: float) -> dict[str, Any]:
    return {
        "quick": quick,
        "generated_at": _now().isoformat(),
        "seconds": seconds,
        "groups": {
            g.name: {
                "seconds": g.seconds,
                "notes": g.notes,
                "figures": {
                    name: {
                        "value": _json_num(f.value),
                        "unit": f.unit,
                        "baseline": _json_num(f.baseline),
                        "baseline_unit": f.baseline_unit,
                        "ratio": _json_num(f.ratio),
                        "target": f.target,
                        "met": f.met,
                    }
                    for name, f in g.figures.items()
                },
            }
            for g in groups
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny scale, seconds (for tests)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--budget", type=float, default=2400.0, help="seconds allowed for the 10,000-org run")
    parser.add_argument(
        "--build",
        choices=["sam", "make", "none"],
        help="group 8: the real `sam build` (default), one function's make target (default with --quick), or none",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated group numbers to run (default: all; 7 also runs 5 and 6)"
    )
    args = parser.parse_args(argv)
    build_mode = args.build or ("make" if args.quick else "sam")
    only = {int(n) for n in args.only.split(",") if n.strip()}
    if 7 in only:
        only |= {5, 6}  # the cost of an invoice comes from the assembly's reads and the run's tally
    if only and 8 not in only:
        build_mode = "none"

    from tests.local.stack import start_local_stack

    started = time.perf_counter()
    build_group: Group | None = None
    if build_mode != "none":  # first, before the local stack's JVM competes for the cores
        build_group = bench_build(build_mode)
        build_group.seconds = time.perf_counter() - started
        print(f"  {build_group.name}: {build_group.seconds:.1f}s", file=sys.stderr, flush=True)
    PROBE.install()
    stack = start_local_stack()
    groups: list[Group] = []
    try:
        stack.apply_env()
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the handlers' INFO logs would bury the table
        stack.serve_api()

        def timed(fn: Callable[[], Group], number: int) -> Group | None:
            if only and number not in only:
                return None
            t = time.perf_counter()
            g = fn()
            g.seconds = time.perf_counter() - t
            print(f"  {g.name}: {g.seconds:.1f}s", file=sys.stderr, flush=True)
            groups.append(g)
            return g

        quick = bool(args.quick)
        timed(lambda: bench_wallet(stack, quick), 1)
        timed(lambda: bench_handlers(stack, quick), 2)
        timed(lambda: bench_imports(stack, quick), 3)
        timed(lambda: bench_ingest(stack, quick), 4)
        reads: list[int] = []

        def assembly() -> Group:
            g, small = bench_assembly(stack, quick)
            reads.append(small)
            return g

        timed(assembly, 5)
        runs: list[tuple[RunStats, int]] = []

        def invoice_run() -> Group:
            g, run = bench_invoice_run(stack, quick, args.budget)
            orgs = int(next(k for k in g.figures if k.startswith("per org")).split()[2].replace(",", ""))
            runs.append((run, orgs))
            return g

        timed(invoice_run, 6)
        timed(lambda: bench_cost(stack, quick, runs[0][0], runs[0][1], reads[0]), 7)
        timed(lambda: bench_sweeper(stack, quick), 9)
        timed(lambda: bench_reconcile(stack, quick), 10)
    finally:
        stack.stop()
    if build_group is not None:
        groups.append(build_group)
    seconds = time.perf_counter() - started
    print(render(groups))
    print(f"total {seconds:.0f}s{' (quick)' if args.quick else ''}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(to_json(groups, bool(args.quick), seconds), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
