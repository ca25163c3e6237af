"""The checks, pure: each compares two sides' amounts for one scope and returns what disagrees. Every
rule of what "agrees" means is here, once (the service only gathers the sides)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from shared.reconcile.models import DiscrepancyKind as K
from shared.reconcile.models import Finding, SpendReport
from shared.stripe_gateway import DISPUTE_INQUIRIES

_TAKEN = ("pending", "requires_action", "succeeded")  # a refund's money is on its way back (as the wallet's rule)
_DISPUTE_KEPT = ("won", *DISPUTE_INQUIRIES)  # the money stayed with us (an inquiry never took it)
SPEND_BILL_GRACE_DAYS = 3  # platforms bill a day or more after the spend: unbilled before this is not late
HOLD_EXPIRY_GRACE = timedelta(hours=1)  # the sweeper expires holds every few minutes


@dataclass(frozen=True)
class StripePayment:
    """A top-up payment as Stripe has it: the intent, what its refunds and disputes took back."""

    intent_id: str
    status: str | None
    amount_minor: int
    currency: str
    refunds: Mapping[str, tuple[int, str | None]]  # refund id -> (amount, status)
    disputes: Mapping[str, tuple[int, str | None]]  # dispute id -> (amount, status)

    @property
    def kept_minor(self) -> int:
        """What Stripe collected: the amount of a succeeded intent."""
        return self.amount_minor if self.status == "succeeded" else 0

    @property
    def refunded_minor(self) -> int:
        return sum(amount for amount, status in self.refunds.values() if status in _TAKEN)

    @property
    def disputed_minor(self) -> int:
        return sum(amount for amount, status in self.disputes.values() if status not in _DISPUTE_KEPT)


@dataclass(frozen=True)
class WalletPayment:
    """The same payment in the wallet: what was credited for it, refunded and taken back by disputes."""

    topup_id: str
    credited_minor: int
    refunded_minor: int
    disputed_minor: int
    currency: str = ""  # the top-up's (ISO, any case); "" when not recorded: not compared


def payment(org_id: str, intent_id: str, stripe: StripePayment | None, ours: WalletPayment | None) -> list[Finding]:
    """A top-up payment agrees when the wallet credited exactly what Stripe collected, and took back
    exactly what Stripe refunded and what disputes hold."""
    scope = f"payment:{intent_id}"
    kept = stripe.kept_minor if stripe else 0
    credited = ours.credited_minor if ours else 0
    if credited == 0:  # ours to credit only while Stripe still holds some of it
        held = kept - (stripe.refunded_minor + stripe.disputed_minor if stripe else 0)
        return [Finding(K.PAYMENT_NOT_CREDITED, org_id, scope, 0, held, (intent_id,))] if held > 0 else []
    if not kept:
        return [Finding(K.CREDIT_WITHOUT_PAYMENT, org_id, scope, credited, 0, (intent_id,))]
    if credited != kept or (stripe and ours and not _same_currency(stripe.currency, ours.currency)):
        note = (
            f"Stripe collected {stripe.currency.upper()}, the wallet credited {ours.currency}"
            if stripe and ours
            else ""
        )
        return [Finding(K.CREDIT_AMOUNT_MISMATCH, org_id, scope, credited, kept, (intent_id,), note)]
    refunded_stripe = stripe.refunded_minor if stripe else 0
    if not credited or stripe is None or ours is None:
        return []
    found = []
    if ours.refunded_minor != refunded_stripe:
        found.append(
            Finding(
                K.REFUND_NOT_REFLECTED,
                org_id,
                scope,
                ours.refunded_minor,
                refunded_stripe,
                (intent_id, *stripe.refunds),
            )
        )
    if ours.disputed_minor != stripe.disputed_minor:
        causes = (intent_id, *stripe.disputes)
        found.append(
            Finding(K.DISPUTE_NOT_REFLECTED, org_id, scope, ours.disputed_minor, stripe.disputed_minor, causes)
        )
    return found


@dataclass(frozen=True)
class WalletBooks:
    """The wallet's account and what its own records say it should be."""

    balance: int
    entries_sum: int
    held: int
    floor: int
    stored_available: int | None
    pending_holds: Mapping[str, tuple[int, str]]  # hold id -> (what it still holds, expires_at ISO)


def wallet(org_id: str, books: WalletBooks, now_iso: str, expiry_cutoff_iso: str) -> list[Finding]:
    """`sum(entries) == balance`, `available == balance - held - floor`, `held ==` what the pending holds
    still hold (each its amount less the bills that drew on it),
    and no pending hold past its expiry (beyond the sweeper's grace, `expiry_cutoff_iso`)."""
    from shared.wallet.account import available

    found = []
    if books.entries_sum != books.balance:
        found.append(Finding(K.BALANCE_NOT_ENTRIES, org_id, "wallet:balance", books.balance, books.entries_sum))
    rule = available(books.balance, books.held, books.floor)
    if books.stored_available is not None and books.stored_available != rule:
        found.append(Finding(K.AVAILABLE_NOT_RULE, org_id, "wallet:available", books.stored_available, rule))
    holds_total = sum(amount for amount, _ in books.pending_holds.values())
    if holds_total != books.held:
        found.append(Finding(K.HELD_NOT_HOLDS, org_id, "wallet:held", books.held, holds_total))
    for hold_id, (amount, expires_at) in sorted(books.pending_holds.items()):
        if expires_at < expiry_cutoff_iso:
            note = f"expired at {expires_at}, still pending at {now_iso}"
            found.append(Finding(K.HOLD_PAST_EXPIRY, org_id, f"hold:{hold_id}", amount, 0, (hold_id,), note))
    return found


def overage(
    org_id: str, period_key: str, owed: Mapping[str, int], billed: Mapping[str, Sequence[int]]
) -> list[Finding]:
    """Each metric's overage of a closed period is on exactly one Stripe invoice item, of the amount owed."""
    found = []
    for metric in sorted(set(owed) | set(billed)):
        amount, items = owed.get(metric, 0), list(billed.get(metric, ()))
        scope = f"overage:{period_key}:{metric}"
        if amount and not items:
            found.append(Finding(K.OVERAGE_NOT_BILLED, org_id, scope, amount, 0, (period_key, metric)))
        elif items and (len(items) > 1 or items[0] != amount):
            note = f"{len(items)} Stripe item(s)"
            found.append(
                Finding(K.OVERAGE_AMOUNT_MISMATCH, org_id, scope, amount, sum(items), (period_key, metric), note)
            )
    return found


@dataclass(frozen=True)
class InvoiceWallet:
    """An issued invoice's wallet side: its lines, the period's aggregates and the bills before it."""

    lines_minor: int  # its wallet lines, with lines recorded late for its period on later invoices (net)
    aggregate_minor: int  # the period's wallet aggregates (spend + fee, net of corrections), late ones included
    recorded_before_minor: int  # the period's bills recorded before the invoice was drafted
    billed_lines_minor: int  # of its lines (and the late ones), the bills' spend and fees (no corrections)
    carried_later: bool  # a later invoice (which carries late bills) is issued


def invoice_wallet(org_id: str, period_key: str, invoice_id: str, side: InvoiceWallet) -> list[Finding]:
    """An issued invoice's wallet lines hold every bill of its period recorded before it was drafted, never
    more than the period's aggregates, and (with the late lines a later issued invoice carries) all of them."""
    lines, aggregate = side.lines_minor, side.aggregate_minor
    short = side.billed_lines_minor < side.recorded_before_minor or (side.carried_later and lines < aggregate)
    if not short and lines <= aggregate:
        return []
    scope = f"invoice:{period_key}:wallet"
    return [Finding(K.INVOICE_WALLET_LINES, org_id, scope, lines, aggregate, (invoice_id,))]


def invoice_stripe(org_id: str, period_key: str, invoice_id: str, recorded: int, stripe_total: int) -> list[Finding]:
    """What the invoice says was charged through Stripe equals the totals of Stripe's invoices it names."""
    if recorded == stripe_total:
        return []
    scope = f"invoice:{period_key}:stripe"
    return [Finding(K.INVOICE_STRIPE_TOTAL, org_id, scope, recorded, stripe_total, (invoice_id,))]


_NUMBER = re.compile(r"^(?P<series>[A-Z]+-\d{4})-(?P<n>\d+)$")


def number_gaps(numbers: Iterable[str], last_by_series: Mapping[str, int]) -> list[Finding]:
    """Every series (`LB-<year>`, `LBCN-<year>`) uses each number from 1 to its counter exactly once."""
    used: dict[str, list[int]] = {}
    for number in numbers:
        match = _NUMBER.match(number)
        if match:
            used.setdefault(match["series"], []).append(int(match["n"]))
    found = []
    for series in sorted(set(used) | set(last_by_series)):
        seen = sorted(used.get(series, []))
        last = max(last_by_series.get(series, 0), seen[-1] if seen else 0)
        missing = sorted(set(range(1, last + 1)) - set(seen))
        twice = sorted({n for n in seen if seen.count(n) > 1})
        if missing or twice:
            note = f"missing {missing[:20]}, used twice {twice[:20]}"
            found.append(Finding(K.INVOICE_NUMBER_GAP, "", f"numbers:{series}", len(seen), last, (series,), note))
    return found


def spend(
    org_id: str,
    reports: Iterable[SpendReport],
    billed: Mapping[tuple[str, str, str], int],
    today: date,
    currency: str = "",
) -> list[Finding]:
    """Each platform report (day, platform, project) is covered by bills of that amount, in the wallet's
    `currency` ("": not compared); spend not billed is a discrepancy only once it is older than the
    platforms' billing delay."""
    found = []
    late = (today - timedelta(days=SPEND_BILL_GRACE_DAYS)).isoformat()
    for report in reports:
        got = billed.get((report.day, report.platform, report.project_id), 0)
        if not report.agency and not got:
            continue  # a BYO org's spend: its platform billed the customer's own account
        scope = f"spend:{report.day}:{report.platform}:{report.project_id}"
        causes = (report.report_id,)
        if not _same_currency(report.currency, currency):
            note = f"reported in {report.currency}, billed in {currency}"
            found.append(Finding(K.SPEND_BILL_MISMATCH, org_id, scope, got, report.amount_minor, causes, note))
        elif got == 0 and report.amount_minor and report.day < late:
            found.append(Finding(K.SPEND_NOT_BILLED, org_id, scope, 0, report.amount_minor, causes))
        elif got and got != report.amount_minor:
            found.append(Finding(K.SPEND_BILL_MISMATCH, org_id, scope, got, report.amount_minor, causes))
    return found


def _same_currency(theirs: str, ours: str) -> bool:
    """Two ISO currency codes agree whatever their case (Stripe's are lower case); "" is not compared."""
    return not theirs or not ours or theirs.upper() == ours.upper()


def unbilled_spend(reports: Iterable[SpendReport], billed: Mapping[tuple[str, str, str], int]) -> int:
    """Spend the platforms reported that no bill covers yet (what the wallet will still be charged)."""
    return sum(max(0, r.amount_minor - billed.get((r.day, r.platform, r.project_id), 0)) for r in reports if r.agency)
