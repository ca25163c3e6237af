"""Issue 15: every wallet movement on exactly one issued invoice, however late it arrives.

Ad platforms report with a lag: a bill dated in a period whose invoice was already made is carried to
the next invoice, in its own lines (`late_for`), never dropped and never counted twice. Tests drive the
real services on a manual clock: periods anchored at random times of day, bills dated anywhere in three
periods and arriving in any order around the invoice runs, the run of each period at its settle time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.credits.periods import Period, period_containing
from shared.errors import ConflictError
from shared.invoices.models import Invoice
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 30, 14, 37, 12, tzinfo=UTC)  # a month end: February is clamped


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, START)


@dataclass(frozen=True)
class _Arrival:
    at: datetime
    bill_id: str
    billed_on: date
    amount: int


def _periods(kit: WalletKit, org_id: str, count: int) -> list[Period]:
    org = kit.org_repo.require_org(org_id)
    periods = [period_containing(org, kit.clock.now())]
    while len(periods) < count:
        periods.append(period_containing(org, periods[-1].end))
    return periods


def _bill(kit: WalletKit, org_id: str, project: str, arrival: _Arrival) -> None:
    kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform="meta",
            bill_id=arrival.bill_id,
            project_id=project,
            amount_minor=arrival.amount,
            currency="USD",
            billed_on=arrival.billed_on,
            hold_id=None,
            actor="spend-feed",
        )
    )


def _run(kit: WalletKit, org_id: str, period: Period) -> str:
    invoices = kit.services.invoices
    statuses = [
        step(org_id, period.key)
        for step in (invoices.close, invoices.collect, invoices.finalize, invoices.render, invoices.issue)
    ]
    return statuses[-1]


def _issued(kit: WalletKit, org_id: str, periods: list[Period]) -> list[Invoice]:
    found = [kit.services.invoices._repo.get(org_id, p.key) for p in periods]
    return [i for i in found if i is not None and i.status == "issued"]


def _wallet_lines_total(invoice: Invoice) -> int:
    return sum(line.amount_minor for line in invoice.lines if line.paid_via == "wallet")


arrivals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=88),  # the bill's date: days after the first period began
        st.integers(min_value=0, max_value=24 * 20),  # its arrival: hours after that date
        st.integers(min_value=1, max_value=250_000),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=arrivals, offset_minutes=st.integers(min_value=0, max_value=24 * 60 - 1))
def test_each_bill_is_on_exactly_one_issued_invoice_whenever_it_arrives(
    kit: WalletKit, arrivals: list[tuple[int, int, int]], offset_minutes: int
) -> None:
    # Given an agency org subscribed at a random time of day, with a funded wallet
    kit.clock.at = START + timedelta(minutes=offset_minutes)
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 5_000_000, f"fund-{org_id}")
    periods = _periods(kit, org_id, 4)
    first = periods[0].start
    # Bills dated in the first three periods, arriving in any order around each period's invoice run
    events: list[tuple[datetime, int, Any]] = []
    for n, (day, hours, amount) in enumerate(arrivals):
        billed_on = (first + timedelta(days=day)).date()
        at = max(first, datetime.combine(billed_on, datetime.min.time(), UTC)) + timedelta(hours=hours)
        events.append((at, 1, _Arrival(at, f"b{n}", billed_on, amount)))
    for period in periods[:3]:
        events.append((period.end + SETTLE_WINDOW + timedelta(minutes=1), 0, period))
    last_run = periods[2].end + SETTLE_WINDOW + timedelta(minutes=1)
    for at, _, what in sorted(events, key=lambda e: (e[0], e[1])):
        kit.clock.at = max(at, kit.clock.at)
        if isinstance(what, _Arrival):
            _bill(kit, org_id, project, what)
        else:
            _run(kit, org_id, what)
    # Then the next period's run takes what arrived after the last one
    kit.clock.at = max(kit.clock.at, last_run, periods[3].end) + SETTLE_WINDOW + timedelta(minutes=1)
    _run(kit, org_id, periods[3])

    issued = _issued(kit, org_id, periods)
    wallet = kit.repo.get(org_id)
    assert wallet is not None
    spent = 5_000_000 - wallet.account.balance  # every bill's spend and fee, nothing else moved
    assert spent >= sum(amount for _, _, amount in arrivals)
    # Each movement is on exactly one invoice: the wallet lines of all invoices sum to what was spent
    assert sum(_wallet_lines_total(i) for i in issued) == spent
    # ...and every late line names an earlier period, closed before the bill arrived (issued, or closed
    # with nothing to bill then)
    for invoice in issued:
        for line in invoice.lines:
            if line.late_for is not None:
                closed = kit.services.invoices._repo.get(org_id, line.late_for)
                assert closed is not None and line.late_for < invoice.period_key
    # The statements chain: each opens at the last one's closing; the last closes at the balance
    statements = [i.wallet_statement for i in sorted(issued, key=lambda i: i.period_key) if i.wallet_statement]
    assert statements[0].opening_minor == 0
    for before, after in itertools.pairwise(statements):
        assert after.opening_minor == before.closing_minor
    assert statements[-1].closing_minor == wallet.account.balance


@pytest.mark.parametrize("time_of_day", ["00:00:00", "02:59:59", "03:01:00", "14:37:21", "23:59:59"])
def test_no_invoice_before_its_period_has_ended_and_settled(kit: WalletKit, time_of_day: str) -> None:
    # Given an org whose subscription began at this time of day
    hour, minute, second = (int(x) for x in time_of_day.split(":"))
    kit.clock.at = datetime(2028, 1, 31, hour, minute, second, tzinfo=UTC)  # leap February follows
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"fund-{org_id}")
    (period, following) = _periods(kit, org_id, 2)
    assert period.end.time() == kit.clock.at.time() or period.end.day == 29
    # The run at 03:00 UTC on the day the period ends, and just before its settle time: refused
    for at in (
        datetime.combine(period.end.date(), datetime.min.time(), UTC) + timedelta(hours=3),
        period.end + SETTLE_WINDOW - timedelta(seconds=1),
    ):
        if at >= period.end + SETTLE_WINDOW:
            continue
        kit.clock.at = at
        with pytest.raises(ConflictError) as refused:
            kit.services.invoices.close(org_id, period.key)
        assert refused.value.code == "period_not_ended"
        assert kit.services.invoices._repo.get(org_id, period.key) is None
    # A bill of the period's last day arriving before the settle time is on the period's own invoice
    kit.clock.at = period.end + SETTLE_WINDOW - timedelta(minutes=5)
    _bill(kit, org_id, project, _Arrival(kit.clock.at, "last-day", (period.end - timedelta(hours=13)).date(), 700))
    kit.clock.at = period.end + SETTLE_WINDOW
    assert _run(kit, org_id, period) == "issued"
    invoice = kit.services.invoices._repo.get(org_id, period.key)
    assert invoice is not None and _wallet_lines_total(invoice) == 735  # 700 + the 5 % fee
    assert following.start == period.end


def test_a_reversal_and_a_platform_credit_are_new_entries_on_the_next_invoice(kit: WalletKit) -> None:
    from shared.auth import Caller

    # Given a bill on an issued invoice
    kit.clock.at = datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"fund-{org_id}")
    period, following = _periods(kit, org_id, 2)
    _bill(kit, org_id, project, _Arrival(kit.clock.at, "twice", kit.clock.at.date(), 10_000))
    kit.clock.at = period.end + SETTLE_WINDOW
    assert _run(kit, org_id, period) == "issued"
    # When support reverses it (a replay changes nothing) and the platform credits invalid traffic for the
    # same, invoiced period
    support = Caller("staff-1", None, frozenset({"support"}))
    reversed_once = kit.services.credit_notes.reverse_bill_for(support, org_id, "meta", "twice", "billed twice")
    again = kit.services.credit_notes.reverse_bill_for(support, org_id, "meta", "twice", "billed twice")
    assert (reversed_once.amount_minor, reversed_once.fee_minor, again.replayed) == (-10_000, -500, True)
    credit = _Arrival(kit.clock.at, "ivt-credit", period.start.date(), -2_000)
    _bill(kit, org_id, project, credit)
    assert kit.repo.get(org_id).account.balance == 100_000 - 10_500 + 10_500 + 2_100  # type: ignore[union-attr]
    # Then the issued invoice is unchanged, and the next one shows both as their own lines
    first = kit.services.invoices._repo.get(org_id, period.key)
    assert first is not None and _wallet_lines_total(first) == 10_500
    kit.clock.at = following.end + SETTLE_WINDOW
    assert _run(kit, org_id, following) == "issued"
    second = kit.services.invoices._repo.get(org_id, following.key)
    assert second is not None
    corrections = {(line.description.split(":")[0], line.late_for, line.amount_minor) for line in second.lines}
    assert ("Reversed or credited ad spend", None, -10_000) in corrections
    assert ("Platform fee given back", None, -500) in corrections
    assert ("Reversed or credited ad spend", period.key, -2_000) in corrections  # the credit: late for its period
    assert _wallet_lines_total(second) == -12_600
    statement = second.wallet_statement
    assert statement is not None and statement.opening_minor == first.wallet_statement.closing_minor  # type: ignore[union-attr]
    assert statement.closing_minor == 100_000 + 2_100
