"""Per-project budgets on DynamoDB Local: holds and credit reservations checked in their own transaction
under contention, bills always recorded and counted, warnings once per crossing, a new period from 0, a
lowered budget; holds that last a campaign, drawn down by each bill once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.budgets.service import BudgetLimits, ProjectBudgetExceededError
from shared.clock import iso
from shared.credits.account import InsufficientCreditsError
from shared.errors import ConflictError, DomainError, NotFoundError
from shared.orgs.models import ProjectStatus
from shared.wallet.service import Bill, InsufficientWalletFundsError
from tests.helpers import capture_events, drain, new_user
from tests.integration.credit_kit import credit_kit
from tests.integration.wallet_kit import WalletKit, agency_org, fund, raw_item, wallet_kit
from tests.paid import mirror_subscription

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 9, 41, 17, tzinfo=UTC)  # the org's periods start on the 20th at 09:41:17
SUPPORT = Caller("agent", None, frozenset({"support"}))


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _budget(kit: WalletKit, owner: Caller, org_id: str, project: str, **limits: Any) -> None:
    kit.services.budgets.put(owner, org_id, project, BudgetLimits(**limits))


def _bill(
    kit: WalletKit, org_id: str, project: str, amount: int, bill_id: str, day: date, hold_id: str | None = None
) -> Any:
    return kit.wallet.record_bill(
        Bill(org_id, "meta", bill_id, project, amount, "USD", day, hold_id, "test:spend-feed")
    )


def _usage(kit: WalletKit, org_id: str, project: str) -> Any:
    org = kit.org_repo.require_org(org_id)
    return kit.services.budgets.state(org, project).usage


def test_500_concurrent_holds_on_a_project_with_a_budget_for_100(kit: WalletKit, stack: Any) -> None:
    # Given a wallet that covers all 500 holds of 100 and a project budget that covers 100 of them
    org_id, project, owner = agency_org(kit)
    other = kit.orgs.create_project(owner, org_id, name="Other client").project_id
    fund(kit, org_id, 60_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=10_000)
    local = threading.local()

    def hold(i: int) -> str:
        if not hasattr(local, "kit"):  # one connection per caller thread, like one Lambda instance each
            local.kit = wallet_kit(stack, NOW)
        target = other if i % 11 == 0 else project  # another project's holds race alongside
        try:
            local.kit.wallet.hold(org_id=org_id, hold_id=f"h{i}", project_id=target, platform="meta", amount_minor=100)
        except ProjectBudgetExceededError as refused:
            assert refused.details["budget"] == "ad_spend" and refused.details["left"] < 100
            return f"{target}:refused"
        return f"{target}:granted"

    # When 550 holds race (500 on the budgeted project, 50 on the other)
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(hold, range(550)))
    # Then exactly 100 of the budgeted project's are granted, every one of the other's
    assert outcomes.count(f"{project}:granted") == 100 and outcomes.count(f"{project}:refused") == 400
    assert outcomes.count(f"{other}:granted") == 50
    usage = _usage(kit, org_id, project)
    assert (usage.held, usage.spent, usage.platform_held["meta"]) == (10_000, 0, 10_000)
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.held, stored.stored_available) == (15_000, 45_000)
    # and the refusal names the budget and what is left
    with pytest.raises(ProjectBudgetExceededError) as refused:
        kit.wallet.hold(org_id=org_id, hold_id="one-more", project_id=project, platform="meta", amount_minor=1)
    assert (refused.value.code, refused.value.details["left"], refused.value.details["limit"]) == (
        "project_budget_exceeded",
        0,
        10_000,
    )


def test_500_concurrent_credit_reservations_with_a_budget_for_100(stack: Any) -> None:
    march = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], march)
    owner = Caller(new_user(), None, frozenset())
    org_id = kit.orgs.create_org(owner, name="Agency", billing_mode="byo", currency="USD", plan_id="free").org.org_id  # type: ignore[arg-type]
    mirror_subscription(kit.mirror, org_id, "pro", start=march)  # 3,000 credits: enough for every reservation
    project = kit.orgs.create_project(owner, org_id, name="Client A").project_id
    other = kit.orgs.create_project(owner, org_id, name="Client B").project_id
    # Given a credit budget of 100 on one project (1-credit generations), none on the other
    kit.budgets.put(owner, org_id, project, BudgetLimits(credits=100))
    local = threading.local()

    def reserve(i: int) -> str:
        if not hasattr(local, "kit"):
            local.kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], march)
        target = other if i % 11 == 0 else project  # the other project's reservations race alongside
        try:
            local.kit.credits.reserve(
                org_id=org_id,
                project_id=target,
                template_id="ad-copy",
                generation_type="caption_copy",  # 1 credit
                quantity=1,
                workflow_run_id=f"run-{i}",
                actor="t",
            )
        except ProjectBudgetExceededError:
            return f"{target}:refused"
        except InsufficientCreditsError:
            return "no credits"
        return f"{target}:reserved"

    # When 550 reservations race (500 on the budgeted project, 50 on the other)
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(reserve, range(550)))
    # Then exactly 100 of the budgeted project's are reserved, every one of the other's
    assert outcomes.count(f"{project}:reserved") == 100 and outcomes.count(f"{project}:refused") == 400
    assert outcomes.count(f"{other}:reserved") == 50
    account = kit.repo.account(org_id)
    assert account is not None and account.account.reserved == 150
    org = kit.org_repo.require_org(org_id)
    usage = kit.budgets.state(org, project).usage
    assert (usage.credits_reserved, usage.credits_used) == (100, 0)
    # settling uses them: used counts, reserved goes; a released one frees its part of the budget
    runs = [f"run-{i}" for i, o in enumerate(outcomes) if o == f"{project}:reserved"]
    kit.credits.settle(org_id=org_id, workflow_run_id=runs[0], quantity=None, occurred_at=None, actor="t")
    kit.credits.release(org_id=org_id, workflow_run_id=runs[1], actor="t")
    usage = kit.budgets.state(org, project).usage
    assert (usage.credits_reserved, usage.credits_used) == (98, 1)
    assert kit.budgets.state(org, other).usage.credits_reserved == 50


def test_bills_are_always_recorded_and_warnings_fire_once_per_crossing(kit: WalletKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=10_000, platforms_minor={"meta": 15_000})
    day = date(2026, 11, 21)
    # 3,000 x 2 = 60 %; the third takes it to 90 % (80 % crossed); 1,000 more to 100 %; then beyond
    for i, amount in enumerate((3_000, 3_000, 3_000, 1_000, 4_000)):
        for _ in range(3):  # each bill delivered three times
            _bill(kit, org_id, project, amount, f"b{i}", day)
    events = [e for e in drain(stack, queue) if e["detail"]["org_id"] == org_id]
    seen = [
        (e["detail-type"], e["detail"]["budget"], e["detail"]["threshold_pct"], e["detail"]["used"]) for e in events
    ]
    assert seen == [
        ("Project.BudgetWarning", "ad_spend", 80, 9_000),
        ("Project.BudgetReached", "ad_spend", 100, 10_000),
        ("Project.BudgetWarning", "ad_spend:meta", 80, 14_000),  # the platform's own: 80 % of 15,000
    ]
    # every bill was recorded (14,000 of a 10,000 budget), and the budget refuses new holds
    assert _usage(kit, org_id, project).spent == 14_000
    with pytest.raises(ProjectBudgetExceededError):
        kit.wallet.hold(org_id=org_id, hold_id="late", project_id=project, platform="meta", amount_minor=1)
    # a reversal gives the spend back to the budget (no event: nothing crossed upwards)
    kit.wallet.reverse_bill(org_id=org_id, platform="meta", bill_id="b4", reason="invalid traffic", actor="support")
    assert _usage(kit, org_id, project).spent == 10_000
    assert drain(stack, queue) == []


def test_a_new_period_starts_from_zero(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=5_000)
    _bill(kit, org_id, project, 5_000, "nov", date(2026, 11, 25))
    with pytest.raises(ProjectBudgetExceededError):
        kit.wallet.hold(org_id=org_id, hold_id="nov-hold", project_id=project, platform="meta", amount_minor=1_000)
    # When the next period starts (20 December 09:41:17 UTC), Then the budget is whole again
    kit.clock.at = datetime(2026, 12, 20, 9, 41, 17, tzinfo=UTC)
    kit.wallet.hold(org_id=org_id, hold_id="dec-hold", project_id=project, platform="meta", amount_minor=5_000)
    usage = _usage(kit, org_id, project)
    assert (usage.period_key, usage.spent, usage.held) == ("2026-12-20T09:41:17Z", 0, 5_000)
    # a late November bill counts in November's budget, not December's
    _bill(kit, org_id, project, 700, "nov-late", date(2026, 11, 30))
    assert _usage(kit, org_id, project).spent == 0


def test_a_budget_lowered_below_its_spend_refuses_holds_and_records_bills(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=20_000)
    _bill(kit, org_id, project, 8_000, "b1", date(2026, 11, 20))
    kit.wallet.hold(org_id=org_id, hold_id="open", project_id=project, platform="meta", amount_minor=2_000)
    # When billing lowers the budget to 5,000 (below the 10,000 committed)
    billing = Caller(new_user(), None, frozenset())
    kit.orgs.add_member(owner, org_id, user_id=billing.user_id, email=None, role="billing")  # type: ignore[arg-type]
    _budget(kit, billing, org_id, project, ad_spend_minor=5_000)
    # Then new holds are refused, with nothing left
    with pytest.raises(ProjectBudgetExceededError) as refused:
        kit.wallet.hold(org_id=org_id, hold_id="new", project_id=project, platform="meta", amount_minor=1)
    assert (refused.value.details["left"], refused.value.details["committed"]) == (0, 10_000)
    # a replay of the hold granted before answers it (counted once)
    again = kit.wallet.hold(org_id=org_id, hold_id="open", project_id=project, platform="meta", amount_minor=2_000)
    assert (again.status, again.remaining_minor, _usage(kit, org_id, project).held) == ("pending", 2_000, 2_000)
    # and bills are recorded all the same
    result = _bill(kit, org_id, project, 3_000, "b2", date(2026, 11, 21), hold_id="open")
    assert (result.amount_minor, result.replayed) == (3_000, False)
    usage = _usage(kit, org_id, project)
    assert (usage.spent, usage.held) == (11_000, 0)  # the hold was drawn to 0 by the bill (1,000 over it)


def test_a_budget_lowered_below_its_spend_is_announced_once_so_the_optimizer_pauses_the_project(
    kit: WalletKit, stack: Any
) -> None:
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=20_000)
    _bill(kit, org_id, project, 8_000, "b1", date(2026, 11, 28))  # 40 %: nothing crossed
    kit.wallet.hold(org_id=org_id, hold_id="campaign", project_id=project, platform="meta", amount_minor=9_000)
    # When billing lowers the budget to 7,500 (below the 8,000 spent), twice (a retried request)
    for _ in range(2):
        _budget(kit, owner, org_id, project, ad_spend_minor=7_500)
    # Then both lines are announced once: the optimizer pauses the project's open campaign
    seen = [
        (e["detail-type"], e["detail"]["threshold_pct"], e["detail"]["limit"], e["detail"]["used"])
        for e in drain(stack, queue)
        if e["detail"]["org_id"] == org_id
    ]
    assert sorted(seen) == [("Project.BudgetReached", 100, 7_500, 8_000), ("Project.BudgetWarning", 80, 7_500, 8_000)]
    # and the campaign's later bills, past the lowered line, announce nothing again
    _bill(kit, org_id, project, 2_000, "b2", date(2026, 11, 29), hold_id="campaign")
    assert drain(stack, queue) == []


def test_a_hold_drawn_by_bills_across_days_posts_each_once_and_frees_only_its_remainder(
    kit: WalletKit, stack: Any
) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=50_000)
    campaign_end = NOW + timedelta(days=10, hours=3)
    made = kit.wallet.hold(
        org_id=org_id,
        hold_id="campaign",
        project_id=project,
        platform="meta",
        amount_minor=20_000,
        expires_at=campaign_end,
    )
    assert made.expires_at == iso(campaign_end)
    local = threading.local()

    def deliver(bill_id: str, amount: int, day: date) -> Any:
        if not hasattr(local, "kit"):
            local.kit = wallet_kit(stack, kit.clock.at)
        local.kit.clock.at = kit.clock.at
        return _bill(local.kit, org_id, project, amount, bill_id, day, hold_id="campaign")

    # Bills of three days, each delivered 4 times at once (retries and duplicate deliveries)
    for n, amount in enumerate((3_000, 4_500, 2_500)):
        kit.clock.at = NOW + timedelta(days=n + 1, hours=5, minutes=7 * n)
        day = (NOW + timedelta(days=n)).date()
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(deliver, [f"day{n}"] * 4, [amount] * 4, [day] * 4))
        assert sorted(r.replayed for r in results) == [False, True, True, True]
    # (the sweeper, three days in, leaves it: it expires at the campaign's end, not after 24 h)
    kit.wallet.expire_holds()
    hold = raw_item(kit, org_id, "HOLD#campaign")
    assert hold is not None and (hold["status"], hold["remaining_minor"], hold["drawn_minor"]) == (
        "pending",
        10_000,
        10_000,
    )
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.held == 10_000
    assert kit.wallet.open_held_minor(org_id) == 10_000
    assert [(h.hold_id, h.open_minor) for h in kit.wallet.open_holds(org_id)] == [("campaign", 10_000)]
    usage = _usage(kit, org_id, project)
    assert (usage.spent, usage.held) == (10_000, 10_000)
    # When the campaign ends, the sweeper frees only the remainder
    kit.clock.at = campaign_end + timedelta(minutes=5)
    assert kit.wallet.expire_holds().done >= 1  # (other tests' holds may be due too: the list is every org's)
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.held, stored.stored_available) == (0, stored.account.balance)
    assert stored.account.balance == 100_000 - 10_000 - 500  # spend + the 5 % fee, once each
    usage = _usage(kit, org_id, project)
    assert (usage.spent, usage.held) == (10_000, 0)
    assert raw_item(kit, org_id, "HOLD#campaign")["status"] == "expired"  # type: ignore[index]


def test_a_bill_beyond_its_hold_exhausts_it_and_the_overrun_is_spend(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=4_000)
    _bill(kit, org_id, project, 3_000, "b1", date(2026, 11, 20), hold_id="h")
    _bill(kit, org_id, project, 2_500, "b2", date(2026, 11, 21), hold_id="h")  # 1,000 left: 1,500 over it
    hold = raw_item(kit, org_id, "HOLD#h")
    assert hold is not None and (hold["status"], hold["remaining_minor"], hold["drawn_minor"]) == (
        "exhausted",
        0,
        4_000,
    )
    assert "GSI2PK" not in hold  # off the sweeper's list
    _bill(kit, org_id, project, 500, "b3", date(2026, 11, 22), hold_id="h")  # an exhausted hold: plain spend
    released = kit.wallet.release_hold(org_id=org_id, hold_id="h")
    assert released.status == "exhausted"
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.held, stored.account.balance) == (0, 100_000 - 6_000 - 300)


def test_a_hold_expiry_is_the_callers_within_the_maximum(kit: WalletKit) -> None:
    from shared.errors import InvalidRequestError

    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    default = kit.wallet.hold(org_id=org_id, hold_id="d", project_id=project, platform="meta", amount_minor=1)
    assert default.expires_at == "2026-11-21T09:41:17.000Z"
    far = kit.wallet.hold(
        org_id=org_id,
        hold_id="far",
        project_id=project,
        platform="meta",
        amount_minor=1,
        expires_at=NOW + timedelta(days=90),
    )
    assert far.expires_at == "2026-12-21T09:41:17.000Z"  # brought in to 31 days
    with pytest.raises(InvalidRequestError) as past:
        kit.wallet.hold(
            org_id=org_id, hold_id="past", project_id=project, platform="meta", amount_minor=1, expires_at=NOW
        )
    assert past.value.code == "hold_expiry_past"
    assert raw_item(kit, org_id, "HOLD#past") is None


def test_the_wallet_refuses_before_the_budget_when_it_cannot_cover(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 1_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=50_000)
    with pytest.raises(InsufficientWalletFundsError):
        kit.wallet.hold(org_id=org_id, hold_id="big", project_id=project, platform="meta", amount_minor=5_000)
    assert _usage(kit, org_id, project).held == 0  # nothing written to the budget either


def test_settled_credits_cross_the_credit_budget_once(stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2028, 2, 29, 23, 30, tzinfo=UTC))
    owner = Caller(new_user(), None, frozenset())
    org_id = kit.orgs.create_org(owner, name="Agency", billing_mode="byo", currency="USD", plan_id="free").org.org_id  # type: ignore[arg-type]
    project = kit.orgs.create_project(owner, org_id, name="Client").project_id
    kit.budgets.put(owner, org_id, project, BudgetLimits(credits=10))
    for run, quantity in (("a", 7), ("b", 1), ("c", 2)):  # 70 %, 80 %, 100 %
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="ad-copy",
            generation_type="caption_copy",
            quantity=quantity,
            workflow_run_id=run,
            actor="t",
        )
        for _ in range(2):  # a retried settle settles once
            kit.credits.settle(org_id=org_id, workflow_run_id=run, quantity=None, occurred_at=None, actor="t")
    events = [e["detail"] for e in drain(stack, queue) if e["detail"]["org_id"] == org_id]
    assert [(e["budget"], e["threshold_pct"], e["used"], e["project_id"]) for e in events] == [
        ("credits", 80, 8, project),
        ("credits", 100, 10, project),
    ]
    with pytest.raises(ProjectBudgetExceededError) as refused:
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="ad-copy",
            generation_type="caption_copy",
            quantity=1,
            workflow_run_id="d",
            actor="t",
        )
    assert (refused.value.details["budget"], refused.value.details["left"]) == ("credits", 0)


def test_a_hold_for_an_unknown_archived_or_other_orgs_project_is_refused_as_a_reservation_is(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    other_org, other_project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    kit.wallet.hold(org_id=org_id, hold_id="before", project_id=project, platform="meta", amount_minor=1_000)
    kit.orgs.set_project_status(owner, org_id, project, ProjectStatus.ARCHIVED)
    cases: list[tuple[str, str, type[DomainError], str]] = [
        ("unknown", "prj_nope", NotFoundError, "project_not_found"),  # 404
        ("theirs", other_project, NotFoundError, "project_not_found"),  # 404
        ("archived", project, ConflictError, "project_archived"),  # 409
    ]
    for hold_id, project_id, error, code in cases:
        with pytest.raises(DomainError) as refused:
            kit.wallet.hold(org_id=org_id, hold_id=hold_id, project_id=project_id, platform="meta", amount_minor=500)
        assert (type(refused.value), refused.value.code) == (error, code)
        assert kit.repo.hold(org_id, hold_id) is None
    # Then nothing changed: the wallet holds only the hold made before, no budget counts the refused ones
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.held == 1_000
    assert _usage(kit, org_id, project).held == 1_000
    assert (
        raw_item(kit, other_org, f"BUDGETP#{_usage(kit, other_org, other_project).period_key}#{other_project}") is None
    )
    # and a replay of the hold made before the project was archived is answered as made
    again = kit.wallet.hold(org_id=org_id, hold_id="before", project_id=project, platform="meta", amount_minor=1_000)
    assert (again.status, again.amount_minor) == ("pending", 1_000)


def test_a_hold_placed_at_the_end_of_a_period_counts_in_the_next_until_it_ends(kit: WalletKit) -> None:
    """An open hold is a commitment now: holds of the next period see it; a bill drawing on it next period
    is spent there; its expiry frees what it still holds."""
    import random

    org_id, project, owner = agency_org(kit)  # periods start on the 20th at 09:41:17
    fund(kit, org_id, 100_000, new_user())
    _budget(kit, owner, org_id, project, ad_spend_minor=10_000)
    # the last day of November's period, 23:59 and some seconds
    kit.clock.at = datetime(2026, 12, 19, 23, 59, random.randrange(60), tzinfo=UTC)
    late = datetime(2026, 12, 22, random.randrange(24), random.randrange(60), tzinfo=UTC)
    kit.wallet.hold(
        org_id=org_id, hold_id="late", project_id=project, platform="meta", amount_minor=6_000, expires_at=late
    )
    # When December's period starts (a random time of its first day), Then its holds see November's
    kit.clock.at = datetime(2026, 12, 20, random.randrange(10, 24), random.randrange(60), tzinfo=UTC)
    with pytest.raises(ProjectBudgetExceededError) as refused:
        kit.wallet.hold(org_id=org_id, hold_id="dec-5k", project_id=project, platform="meta", amount_minor=5_000)
    assert (refused.value.details["committed"], refused.value.details["left"]) == (6_000, 4_000)
    long = kit.clock.at + timedelta(days=20)
    kit.wallet.hold(
        org_id=org_id, hold_id="dec-4k", project_id=project, platform="meta", amount_minor=4_000, expires_at=long
    )
    with pytest.raises(ProjectBudgetExceededError):
        kit.wallet.hold(org_id=org_id, hold_id="dec-1", project_id=project, platform="meta", amount_minor=1)
    usage = _usage(kit, org_id, project)
    assert (usage.period_key, usage.spent, usage.held) == ("2026-12-20T09:41:17Z", 0, 10_000)
    # A bill of 21 December drawing 2,500 on November's hold: spent in December, the hold's remainder 3,500
    kit.clock.at = datetime(2026, 12, 21, random.randrange(24), random.randrange(60), tzinfo=UTC)
    _bill(kit, org_id, project, 2_500, "dec-21", date(2026, 12, 21), hold_id="late")
    usage = _usage(kit, org_id, project)
    assert (usage.spent, usage.held, usage.committed("ad_spend")) == (2_500, 7_500, 10_000)
    assert kit.services.budgets.usage(org_id, project, "2026-11-20T09:41:17Z").spent == 0
    # When November's hold expires, Then what it still held is free: 3,500 fits again, 3,501 does not
    kit.clock.at = late + timedelta(minutes=1)
    kit.wallet.expire_holds()
    assert kit.repo.hold(org_id, "late").status == "expired"  # type: ignore[union-attr]
    assert _usage(kit, org_id, project).held == 4_000
    with pytest.raises(ProjectBudgetExceededError):
        kit.wallet.hold(org_id=org_id, hold_id="after-big", project_id=project, platform="meta", amount_minor=3_501)
    kit.wallet.hold(org_id=org_id, hold_id="after", project_id=project, platform="meta", amount_minor=3_500)
    assert _usage(kit, org_id, project).committed("ad_spend") == 10_000
