"""The rules every scenario must keep, each a named function of the org's stored items (read fault free)
and the simulator's own record (`Life`): it returns what breaks the rule, [] when it holds. Adding one:
one `@invariant` function. `AFTER_EACH` ones run after every step too; the others at the end."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any

from shared.catalog import plan_catalog
from shared.credits.account import CreditAccount
from shared.dynamo import from_item, plain
from shared.keys import ORG_SK
from shared.orgs.models import Org
from shared.orgs.service import SETTLE_WINDOW
from shared.reconcile.models import Discrepancy
from shared.wallet.account import STATEMENT_FIELD, EntryKind
from tests.sim.actions import Life, utc

Items = list[dict[str, Any]]
INVARIANTS: dict[str, Callable[[Life, Items], list[str]]] = {}
AFTER_EACH: set[str] = set()


def invariant(
    name: str, *, each_step: bool = False
) -> Callable[[Callable[[Life, Items], list[str]]], Callable[[Life, Items], list[str]]]:
    def register(fn: Callable[[Life, Items], list[str]]) -> Callable[[Life, Items], list[str]]:
        INVARIANTS[name] = fn
        if each_step:
            AFTER_EACH.add(name)
        return fn

    return register


def org_items(life: Life) -> Items:
    from boto3.dynamodb.conditions import Key

    items: Items = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(f"ORG#{life.org_id}"), "ConsistentRead": True}
    while True:
        page = life.kit.table.query(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _one(items: Items, sk: str) -> dict[str, Any] | None:
    return next((i for i in items if i["SK"] == sk), None)


def _lines(items: Items, prefix: str) -> list[dict[str, Any]]:
    entries = sorted((i for i in items if i["SK"].startswith(prefix)), key=lambda i: i["SK"])
    return [{**{k: v for k, v in e.items() if k != "lines"}, **line} for e in entries for line in e["lines"]]


def _running(lines: list[dict[str, Any]], start: int = 0) -> list[str]:
    total, broken = start, []
    for line in lines:
        total += int(line["amount"])
        if int(line["balance_after"]) != total:
            broken.append(f"{line['SK']} {line['kind']}: balance_after {line['balance_after']} != running sum {total}")
    return broken


@invariant("wallet_ledger_sums", each_step=True)
def wallet_ledger_sums(life: Life, items: Items) -> list[str]:
    """sum(entries) == balance, and each line's balance_after is the running sum."""
    wallet, lines = _one(items, "WALLET"), _lines(items, "WLEDGER#")
    broken = _running(lines)
    total = sum(int(line["amount"]) for line in lines)
    if wallet is not None and int(wallet["balance"]) != total:
        broken.append(f"wallet balance {wallet['balance']} != sum of its entries {total}")
    return broken


@invariant("credit_ledger_sums", each_step=True)
def credit_ledger_sums(life: Life, items: Items) -> list[str]:
    """Within a period each credit line's balance_after (available after it) is the one before plus its
    amount, and the last is the account's available (included left + packs - reserved)."""
    lines, broken = _lines(items, "CLEDGER#"), []
    for before, line in pairwise(lines):
        same_period = line.get("period_key") == before.get("period_key")
        if same_period and int(before["balance_after"]) + int(line["amount"]) != int(line["balance_after"]):
            broken.append(
                f"{line['SK']} {line['kind']}: {before['balance_after']} + {line['amount']} != {line['balance_after']}"
            )
    account = _one(items, "CREDITS")
    if account is not None and lines and lines[-1].get("period_key") == account.get("period_key"):
        available = from_item(CreditAccount, plain(account)).available
        if int(lines[-1]["balance_after"]) != available:
            broken.append(f"last line's balance_after {lines[-1]['balance_after']} != available {available}")
    return broken


@invariant("cause_applied_once", each_step=True)
def cause_applied_once(life: Life, items: Items) -> list[str]:
    """No idempotency key (a request, a bill, a webhook's cause) moved money twice."""
    broken = []
    for prefix in ("WLEDGER#", "CLEDGER#"):
        entries = [i for i in items if i["SK"].startswith(prefix) and i.get("idempotency_key")]
        counts = Counter(str(e["idempotency_key"]) for e in entries)
        broken += [f"{prefix} cause {key} applied {n} times" for key, n in counts.items() if n > 1]
    return broken


@invariant("holds_and_available", each_step=True)
def holds_and_available(life: Life, items: Items) -> list[str]:
    """held >= 0 and equals the pending holds; available == balance - held - floor."""
    wallet = _one(items, "WALLET")
    if wallet is None:
        return []
    balance, held, floor = int(wallet["balance"]), int(wallet.get("held", 0)), int(wallet.get("floor", 0))
    pending = sum(int(i["amount_minor"]) for i in items if i["SK"].startswith("HOLD#") and i.get("status") == "pending")
    broken = []
    if held < 0 or held != pending:
        broken.append(f"held {held} (pending holds {pending})")
    if "available" in wallet and int(wallet["available"]) != balance - held - floor:
        broken.append(f"available {wallet['available']} != {balance} - {held} - {floor}")
    return broken


_MONEY_IN = {"topup": 1, "reversal": 1, "refund": 1}


@invariant("wallet_money_matches_stripe")
def wallet_money_matches_stripe(life: Life, items: Items) -> list[str]:
    """Conservation: the wallet's top-ups, net of what was taken back (support refunds, disputes, failed
    ACH), equal Stripe's succeeded top-up payments net of their refunds and disputes."""
    if not life.customer:
        return []
    ledger = sum(int(line["amount"]) for line in _lines(items, "WLEDGER#") if line["kind"] in _MONEY_IN)
    stripe_net = 0
    store = life.world.stripe.store
    with store.lock:
        charges = [c for c in store.all("charge") if c.get("customer") == life.customer]
        disputes = {d["charge"]: d for d in store.all("dispute")}
        for charge in charges:
            if charge["status"] != "succeeded" or not (charge.get("metadata") or {}).get("topup_id"):
                continue
            stripe_net += int(charge["amount"]) - int(charge.get("amount_refunded", 0))
            dispute = disputes.get(charge["id"])
            if dispute is not None and dispute.get("status") != "won":
                stripe_net -= int(dispute["amount"])
    if ledger != stripe_net:
        return [f"wallet money in {ledger} != Stripe's net top-ups {stripe_net}"]
    return []


@invariant("movements_in_one_statement", each_step=True)
def movements_in_one_statement(life: Life, items: Items) -> list[str]:
    """Every wallet movement is counted in exactly one period's statement (what that period's invoice
    shows): per statement figure, the statements' sum equals the ledger's lines of its kinds."""
    ledger: dict[str, int] = defaultdict(int)
    for line in _lines(items, "WLEDGER#"):
        ledger[STATEMENT_FIELD[EntryKind(line["kind"])]] += int(line["amount"])
    counted: dict[str, int] = defaultdict(int)
    for statement in (i for i in items if i["SK"].startswith("WSTMT#")):
        for name in set(STATEMENT_FIELD.values()):
            counted[name] += int(statement.get(name, 0))
    return [
        f"{name}: ledger {ledger[name]}, statements {counted[name]}"
        for name in sorted(set(ledger) | set(counted))
        if ledger[name] != counted[name]
    ]


@invariant("no_invoice_before_period_end", each_step=True)
def no_invoice_before_period_end(life: Life, items: Items) -> list[str]:
    broken = []
    for invoice in (i for i in items if i["SK"].startswith("INVOICE#") and "period_end" in i):
        if utc(invoice["created_at"]) < utc(invoice["period_end"]) + SETTLE_WINDOW:
            broken.append(
                f"invoice {invoice['period_key']} made {invoice['created_at']}, its period ends {invoice['period_end']}"
            )
    return broken


@invariant("outbox_once_per_id")
def outbox_once_per_id(life: Life, items: Items) -> list[str]:
    """Every state change announced exactly once: each issued invoice has one Invoice.Issued event and one
    notice in the outbox (none for an invoice not issued), whatever retries and re-runs happened."""
    issued = {str(i["invoice_id"]) for i in items if i["SK"].startswith("INVOICE#") and i.get("status") == "issued"}
    told: Counter[tuple[str, str]] = Counter()
    for item in (i for i in items if i["SK"].startswith("OUTBOX#")):
        body = json.loads(item["body"])
        if "Invoice.Issued" in (body.get("detail_type"), body.get("kind")):
            detail = body.get("detail") or body.get("details") or {}
            told[(str(item["kind"]), str(detail.get("invoice_id")))] += 1
    expected = Counter({(kind, invoice): 1 for invoice in issued for kind in ("event", "notice")})
    return [
        f"{kind} Invoice.Issued for {invoice}: {told[(kind, invoice)]} times"
        for kind, invoice in sorted(told.keys() | expected.keys())
        if told[(kind, invoice)] != expected[(kind, invoice)]
    ]


@invariant("entitlement_follows_subscription", each_step=True)
def entitlement_follows_subscription(life: Life, items: Items) -> list[str]:
    """Paid limits only with a live (or in-grace) paid subscription, and always with an active one."""
    if not life.org_id:
        return []
    stored = _one(items, ORG_SK)  # the org's item, as the repository reads it (same read: org_items)
    if stored is None:
        return []
    org = Org.model_validate(plain(stored))
    paid = life.services.orgs.entitlement_of(org).paid_features
    sub = org.subscription
    status = sub.status.value if sub else "none"
    grace = plan_catalog().dunning.grace_days
    since = life.past_due_since
    live = life.plan != "free" and (
        life.sub_status in ("active", "trialing")
        or (life.sub_status == "past_due" and since is not None and life.now < since + timedelta(days=grace))
    )
    if paid and not live:
        return [f"paid features with the subscription {status} (the simulator set {life.sub_status})"]
    if life.plan != "free" and life.sub_status == "active" and not paid:
        return [f"no paid features with an active {life.plan} subscription"]
    return []


@invariant("reconciliation_clean")
def reconciliation_clean(life: Life, items: Items) -> list[str]:
    """Zero open discrepancies after the last reconciliation (the scenarios inject none that has no fix)."""
    open_: list[Discrepancy] = [d for d in life.reconciled if d.status == "open"]
    return [f"{d.check}: {d.summary}" if hasattr(d, "summary") else repr(d)[:300] for d in open_]


def invoice_numbers_gapless(numbers: list[str]) -> list[str]:
    """Across the run (one table): each series' numbers are 1..N with no gap and no repeat."""
    series: dict[str, list[int]] = defaultdict(list)
    for number in numbers:
        found = re.match(r"^(.*?)(\d+)$", number)
        if found:
            series[found.group(1)].append(int(found.group(2)))
    broken = []
    for prefix, seen in series.items():
        if sorted(seen) != list(range(1, len(seen) + 1)):
            missing = sorted(set(range(1, max(seen) + 1)) - set(seen))[:5]
            repeats = [n for n, c in Counter(seen).items() if c > 1][:5]
            broken.append(f"series {prefix!r}: missing {missing}, repeated {repeats}")
    return broken


def check(life: Life, names: set[str] | None = None, items: Items | None = None) -> list[tuple[str, str]]:
    """The rules named (all: None) over the org's items (read now unless the caller just read them)."""
    if items is None:
        items = org_items(life) if life.org_id else []
    found = []
    for name, rule in INVARIANTS.items():
        if names is None or name in names:
            found += [(name, problem) for problem in rule(life, items)]
    return found
