"""The rules every scenario must keep, each a named function of the org's stored items (read fault free)
and the simulator's own record (`Life`): it returns what breaks the rule, [] when it holds. Adding one:
one `@invariant` function. `AFTER_EACH` ones run after every step too; the others at the end."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from shared.budgets.models import OPEN
from shared.budgets.repository import _budget as stored_budget
from shared.budgets.repository import _usage as stored_usage
from shared.budgets.rules import BUDGET_REACHED, BUDGET_WARNING, WARN_AT_PCT, line_of
from shared.catalog import plan_catalog
from shared.credits.account import CreditAccount
from shared.dynamo import from_item, plain
from shared.keys import ORG_SK
from shared.orgs.models import Org
from shared.orgs.service import SETTLE_WINDOW
from shared.outbox import Event, Notice, message_id
from shared.reconcile.models import Discrepancy
from shared.wallet.account import STATEMENT_FIELD, EntryKind
from shared.wallet.runway_watch import RUNWAY_ALERT
from tests.sim.actions import Life, period_key_at, utc

ALLOWANCE_WARNING = "Usage.AllowanceWarning"

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
    """held >= 0 and equals what the pending holds still reserve (their remainders, once bills drew on
    them); available == balance - held - floor."""
    wallet = _one(items, "WALLET")
    if wallet is None:
        return []
    balance, held, floor = int(wallet["balance"]), int(wallet.get("held", 0)), int(wallet.get("floor", 0))
    pending = sum(
        int(i["amount_minor"] if i.get("remaining_minor") is None else i["remaining_minor"])
        for i in items
        if i["SK"].startswith("HOLD#") and i.get("status") == "pending"
    )
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
    store = life.kit.stripe.store
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


_BILL_FIGURE = {"ad_spend": "spend", "spend_correction": "spend", "platform_fee": "fees", "fee_correction": "fees"}


@invariant("spend_is_what_was_billed")
def spend_is_what_was_billed(life: Life, items: Items) -> list[str]:
    """Conservation of money out: each platform bill recorded (its cause's item) took from the wallet, in one
    entry, exactly the amount the platform billed as ad spend and the fee its cause recorded as platform fee;
    no bill entry without its recorded cause, none for a bill the simulator never sent."""
    causes = {str(i["SK"]).removeprefix("IDEM#"): i for i in items if i["SK"].startswith("IDEM#bill:")}
    entries = {
        str(i["idempotency_key"]): i
        for i in items
        if i["SK"].startswith("WLEDGER#") and str(i.get("idempotency_key", "")).startswith("bill:")
    }
    broken = [f"{key}: a ledger entry, no recorded bill" for key in sorted(entries.keys() - causes.keys())]
    for key, cause in sorted(causes.items()):
        sent = life.bills.get(key)
        entry = entries.get(key)
        if sent is None or entry is None:
            broken.append(f"{key}: recorded, " + ("never sent" if sent is None else "no ledger entry"))
            continue
        took: dict[str, int] = defaultdict(int)
        for line in entry["lines"]:  # a platform credit (a negative bill) gives back as corrections
            took[_BILL_FIGURE.get(str(line["kind"]), str(line["kind"]))] += int(line["amount"])
        wanted = {"spend": -sent[1], "fees": -int(cause.get("fee_minor", 0))}
        if {k: v for k, v in took.items() if v} != {k: v for k, v in wanted.items() if v}:
            broken.append(f"{key}: billed {sent[1]} (fee {cause.get('fee_minor', 0)}), the wallet took {dict(took)}")
    return broken


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


_FIGURES = sorted(set(STATEMENT_FIELD.values()))


@invariant("invoice_shows_its_statement", each_step=True)
def invoice_shows_its_statement(life: Life, items: Items) -> list[str]:
    """Each issued invoice shows its period's wallet statement as the books have it (every figure), its
    closing is its opening plus them, and its opening is the previous issued invoice's closing plus what the
    periods between them moved: the movements a statement counts are on that invoice, none twice, none lost."""
    statements = {str(i["SK"]).removeprefix("WSTMT#"): i for i in items if i["SK"].startswith("WSTMT#")}
    broken, previous = [], None
    for invoice in sorted(_issued(items), key=lambda i: str(i["period_key"])):
        key, shown = str(invoice["period_key"]), invoice.get("wallet_statement")
        if shown is None:
            if any(int(statements.get(key, {}).get(f, 0)) for f in _FIGURES):
                broken.append(f"invoice {key}: no wallet statement, its period's moved {statements[key]}")
            continue
        moved = {f: int(shown.get(f"{f}_minor", 0)) for f in _FIGURES}
        broken += [
            f"invoice {key}: {f} {moved[f]}, its statement {int(statements.get(key, {}).get(f, 0))}"
            for f in _FIGURES
            if moved[f] != int(statements.get(key, {}).get(f, 0))
        ]
        opening, closing = int(shown["opening_minor"]), int(shown["closing_minor"])
        if closing != opening + sum(moved.values()):
            broken.append(f"invoice {key}: closing {closing} != opening {opening} + movements {sum(moved.values())}")
        if previous is not None:
            between = sum(int(s.get(f, 0)) for k, s in statements.items() if previous[0] < k < key for f in _FIGURES)
            if opening != previous[1] + between:
                broken.append(f"invoice {key}: opening {opening} != the last one's closing {previous[1]} + {between}")
        previous = (key, closing)
    return broken


@invariant("one_period_per_stretch", each_step=True)
def one_period_per_stretch(life: Life, items: Items) -> list[str]:
    """The periods the invoice run will invoice (still on its index) and those invoiced never overlap: one
    invoice per stretch of time, whatever crashed while a subscription re-anchored the org's periods."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for item in items:
        if item["SK"].startswith("PERIODIDX#") and "GSI2PK" in item:
            spans[str(item["period_key"])] = (utc(str(item["period_key"])), utc(str(item["period_end"])))
    for invoice in (i for i in items if i["SK"].startswith("INVOICE#") and "period_end" in i):
        start = str(invoice.get("period_start") or invoice["period_key"])
        spans[str(invoice["period_key"])] = (utc(start), utc(str(invoice["period_end"])))
    ordered = sorted(spans.items(), key=lambda kv: kv[1])
    return [
        f"period {a} (to {a_end:%Y-%m-%d %H:%M:%S}) overlaps period {b} (from {b_start:%Y-%m-%d %H:%M:%S})"
        for (a, (_, a_end)), (b, (b_start, _)) in pairwise(ordered)
        if b_start < a_end
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
    """Paid limits only with a live (or in-grace) paid subscription in Stripe, and always with an active one,
    once Stripe's webhooks about it were delivered (none is still on its way)."""
    if not life.org_id or life.late_events:
        return []
    stored = _one(items, ORG_SK)  # the org's item, as the repository reads it (same read: org_items)
    if stored is None:
        return []
    org = Org.model_validate(plain(stored))
    paid = life.services.orgs.entitlement_of(org).paid_features
    sub = org.subscription
    status = sub.status.value if sub else "none"
    grace = plan_catalog().dunning.grace_days
    seen = [at for at in (life.past_due_since, sub.dunning_since if sub else None) if at is not None]
    live = life.plan != "free" and (
        life.sub_status in ("active", "trialing")
        or (life.sub_status == "past_due" and bool(seen) and life.now < max(seen) + timedelta(days=grace))
    )
    if paid and not live:
        return [f"paid features with the subscription {status} (Stripe's is {life.sub_status})"]
    if life.plan != "free" and life.sub_status == "active" and not paid:
        return [f"no paid features with an active {life.plan} subscription (mirrored {status})"]
    return []


@invariant("reconciliation_clean")
def reconciliation_clean(life: Life, items: Items) -> list[str]:
    """Zero open discrepancies after the last reconciliation (the scenarios inject none that has no fix)."""
    open_: list[Discrepancy] = [d for d in life.reconciled if d.status == "open"]
    return [f"{d.check}: {d.summary}" if hasattr(d, "summary") else repr(d)[:300] for d in open_]


def _stripe_objects(life: Life, kind: str) -> list[dict[str, Any]]:
    """The customer's objects of a kind in the emulator, as Stripe keeps them (copies, read under its lock)."""
    store = life.kit.stripe.store
    with store.lock:
        return [copy.deepcopy(o) for o in store.all(kind) if o.get("customer") == life.customer]


def _closes(stripe_invoice: dict[str, Any], start: datetime, end: datetime) -> bool:
    """Whether a Stripe invoice (finalized) is of the period [start, end): a renewal is of the period it
    closes (its `period_end` is that period's end), any other of when it was made."""
    if stripe_invoice["status"] in ("draft", "void"):
        return False
    if stripe_invoice.get("billing_reason") == "subscription_cycle":
        return int(stripe_invoice["period_end"]) == int(end.timestamp())
    return int(start.timestamp()) <= int(stripe_invoice["created"]) < int(end.timestamp())


def _issued(items: Items) -> list[dict[str, Any]]:
    return [i for i in items if i["SK"].startswith("INVOICE#") and i.get("status") == "issued"]


@invariant("stripe_total_matches")
def stripe_total_matches(life: Life, items: Items) -> list[str]:
    """Each issued invoice's Stripe-charged section (its total, and its lines: all of them, past a page of
    Stripe's lines) equals Stripe's own invoices of its period for the customer - the renewal closing it,
    proration and other invoices made in it - read from Stripe (totals before the customer's credit
    balance, which only changes what is due)."""
    if not life.customer:
        return []
    stripe_invoices, broken = _stripe_objects(life, "invoice"), []
    for invoice in _issued(items):
        start, end = utc(invoice["period_start"]), utc(invoice["period_end"])
        theirs = [si for si in stripe_invoices if _closes(si, start, end)]
        stripe_total = sum(int(si["total"]) for si in theirs)
        stripe_lines = sum(len(si["lines"]["data"]) if "data" in si.get("lines", {}) else 0 for si in theirs)
        charged = int((invoice.get("totals") or {}).get("charged_through_stripe_minor", 0))
        lines = [line for line in invoice.get("lines", []) if line.get("paid_via") == "stripe"]
        shown = sum(int(line["amount_minor"]) for line in lines)
        ids = sorted(str(i) for i in invoice.get("stripe_invoice_ids", []))
        if charged != stripe_total or shown != stripe_total or ids != sorted(si["id"] for si in theirs):
            broken.append(
                f"invoice {invoice['period_key']}: charged through Stripe {charged}, its Stripe lines {shown} "
                f"({len(lines)} of them), Stripe's invoices of the period {stripe_total} ({stripe_lines} lines; "
                f"cited {ids}, Stripe's {sorted(si['id'] for si in theirs)})"
            )
    return broken


def _settled(items: Items) -> tuple[dict[str, int], dict[str, datetime]]:
    """Credits consumed per usage period (settled reservations, late ones included) and the last settle."""
    consumed: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    for resv in (i for i in items if i["SK"].startswith("RESV#") and i.get("status") == "settled"):
        key = str(resv["usage_period_key"])
        consumed[key] += int(resv.get("settled_credits", 0))
        last[key] = max(last.get(key, utc(resv["settled_at"])), utc(resv["settled_at"]))
    return consumed, last


def _overage_items(life: Life) -> dict[tuple[str, str], int]:
    """Stripe's invoice items of our credit overage (on an invoice or pending for the next), by (period, metric)."""
    charged: dict[tuple[str, str], int] = defaultdict(int)
    for item in _stripe_objects(life, "invoiceitem"):
        metadata = item.get("metadata") or {}
        if metadata.get("metric") in ("credits", "credits_late") and not item.get("deleted"):
            charged[(str(metadata["period_key"]), str(metadata["metric"]))] += int(metadata["quantity"])
    return charged


@invariant("credits_on_one_invoice")
def credits_on_one_invoice(life: Life, items: Items) -> list[str]:
    """Credit-side conservation: every consumed credit (a settled reservation, late ones included) is counted
    once in its usage period; appears in that period's invoice's credit usage, or - settled after that
    invoice was made - is late, and late credits are charged on the next renewal (but a Free period's: Free
    sells no overage): none on two invoices, none charged twice, none lost."""
    consumed, last = _settled(items)
    periods = {str(i["SK"])[len("PERIOD#") :]: i for i in items if re.fullmatch(r"PERIOD#[^#]+", str(i["SK"]))}
    broken = [
        f"{key}: {n} credits consumed, {int(periods.get(key, {}).get('credits_used', 0))} counted"
        for key, n in sorted(consumed.items())
        if n != int(periods.get(key, {}).get("credits_used", 0))
    ]
    broken += _credits_shown(items, consumed, periods)
    broken += _credits_charged(life, items, consumed, periods, last)
    return broken


def _credits_shown(items: Items, consumed: dict[str, int], periods: dict[str, dict[str, Any]]) -> list[str]:
    broken, cited = [], Counter[str]()
    for invoice in (i for i in items if i["SK"].startswith("INVOICE#") and i.get("status") in ("issued", "empty")):
        key = str(invoice["period_key"])
        cited.update(str(i) for i in invoice.get("stripe_invoice_ids", []) if invoice["status"] == "issued")
        shown = sum(int(line.get("quantity") or 0) for line in invoice.get("lines", []) if line["section"] == "credits")
        late = int(periods.get(key, {}).get("credits_late", 0))
        if shown > consumed.get(key, 0) or consumed.get(key, 0) - shown > late:
            broken.append(f"{key}: {consumed.get(key, 0)} credits consumed ({late} late), its invoice shows {shown}")
    broken += [f"Stripe invoice {i} on {n} issued invoices" for i, n in sorted(cited.items()) if n > 1]
    return broken


def _credits_charged(
    life: Life, items: Items, consumed: dict[str, int], periods: dict[str, dict[str, Any]], last: dict[str, datetime]
) -> list[str]:
    if not life.customer:
        return []
    charged, broken = _overage_items(life), []
    renewals = {  # the renewals made (finalized), by the start of the period each closes
        int(i["period_start"]): int(i["created"])
        for i in _stripe_objects(life, "invoice")
        if i.get("billing_reason") == "subscription_cycle" and i["status"] != "draft"
    }
    for key, counters in sorted(periods.items()):
        overage, late = int(counters.get("credits_overage", 0)), int(counters.get("credits_late", 0))
        if charged[(key, "credits")] > overage or charged[(key, "credits_late")] > late:
            shown = f"{charged[(key, 'credits')]} + {charged[(key, 'credits_late')]} late"
            broken.append(f"{key}: charged {shown} credits in Stripe, of {overage} + {late} late")
        end = utc(str(counters.get("period_end", ""))) if counters.get("period_end") else None
        renewal = renewals.get(int(end.timestamp())) if end is not None else None  # closing the next period
        unbilled = late - int(counters.get("billed_credits_late", 0))
        free = life.sub_start is None or utc(key) < life.sub_start  # the Free time before Checkout: never owed
        if unbilled and not free and renewal is not None and key in last and renewal > last[key].timestamp():
            broken.append(f"{key}: {unbilled} late credits never billed, though the next period renewed")
    return broken


# ---------------------------------------------------------------------------------------------- the outbox, agency
def _published(item: dict[str, Any]) -> dict[str, Any]:
    """What consumers must receive for an outbox item (tests/sim/outbox.py records it the same way)."""
    body, mid = json.loads(item["body"]), str(item.get("message_id", ""))
    if item["kind"] == "event":
        return {"detail_type": body["detail_type"], "detail": {**body["detail"], "event_id": mid}}
    fields = {"org_id": str(item.get("org_id")), "kind": body["kind"], "message": body["message"]}
    return {"subject": body["subject"][:100], **fields, "details": body["details"], "event_id": mid}


@invariant("events_delivered_once")
def events_delivered_once(life: Life, items: Items) -> list[str]:
    """Every committed event and notice reaches its consumers, with its payload, and once per event id as
    they see it: at least once by design (README, *The outbox*), a second delivery of an id only where the
    publisher could not know the first went (an answer lost, a crash before the mark); nothing delivered
    that no committed change wrote; every item marked sent was delivered."""
    stream = life.stream
    if stream is None:
        return []
    told = stream.consumers
    outbox = {
        str(i["SK"]).removeprefix("OUTBOX#"): i
        for i in items
        if i["SK"].startswith("OUTBOX#") and i.get("kind") in ("event", "notice")
    }
    broken = [f"the publisher failed: {error}" for error in told.errors]
    for mid, item in sorted(outbox.items()):
        name = json.loads(item["body"]).get("detail_type") or json.loads(item["body"]).get("kind")
        times, unknown = told.deliveries[mid], told.unknown[mid]
        if times == 0:
            broken.append(
                f"{item['kind']} {name} {mid} never delivered" + (" (marked sent)" if "sent_at" in item else "")
            )
        elif times > 1 + unknown:
            broken.append(f"{item['kind']} {name} {mid} delivered {times} times ({unknown} sends of unknown outcome)")
        elif told.payloads[mid] != _published(item):
            broken.append(
                f"{item['kind']} {name} {mid} delivered as {told.payloads[mid]}, written as {_published(item)}"
            )
        elif "sent_at" not in item:
            broken.append(f"{item['kind']} {name} {mid} delivered, never marked sent")
    broken += [f"{mid} delivered: no change wrote it" for mid in sorted(told.seen() - outbox.keys())]
    return broken + [f"{mid} delivered again with another payload" for mid in told.changed]


def _open(hold: dict[str, Any]) -> int:
    """What a hold still holds: its remainder while pending (its amount, for a hold from before remainders)."""
    if hold.get("status") != "pending":
        return 0
    return int(hold["amount_minor"] if hold.get("remaining_minor") is None else hold["remaining_minor"])


@invariant("budget_never_exceeded")
def budget_never_exceeded(life: Life, items: Items) -> list[str]:
    """Holds and reservations granted for a project never take its committed (this period's spent + what is
    held now, or credits used + reserved now) past its limit (bills may: they are always recorded); each
    project's open counter (BUDGETH#) is what its open holds and reservations still hold, whatever period
    they were made in; and each period's committed = spent (+ what holds counted there before still hold),
    credits committed = used (+ reserved there)."""
    broken = [
        f"{what}: {name} committed {c} > limit {limit} once granted"
        for what, name, c, limit in life.grants
        if c > limit
    ]
    return broken + _open_counted(items) + _periods_committed(items)


def _holding(items: Items) -> dict[tuple[str, str, str], int]:
    """What open holds and reservations hold, by (budget_period or OPEN, project, counter attribute)."""
    held: dict[tuple[str, str, str], int] = defaultdict(int)
    for hold in (i for i in items if i["SK"].startswith("HOLD#") and i.get("budget_period")):
        place = (str(hold["budget_period"]), str(hold["project_id"]))
        held[(*place, "held")] += _open(hold)
        held[(*place, f"pheld#{hold['platform']}")] += _open(hold)
    for resv in (i for i in items if i["SK"].startswith("RESV#") and i.get("budgeted")):
        period = OPEN if resv.get("reserved_open") else str(resv["period_key"])
        reserved = int(resv["credits"]) if resv.get("status") == "reserved" else 0
        held[(period, str(resv["project_id"]), "credits_reserved")] += reserved
    return held


def _open_counted(items: Items) -> list[str]:
    held = {k: v for k, v in _holding(items).items() if k[0] == OPEN}
    broken = []
    for counter in (i for i in items if i["SK"].startswith("BUDGETH#")):
        project = str(counter["project_id"])
        for name in {"held", "credits_reserved", *(k for k in counter if k.startswith("pheld#"))}:
            stored, holding = int(counter.get(name, 0)), held.pop((OPEN, project, name), 0)
            if stored != holding:
                broken.append(f"{project} open {name} {stored}, its open holds and reservations hold {holding}")
    return broken + [f"{key}: open holds or reservations hold {n}, not counted" for key, n in sorted(held.items()) if n]


def _periods_committed(items: Items) -> list[str]:
    held, broken = _holding(items), []
    for usage in (i for i in items if i["SK"].startswith("BUDGETP#")):
        period, project = str(usage["period_key"]), str(usage["project_id"])
        for total, parts in _committed_parts(usage):
            stored, counted = int(usage.get(total, 0)), sum(int(usage.get(p, 0)) for p in parts)
            if stored != counted:
                broken.append(f"{period} {project}: {total} {stored} != {' + '.join(parts)} {counted}")
        for name in ("held", "credits_reserved", *(k for k in usage if k.startswith("pheld#"))):
            stored, holding = int(usage.get(name, 0)), held.get((period, project, name), 0)
            if stored != holding:
                broken.append(f"{period} {project}: {name} {stored}, the holds counted there hold {holding}")
    return broken


def _committed_parts(usage: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    platforms = {k.split("#", 1)[1] for k in usage if k.startswith(("pspent#", "pheld#", "pcommitted#"))}
    found = [("committed", ("spent", "held")), ("credits_committed", ("credits_used", "credits_reserved"))]
    return found + [(f"pcommitted#{p}", (f"pspent#{p}", f"pheld#{p}")) for p in sorted(platforms)]


@invariant("budget_crossing_announced")
def budget_crossing_announced(life: Life, items: Items) -> list[str]:
    """Each line (80 %, 100 %) of a project's budget that the current period's use is at or past was announced
    (Project.BudgetWarning / Reached for that project, period, budget and line), by the bill or settle that
    crossed it or by the budget put at or below it, whatever crashed in between."""
    budgets = {str(i["project_id"]): stored_budget(plain(i)) for i in items if i["SK"].startswith("BUDGET#")}
    if not budgets:
        return []
    period = period_key_at(life, life.now)
    told = set()
    for item in (i for i in items if i["SK"].startswith("OUTBOX#") and i.get("kind") == "event"):
        body = json.loads(item["body"])
        if body.get("detail_type") in (BUDGET_WARNING, BUDGET_REACHED):
            d = body["detail"]
            told.add((str(d["project_id"]), str(d["period_key"]), str(d["budget"]), int(d["threshold_pct"])))
    broken = []
    for project, budget in sorted(budgets.items()):
        usage = _one(items, f"BUDGETP#{period}#{project}") or {}
        used = stored_usage(period, plain(usage), plain(_one(items, f"BUDGETH#{project}") or {}))
        for name, limit in budget.limits().items():
            for pct in WARN_AT_PCT:
                if line_of(limit, pct) <= used.used(name) and (project, period, name, pct) not in told:
                    broken.append(
                        f"{project} {name} used {used.used(name)} of {limit} in {period}: {pct} % never announced"
                    )
    return broken


@invariant("hold_drawn_once")
def hold_drawn_once(life: Life, items: Items) -> list[str]:
    """Each bill that names a pending hold (of its project and platform) draws on it once, at most what it
    still holds; drawn + remaining == amount, remaining >= 0, an exhausted hold holds nothing; what a hold
    freed when it ended is only its remainder (holds_and_available, budget_never_exceeded count it)."""
    recorded = {str(i["SK"]).removeprefix("IDEM#") for i in items if i["SK"].startswith("IDEM#bill:")}
    broken = []
    for hold in (i for i in items if i["SK"].startswith("HOLD#") and "remaining_minor" in i):
        hold_id, amount = str(hold["hold_id"]), int(hold["amount_minor"])
        remaining, drawn = int(hold["remaining_minor"]), int(hold.get("drawn_minor", 0))
        if remaining < 0 or drawn < 0 or drawn + remaining != amount:
            broken.append(f"hold {hold_id}: drawn {drawn} + remaining {remaining} != amount {amount}")
        if hold.get("status") == "exhausted" and remaining != 0:
            broken.append(f"hold {hold_id}: exhausted with {remaining} left")
        if hold_id not in life.holds:
            continue
        # voided or expired then (steps at one instant run in order: a bill at the hold's end came before it)
        ended = utc(str(hold["ended_at"])) if hold.get("status") in ("voided", "expired") else None
        left = amount
        for at, bill_amount, project, platform, _ in sorted(
            (b for cause, b in life.bills.items() if cause in recorded and b[4] == hold_id), key=lambda b: b[0]
        ):
            if (project, platform) == life.holds[hold_id][:2] and (ended is None or at <= ended):
                left -= max(0, min(bill_amount, left))
        if drawn != amount - left:
            broken.append(f"hold {hold_id}: drawn {drawn}, its bills drew {amount - left}")
    return broken


@invariant("usage_counted_once")
def usage_counted_once(life: Life, items: Items) -> list[str]:
    """Each period's counter of a metered usage equals the quantities of the distinct event ids accepted for
    it (usage events by id, SDK batches by batch · period · day, settled runs by run id); each period's
    storage peak is the highest snapshot taken in it."""
    expected: Counter[tuple[str, str]] = Counter()
    for (metric, _), (quantity, period) in life.usage_sent.items():
        expected[(period, metric)] += quantity
    for resv in (i for i in items if i["SK"].startswith("RESV#") and i.get("status") == "settled"):
        if resv.get("usage_at") and ("workflow_runs", str(resv["workflow_run_id"])) not in life.usage_sent:
            expected[(str(resv["usage_period_key"]), "workflow_runs")] += 1
    counted = Counter(
        {
            (str(i["SK"]).split("#")[1], str(i["SK"]).rsplit("#", 1)[1]): int(i.get("total", 0))
            for i in items
            if i["SK"].startswith("USAGE#") and i["SK"].endswith(("#workflow_runs", "#sdk_events"))
        }
    )
    broken = [
        f"{metric} in {period}: counted {counted[(period, metric)]}, accepted {expected[(period, metric)]}"
        for period, metric in sorted(expected.keys() | counted.keys())
        if counted[(period, metric)] != expected[(period, metric)]
    ]
    peaks: dict[str, int] = {}
    for period, total in life.storage:
        peaks[period] = max(peaks.get(period, 0), total)
    for period, peak in sorted(peaks.items()):
        stored = _one(items, f"PERIOD#{period}") or {}
        if int(stored.get("storage_peak_bytes", -1)) != peak:
            broken.append(f"storage peak in {period}: {stored.get('storage_peak_bytes')}, snapshots' highest {peak}")
    return broken


@invariant("allowance_warned_once")
def allowance_warned_once(life: Life, items: Items) -> list[str]:
    """One Usage.AllowanceWarning per period, metric, allowance level and threshold (a plan change's other level
    warns again for itself), each marked on its usage item (`warned_<included>_<pct>`) and each mark with its
    event: the warning and its mark are one transaction."""
    sent: Counter[tuple[str, str, int, int]] = Counter()
    for item in (i for i in items if i["SK"].startswith("OUTBOX#") and i.get("kind") == "event"):
        body = json.loads(item["body"])
        if body.get("detail_type") == ALLOWANCE_WARNING:
            d = body["detail"]
            sent[(str(d["period_key"]), str(d["metric"]), int(d["included"]), int(d["threshold_pct"]))] += 1
    marked = {
        (str(i["SK"]).split("#")[1], str(i["SK"]).rsplit("#", 1)[1], int(k.split("_")[1]), int(k.split("_")[2]))
        for i in items
        if i["SK"].startswith("USAGE#")
        for k in i
        if re.fullmatch(r"warned_[1-9]\d*_\d+", k)
    }
    broken = [f"{key}: {n} Usage.AllowanceWarning events" for key, n in sorted(sent.items()) if n != 1]
    broken += [f"{key}: warned, never marked" for key in sorted(sent.keys() - marked)]
    return broken + [f"{key}: marked warned, no event" for key in sorted(marked - sent.keys())]


@invariant("runway_alert_once_per_crossing")
def runway_alert_once_per_crossing(life: Life, items: Items) -> list[str]:
    """One Wallet.RunwayAlert (event and notice) per stage crossing: each time the runway's recorded stage
    moved deeper (from none, or to fewer days), naming that stage; none for any other change of it."""
    crossings, before = {}, None
    for revision, stage in sorted(life.runway_seen.items()):
        if stage is not None and (before is None or stage < before):
            crossings[revision] = stage
        before = stage
    ids = {}
    for revision in life.runway_seen:
        cause = f"runway:{revision}"
        ids[message_id(life.org_id, cause, 0, Event(RUNWAY_ALERT, {}))] = (revision, "event")
        ids[message_id(life.org_id, cause, 1, Notice(RUNWAY_ALERT, "", ""))] = (revision, "notice")
    found: Counter[tuple[int, str]] = Counter()
    broken = []
    for item in (i for i in items if i["SK"].startswith("OUTBOX#")):
        body = json.loads(item["body"])
        if RUNWAY_ALERT not in (body.get("detail_type"), body.get("kind")):
            continue
        revision, kind = ids.get(str(item["SK"]).removeprefix("OUTBOX#"), (-1, str(item.get("kind"))))
        stage = (body.get("detail") or body.get("details") or {}).get("stage_days")
        if crossings.get(revision) != stage:
            broken.append(f"{kind} {RUNWAY_ALERT} for {stage} days with no crossing to it (runway revision {revision})")
        found[(revision, kind)] += 1
    for revision, stage in sorted(crossings.items()):
        for kind in ("event", "notice"):
            if found[(revision, kind)] != 1:
                broken.append(f"the crossing to {stage} days (revision {revision}): {found[(revision, kind)]} {kind}s")
    return broken


def issued_numbers(items: Items) -> list[str]:
    """The numbers of the org's issued invoices (those given one)."""
    return [str(i["number"]) for i in items if str(i["SK"]).startswith("INVOICE#") and i.get("number")]


def invoice_numbers_gapless(
    numbers: list[str], counters: dict[str, int] | None = None, since: dict[str, int] | None = None
) -> list[str]:
    """Across the run (one table): each series' numbers are those its counter gave out in the run, from its value
    before the run (`since`; none: 0) + 1 to its last, each once (a number given out that no invoice took is a gap
    at the end; a number from before the run given out again, a repeat)."""
    series: dict[str, list[int]] = {prefix: [] for prefix in counters or {}}
    for number in numbers:
        found = re.match(r"^(.*?)(\d+)$", number)
        if found:
            series.setdefault(found.group(1), []).append(int(found.group(2)))
    broken = []
    for prefix, seen in series.items():
        first = (since or {}).get(prefix, 0) + 1
        last = (counters or {}).get(prefix, first - 1 + len(seen))
        if sorted(seen) != list(range(first, last + 1)):
            missing = sorted(set(range(first, max([last, *seen]) + 1)) - set(seen))[:5]
            repeats = sorted({n for n, c in Counter(seen).items() if c > 1} | {n for n in seen if n < first})[:5]
            broken.append(f"series {prefix!r}: missing {missing}, repeated {repeats} (its counter at {last})")
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
