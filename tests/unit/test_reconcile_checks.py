"""The reconciliation's rules, pure: when a payment, a wallet, a period's overage, an invoice, a number
series and a platform's report agree with the other side; and the Stripe read limiter's rate."""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.reconcile import checks
from shared.reconcile.checks import InvoiceWallet, StripePayment, WalletBooks, WalletPayment
from shared.reconcile.models import DiscrepancyKind as K
from shared.reconcile.models import Finding, SpendReport
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.stripe_reads import RateLimiter

Sides = dict[str, tuple[int, str | None]]


def _stripe(
    status: str = "succeeded", amount: int = 10_000, refunds: Sides | None = None, disputes: Sides | None = None
) -> StripePayment:
    return StripePayment("pi_1", status, amount, "USD", refunds or {}, disputes or {})


def _kinds(found: list[Finding]) -> list[K]:
    return [f.kind for f in found]


def test_a_payment_agrees_when_credited_refunded_and_disputed_alike() -> None:
    stripe = _stripe(
        refunds={"re_1": (2_000, "succeeded"), "re_2": (500, "failed")}, disputes={"dp_1": (1_000, "lost")}
    )
    assert checks.payment("o", "pi_1", stripe, WalletPayment("t", 10_000, 2_000, 1_000)) == []


def test_a_payment_kept_by_stripe_and_never_credited_is_found_until_refunded() -> None:
    assert _kinds(checks.payment("o", "pi_1", _stripe(), None)) == [K.PAYMENT_NOT_CREDITED]
    refunded = _stripe(refunds={"re_1": (10_000, "succeeded")})
    assert checks.payment("o", "pi_1", refunded, None) == []
    assert checks.payment("o", "pi_1", _stripe(status="processing"), None) == []


def test_a_credit_stripe_does_not_show_or_of_another_amount_is_found() -> None:
    ours = WalletPayment("t", 10_000, 0, 0)
    assert _kinds(checks.payment("o", "pi_1", None, ours)) == [K.CREDIT_WITHOUT_PAYMENT]
    assert _kinds(checks.payment("o", "pi_1", _stripe(status="requires_action"), ours)) == [K.CREDIT_WITHOUT_PAYMENT]
    assert _kinds(checks.payment("o", "pi_1", _stripe(amount=9_999), ours)) == [K.CREDIT_AMOUNT_MISMATCH]


def test_refunds_and_disputes_stripe_shows_that_the_wallet_did_not_take_are_found() -> None:
    stripe = _stripe(refunds={"re_1": (3_000, "pending")}, disputes={"dp_1": (10_000, "needs_response")})
    found = checks.payment("o", "pi_1", stripe, WalletPayment("t", 10_000, 0, 0))
    assert _kinds(found) == [K.REFUND_NOT_REFLECTED, K.DISPUTE_NOT_REFLECTED]
    assert (found[0].ours_minor, found[0].theirs_minor) == (0, 3_000)
    won = _stripe(disputes={"dp_1": (10_000, "won")})
    assert checks.payment("o", "pi_1", won, WalletPayment("t", 10_000, 0, 0)) == []


def test_a_wallet_agrees_with_itself_or_says_where_not() -> None:
    books = WalletBooks(10_000, 10_000, 3_000, 500, 6_500, {"h1": (3_000, "2026-12-06T10:00:00+00:00")})
    assert checks.wallet("o", books, "2026-12-06T09:00:00", "2026-12-06T08:00:00") == []
    edited = WalletBooks(11_000, 10_000, 3_000, 500, 6_500, {"h1": (3_000, "2026-12-06T10:00:00+00:00")})
    assert _kinds(checks.wallet("o", edited, "x", "2026-12-06T08:00:00")) == [
        K.BALANCE_NOT_ENTRIES,
        K.AVAILABLE_NOT_RULE,
    ]
    lost_hold = WalletBooks(10_000, 10_000, 3_000, 500, 6_500, {})
    assert _kinds(checks.wallet("o", lost_hold, "x", "2026-12-06T08:00:00")) == [K.HELD_NOT_HOLDS]
    assert _kinds(checks.wallet("o", books, "x", "2026-12-06T11:00:00")) == [K.HOLD_PAST_EXPIRY]


def test_each_metrics_overage_is_on_exactly_one_stripe_item_of_its_amount() -> None:
    owed = {"credits": 900, "sdk_events": 15}
    assert checks.overage("o", "p", owed, {"credits": [900], "sdk_events": [15]}) == []
    assert _kinds(checks.overage("o", "p", owed, {"credits": [900]})) == [K.OVERAGE_NOT_BILLED]
    assert _kinds(checks.overage("o", "p", owed, {"credits": [900, 900], "sdk_events": [15]})) == [
        K.OVERAGE_AMOUNT_MISMATCH
    ]
    assert _kinds(checks.overage("o", "p", {}, {"workflow_runs": [80]})) == [K.OVERAGE_AMOUNT_MISMATCH]


def test_an_invoices_wallet_lines_hold_every_bill_recorded_before_it_and_never_more() -> None:
    def found(lines: int, aggregate: int, before: int, later: bool) -> list[K]:
        return _kinds(checks.invoice_wallet("o", "p", "inv", InvoiceWallet(lines, aggregate, before, lines, later)))

    assert found(1_000, 1_000, 1_000, later=False) == []
    # A bill reversed on the same invoice: its lines net to 0, its bill's line still shows the bill
    reversed_ = InvoiceWallet(0, 0, 12_600, 12_600, True)
    assert _kinds(checks.invoice_wallet("o", "p", "inv", reversed_)) == []
    assert found(1_000, 1_300, 1_000, later=False) == []  # a late bill, carried by the next invoice
    assert found(1_000, 1_300, 1_000, later=True) == [K.INVOICE_WALLET_LINES]  # ... which did not carry it
    assert found(700, 1_000, 1_000, later=False) == [K.INVOICE_WALLET_LINES]  # a bill fell off
    assert found(1_200, 1_000, 1_000, later=False) == [K.INVOICE_WALLET_LINES]  # a line of nothing


def test_number_series_are_gapless_and_each_number_used_once() -> None:
    assert checks.number_gaps(["LB-2026-000001", "LB-2026-000002"], {"LB-2026": 2}) == []
    assert checks.number_gaps([], {}) == []  # no credit notes yet: nothing to check
    (gap,) = checks.number_gaps(["LB-2026-000001", "LB-2026-000003"], {"LB-2026": 3})
    assert (gap.kind, gap.scope, "missing [2]" in gap.note) == (K.INVOICE_NUMBER_GAP, "numbers:LB-2026", True)
    (twice,) = checks.number_gaps(["LBCN-2026-000001", "LBCN-2026-000001"], {})
    assert "used twice [1]" in twice.note


def test_spend_reported_is_billed_alike_and_unbilled_is_late_only_after_the_platforms_delay() -> None:
    def report(day: str, amount: int) -> SpendReport:
        return SpendReport("o", "meta", "p", day, amount, "USD", f"r-{day}", "t")

    today = date(2026, 12, 6)
    reports = [report("2026-12-01", 500), report("2026-12-02", 700), report("2026-12-05", 300)]
    billed = {("2026-12-01", "meta", "p"): 500, ("2026-12-02", "meta", "p"): 650}
    assert _kinds(checks.spend("o", reports, billed, today)) == [K.SPEND_BILL_MISMATCH]
    assert _kinds(checks.spend("o", [report("2026-12-02", 100)], {}, today)) == [K.SPEND_NOT_BILLED]
    assert checks.unbilled_spend(reports, billed) == 50 + 300


def test_a_report_or_a_payment_in_another_currency_never_agrees_by_amount_alone() -> None:
    eur = SpendReport("o", "meta", "p", "2026-11-01", 4_000, "EUR", "r", "t")
    usd = SpendReport("o", "meta", "p", "2026-11-01", 4_000, "USD", "r", "t")
    billed = {("2026-11-01", "meta", "p"): 4_000}
    (found,) = checks.spend("o", [eur], billed, date(2026, 12, 1), "USD")
    assert (found.kind, found.note) == (K.SPEND_BILL_MISMATCH, "reported in EUR, billed in USD")
    assert checks.spend("o", [usd], billed, date(2026, 12, 1), "usd") == []
    eur_payment = StripePayment("pi_1", "succeeded", 5_000, "eur", {}, {})
    (paid,) = checks.payment("o", "pi_1", eur_payment, WalletPayment("t", 5_000, 0, 0, "USD"))
    assert (paid.kind, paid.note) == (K.CREDIT_AMOUNT_MISMATCH, "Stripe collected EUR, the wallet credited USD")
    usd_payment = StripePayment("pi_1", "succeeded", 5_000, "usd", {}, {})
    assert checks.payment("o", "pi_1", usd_payment, WalletPayment("t", 5_000, 0, 0, "USD")) == []


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_the_limiter_never_lets_more_than_its_rate_through(gaps: list[float]) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(20, burst=5, clock=lambda: now[0], sleep=sleep)
    sent = []
    for gap in gaps:
        now[0] += gap
        limiter.take()
        sent.append(now[0])
    # any window of one second holds at most rate + burst requests
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u < t + 1.0) <= 20 + 5
    assert limiter.requests == len(gaps)


def test_a_dispute_inquiry_took_no_money_so_the_wallet_keeps_it() -> None:
    inquiries: Sides = {
        "dp_1": (5_000, "warning_needs_response"),
        "dp_2": (5_000, "warning_under_review"),
        "dp_3": (5_000, "warning_closed"),
    }
    stripe = _stripe(disputes=inquiries)
    assert stripe.disputed_minor == 0
    assert checks.payment("o", "pi_1", stripe, WalletPayment("t", 10_000, 0, 0)) == []
    escalated = _stripe(disputes={**inquiries, "dp_1": (5_000, "needs_response")})
    assert _kinds(checks.payment("o", "pi_1", escalated, WalletPayment("t", 10_000, 0, 0))) == [K.DISPUTE_NOT_REFLECTED]


class _NumbersTable:
    """A table whose scan holds both series' counters at 3 and numbers 1 and 2 of each (3 taken, never used)."""

    name = "t"
    meta = type("Meta", (), {"client": None})()

    def scan(self, **_: Any) -> dict[str, Any]:
        items = [{"PK": "INVOICE_NUMBERS", "SK": "YEAR#2026", "last": 3}]
        items += [{"PK": "CREDIT_NOTE_NUMBERS", "SK": "YEAR#2026", "last": 3}]
        items += [{"PK": "ORG#a", "SK": f"INVOICE#{n}", "number": f"LB-2026-00000{n}"} for n in (1, 2)]
        items += [{"PK": "ORG#a", "SK": f"CREDITNOTE#{n}", "number": f"LBCN-2026-00000{n}"} for n in (1, 2)]
        return {"Items": items}


def test_both_series_counters_are_read_so_a_trailing_gap_shows_in_either() -> None:
    numbers, counters = ReconcileRepository(_NumbersTable()).invoice_numbers()
    assert counters == {"LB-2026": 3, "LBCN-2026": 3}
    found = checks.number_gaps(numbers, counters)
    assert [(f.scope, "missing [3]" in f.note) for f in found] == [
        ("numbers:LB-2026", True),
        ("numbers:LBCN-2026", True),
    ]


_REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
_DISPUTE_STATUSES = ("needs_response", "under_review", "won", "lost", "warning_needs_response", "warning_closed")


@st.composite
def _clean_org(draw: st.DrawFn) -> list[Finding]:
    """One org with nothing wrong, drawn at random: its payments (partly refunded, disputed, inquiries),
    its wallet, its closed period's overage and its platforms' reports each agreeing with the other side;
    returns what every check finds of it."""
    found: list[Finding] = []
    for n in range(draw(st.integers(0, 3))):
        amount = draw(st.integers(1, 10**7))
        refunds = {f"re_{i}": (draw(st.integers(1, amount)), draw(st.sampled_from(_REFUND_STATUSES))) for i in range(3)}
        disputes = {
            f"dp_{i}": (draw(st.integers(1, amount)), draw(st.sampled_from(_DISPUTE_STATUSES))) for i in range(2)
        }
        stripe = StripePayment(f"pi_{n}", "succeeded", amount, draw(st.sampled_from(("usd", "USD"))), refunds, disputes)
        ours = WalletPayment(f"t{n}", amount, stripe.refunded_minor, stripe.disputed_minor, "USD")
        found += checks.payment("o", f"pi_{n}", stripe, ours)
    entries = draw(st.lists(st.integers(-(10**6), 10**6), max_size=8))
    holds = {
        f"h{i}": (a, "2026-12-06T10:00:00.000Z")
        for i, a in enumerate(draw(st.lists(st.integers(1, 10**5), max_size=4)))
    }
    held, floor = sum(a for a, _ in holds.values()), draw(st.integers(-(10**5), 0))
    stored = draw(st.sampled_from((None, checks_available(sum(entries), held, floor))))
    books = WalletBooks(sum(entries), sum(entries), held, floor, stored, holds)
    found += checks.wallet("o", books, "2026-12-06T09:00:00.000Z", "2026-12-06T08:00:00.000Z")
    owed = draw(st.dictionaries(st.sampled_from(("credits", "workflow_runs", "sdk_events")), st.integers(0, 10**6)))
    found += checks.overage("o", "p", owed, {m: [a] for m, a in owed.items() if a})
    days = draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 5)), unique=True, max_size=6))
    reports = [
        SpendReport("o", "meta", "p", d.isoformat(), a, "USD", f"r{d}", "t", agency)
        for d in days
        for a, agency in [(draw(st.integers(0, 10**6)), draw(st.booleans()))]
    ]
    billed = {(r.day, r.platform, r.project_id): r.amount_minor for r in reports if r.agency and r.amount_minor}
    found += checks.spend("o", reports, billed, date(2026, 12, 6), draw(st.sampled_from(("usd", "USD"))))
    assert checks.unbilled_spend(reports, billed) == 0
    last = draw(st.integers(0, 50))
    numbers = [f"LB-2026-{i:06d}" for i in range(1, last + 1)]
    return found + checks.number_gaps(numbers, {"LB-2026": last} if last else {})


def checks_available(balance: int, held: int, floor: int) -> int:
    from shared.wallet.account import available

    return available(balance, held, floor)


@settings(max_examples=1_000, deadline=None)
@given(_clean_org())
def test_a_thousand_orgs_with_nothing_wrong_are_found_with_nothing(found: list[Finding]) -> None:
    assert found == []
