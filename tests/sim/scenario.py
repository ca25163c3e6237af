"""A scenario is one org's life, drawn from a seed: a list of timed steps (action name + arguments) and the
rates of the faults injected while they run. Adding an action: one `@generator` here (when and with what it
happens) and one `@action` in actions.py (what it does through the services)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.credits.periods import _add_months

START = datetime(2027, 1, 1, tzinfo=UTC)  # scenarios start in the first days of 2027 (then a leap year's Feb)
DAYS = 45  # simulated days after the org exists: at least one whole billing period closed and invoiced

FAULT_KINDS = (
    "ddb_conflict",
    "ddb_throttle",
    "crash_before_write",
    "crash_after_write",
    "stripe_429",
    "stripe_5xx",
    "stripe_timeout",
    "webhook_duplicate",
    "webhook_reorder",
    "webhook_delay",
)
# the outbox publisher's (tests/sim/outbox.py): EventBridge / SNS failures, a crash between a send and its mark
OUTBOX_FAULTS = (
    "eventbridge_throttle",
    "eventbridge_5xx",
    "eventbridge_partial",
    "sns_error",
    "send_timeout",
    "outbox_crash_before_mark",
)


@dataclass(frozen=True)
class Step:
    at: datetime
    action: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action}({shown})"


@dataclass(frozen=True)
class Scenario:
    seed: int
    steps: tuple[Step, ...]
    faults: dict[str, float]

    def without(self, index: int) -> Scenario:
        return Scenario(self.seed, self.steps[:index] + self.steps[index + 1 :], self.faults)


@dataclass
class Draw:
    """What a generator draws with: the seed's random stream, the org's first moment and the end."""

    rng: random.Random
    born: datetime
    end: datetime

    def moment(self, after: datetime | None = None, within: timedelta | None = None) -> datetime:
        """A random second in (after, after + within], capped at the end (default: anywhere in the life)."""
        start = after or self.born
        span = within or (self.end - start)
        seconds = max(int(span.total_seconds()), 1)
        return min(start + timedelta(seconds=self.rng.randint(1, seconds)), self.end)


# name -> (weight, generator): a generator returns the steps of one occurrence (e.g. a reserve and its settle).
GENERATORS: dict[str, tuple[int, Callable[[Draw], list[Step]]]] = {}
# The same for the agency occurrences (budgets, campaign holds, the runway, metered usage), drawn from a random
# stream of their own: adding them re-rolled no scenario drawn before them (the seeds pinned in FOUND).
AGENCY_GENERATORS: dict[str, tuple[int, Callable[[Draw], list[Step]]]] = {}


def generator(
    name: str, weight: int, *, agency: bool = False
) -> Callable[[Callable[[Draw], list[Step]]], Callable[[Draw], list[Step]]]:
    def register(fn: Callable[[Draw], list[Step]]) -> Callable[[Draw], list[Step]]:
        (AGENCY_GENERATORS if agency else GENERATORS)[name] = (weight, fn)
        return fn

    return register


def _ref(d: Draw) -> str:
    return f"{d.rng.getrandbits(40):010x}"


@generator("members", 2)
def _members(d: Draw) -> list[Step]:
    at = d.moment()
    steps = [Step(at, "add_member", {"user": _ref(d)})]
    if d.rng.random() < 0.4:
        steps.append(Step(d.moment(at), "remove_member", {"user": steps[0].args["user"]}))
    return steps


@generator("projects", 2)
def _projects(d: Draw) -> list[Step]:
    at = d.moment()
    steps = [Step(at, "add_project", {"name": _ref(d)})]
    if d.rng.random() < 0.3:
        steps.append(Step(d.moment(at), "archive_project", {"name": steps[0].args["name"]}))
    return steps


@generator("plan_change", 1)
def _plan_change(d: Draw) -> list[Step]:
    return [Step(d.moment(), "change_plan", {"plan": d.rng.choice(["starter", "pro", "scale"])})]


@generator("renewal_failed", 1)
def _renewal_failed(d: Draw) -> list[Step]:
    at = d.moment()
    steps = [Step(at, "subscription_status", {"status": "past_due"})]
    if d.rng.random() < 0.7:  # recovered (the card updated, the invoice paid) some days later
        steps.append(Step(d.moment(at, timedelta(days=6)), "subscription_status", {"status": "active"}))
    elif d.rng.random() < 0.5:
        steps.append(Step(d.moment(at, timedelta(days=10)), "subscription_status", {"status": "canceled"}))
    return steps


@generator("generation", 6)
def _generation(d: Draw) -> list[Step]:
    at, run = d.moment(), _ref(d)
    quantity = d.rng.randint(1, 4)
    steps = [
        Step(at, "reserve", {"run": run, "quantity": quantity, "template": d.rng.choice(["social-content", "ad-copy"])})
    ]
    ending = d.rng.random()
    later = d.moment(at, timedelta(hours=d.rng.choice([1, 6, 30])))
    if ending < 0.6:  # some settle after their period ended (occurred_at is when it ran)
        steps.append(
            Step(later, "settle", {"run": run, "quantity": d.rng.randint(0, quantity), "ran_at": at.isoformat()})
        )
    elif ending < 0.85:
        steps.append(Step(later, "release", {"run": run}))
    return steps  # else abandoned: the sweeper expires it


@generator("sdk_batch", 3)
def _sdk_batch(d: Draw) -> list[Step]:
    at, batch = d.moment(), _ref(d)
    step = Step(
        at, "sdk_batch", {"batch": batch, "events": d.rng.randint(1, 5000), "age_h": d.rng.choice([0, 0, 2, 30])}
    )
    if d.rng.random() < 0.3:  # the SDK re-sends a batch it did not hear back about
        return [step, Step(d.moment(at, timedelta(hours=4)), "sdk_batch", step.args)]
    return [step]


@generator("top_up", 4)
def _top_up(d: Draw) -> list[Step]:
    at, key = d.moment(), _ref(d)
    method = d.rng.choice(["card", "card", "ach", "wire"])
    outcome = d.rng.choice(["ok", "ok", "ok", "declined"]) if method != "wire" else "ok"
    amount = d.rng.choice([500, 2_500, 10_000, 50_000, d.rng.randint(100, 200_000)])
    steps = [Step(at, "top_up", {"key": key, "method": method, "amount": amount, "outcome": outcome})]
    after = d.rng.random()
    if outcome == "ok" and after < 0.15:
        steps.append(Step(d.moment(at, timedelta(days=8)), "stripe_refund", {"key": key, "part": d.rng.choice([1, 2])}))
    elif outcome == "ok" and after < 0.25:
        steps.append(Step(d.moment(at, timedelta(days=8)), "stripe_dispute", {"key": key}))
    return steps


@generator("auto_top_up", 1)
def _auto_top_up(d: Draw) -> list[Step]:
    card = d.rng.choice(["pm_card_visa", "pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"])
    return [
        Step(
            d.moment(),
            "auto_top_up",
            {"card": card, "threshold": d.rng.choice([1_000, 20_000]), "amount": d.rng.choice([5_000, 30_000])},
        )
    ]


@generator("spend", 6)
def _spend(d: Draw) -> list[Step]:
    at, ref = d.moment(), _ref(d)
    amount = d.rng.choice([0, 99, 1_234, 9_999, d.rng.randint(1, 80_000)])
    platform = d.rng.choice(["meta", "tiktok", "google_ads", "apple_search_ads"])
    held = d.rng.random() < 0.6
    steps = [Step(at, "hold", {"hold": ref, "amount": amount, "platform": platform})] if held else []
    billed = d.moment(at, timedelta(days=d.rng.choice([1, 2, 12])))  # some bills come late (after the period)
    spent = max(amount + d.rng.randint(-amount // 2 - 1, amount // 3 + 1), 0)
    bill = {
        "bill": ref,
        "amount": spent,
        "platform": platform,
        "hold": ref if held else None,
        "on": at.date().isoformat(),
    }
    fate = d.rng.random()
    if held and fate < 0.15:
        return [*steps, Step(billed, "release_hold", {"hold": ref})]
    steps.append(Step(billed, "bill", bill))
    if fate < 0.3:  # redelivered by the platform's sync
        steps.append(Step(d.moment(billed, timedelta(days=3)), "bill", bill))
    elif fate < 0.4:  # corrected: reversed, then billed again under a new id
        fixed = d.moment(billed, timedelta(days=5))
        steps += [
            Step(fixed, "reverse_bill", {"bill": ref, "platform": platform}),
            Step(fixed, "bill", {**bill, "bill": ref + "c", "hold": None}),
        ]
    elif fate < 0.45:  # the platform gives some back
        steps.append(
            Step(
                d.moment(billed, timedelta(days=5)),
                "bill",
                {**bill, "bill": ref + "cr", "amount": -max(spent // 4, 1), "hold": None},
            )
        )
    return steps


@generator("support_refund", 1)
def _support_refund(d: Draw) -> list[Step]:
    return [Step(d.moment(), "support_refund", {"key": _ref(d), "amount": d.rng.choice([100, 5_000, 40_000])})]


@generator("sweep", 2)
def _sweep(d: Draw) -> list[Step]:
    return [Step(d.moment(), "sweep")]


@generator("reconcile", 1)
def _reconcile(d: Draw) -> list[Step]:
    return [Step(d.moment(), "reconcile")]


# ---------------------------------------------------------------------------------------------- agency (issues 21, 22)
@generator("budget", 3, agency=True)
def _budget(d: Draw) -> list[Step]:
    """A budget set on the launch project (ad spend, maybe per platform, and credits); sometimes lowered later
    (maybe below what was used), or removed."""
    at = d.moment()
    limits = {
        "ad_spend": d.rng.choice([None, 0, 5_000, 40_000, 150_000]),
        "platforms": d.rng.choice([{}, {}, {"meta": d.rng.choice([2_000, 30_000])}]),
        "credits": d.rng.choice([None, 2, 10, 200]),
    }
    steps = [Step(at, "set_budget", limits)]
    later = d.rng.random()
    if later < 0.4:
        lower = {k: (v // 4 if isinstance(v, int) else v) for k, v in limits.items()}
        steps.append(Step(d.moment(at, timedelta(days=10)), "set_budget", lower))
    elif later < 0.5:
        steps.append(Step(d.moment(at, timedelta(days=10)), "set_budget", {"ad_spend": None, "platforms": {}}))
    return steps


@generator("campaign", 5, agency=True)
def _campaign(d: Draw) -> list[Step]:
    """A hold that lasts a campaign (its expiry days away, chosen by the optimizer), drawn down by several
    bills across days (some redelivered, together overrunning it or not), then released or left to expire."""
    at, ref = d.moment(), _ref(d)
    amount = d.rng.choice([1_000, 8_000, 25_000, d.rng.randint(1, 60_000)])
    platform = d.rng.choice(["meta", "google_ads", "tiktok"])
    days = d.rng.choice([2, 5, 12, 40])  # 40: beyond the longest a hold may last (it is brought in)
    steps = [Step(at, "campaign_hold", {"hold": ref, "amount": amount, "platform": platform, "days": days})]
    when = at
    for n in range(d.rng.randint(1, 4)):
        when = d.moment(when, timedelta(days=d.rng.choice([1, 2, 4])))
        spent = d.rng.randint(0, max(amount // 2, 1)) if d.rng.random() < 0.7 else amount + d.rng.randint(1, 5_000)
        bill = {"bill": f"{ref}b{n}", "amount": spent, "platform": platform, "hold": ref, "on": when.date().isoformat()}
        steps.append(Step(when, "bill", bill))
        if d.rng.random() < 0.2:  # the platform's sync sends it again
            steps.append(Step(d.moment(when, timedelta(days=1)), "bill", bill))
    if d.rng.random() < 0.5:
        steps.append(Step(d.moment(when, timedelta(days=3)), "release_hold", {"hold": ref}))
    return steps  # else it expires: the sweeper frees its remainder


@generator("burst", 1, agency=True)
def _burst(d: Draw) -> list[Step]:
    """Several holds at once on one project (the optimizer scaling campaigns): the budget grants what fits."""
    at, platform = d.moment(), d.rng.choice(["meta", "google_ads"])
    amounts = [d.rng.choice([3_000, 12_000, 30_000]) for _ in range(d.rng.randint(2, 5))]
    return [Step(at, "campaign_hold", {"hold": _ref(d), "amount": a, "platform": platform, "days": 1}) for a in amounts]


@generator("runway", 2, agency=True)
def _runway(d: Draw) -> list[Step]:
    """The daily runway check (the reconciler's `RunwayWatch.daily`) on some days, at a random time."""
    return [Step(d.moment(), "runway_check") for _ in range(d.rng.randint(1, 6))]


# Usage past the allowances (quantities then go past them). Renewals bill the overage of subscribed periods; an
# event up to 35 days old may land in the period before Checkout (Free: counted, never owed - OrgService.billed_plan)
# or before the org was made (refused, usage_before_org).
OVER_ALLOWANCE = True


@generator("usage_events", 4, agency=True)
def _usage_events(d: Draw) -> list[Step]:
    """Metered usage (`POST /v1/internal/usage/events` or the EventBridge event): workflow runs and SDK events,
    some late (after their period's invoice), some sent again in another batch, some redelivered as is."""
    at = d.moment()
    events = [
        {
            "metric": d.rng.choice(["workflow_runs", "sdk_events"]),
            "id": _ref(d),
            "quantity": d.rng.choice([1, 1, 3, 40, 60_000 if OVER_ALLOWANCE else 4]),
            "age_h": d.rng.choice([0, 0, 1, 20, 200, 700]),
            "project": d.rng.random() < 0.5,
        }
        for _ in range(d.rng.randint(1, 4))
    ]
    via = d.rng.choice(["api", "eventbridge"])
    steps = [Step(at, "usage_events", {"via": via, "events": events})]
    if d.rng.random() < 0.3:  # delivered again as is (EventBridge is at least once; a client's retry)
        steps.append(Step(d.moment(at, timedelta(hours=2)), "usage_events", steps[0].args))
    if d.rng.random() < 0.3:  # some of them again, in another batch with a new one, days later
        again = [*events[: d.rng.randint(1, len(events))], {**events[0], "id": _ref(d)}]
        steps.append(Step(d.moment(at, timedelta(days=3)), "usage_events", {"via": via, "events": again}))
    return steps


@generator("storage", 1, agency=True)
def _storage(d: Draw) -> list[Step]:
    """Daily media storage snapshots (the period keeps its peak), one maybe late into the next period."""
    at = d.moment()
    return [
        Step(
            d.moment(at, timedelta(days=k + 1)),
            "storage_snapshot",
            {"gb_tenths": d.rng.randint(0, 2_000 if OVER_ALLOWANCE else 9)},
        )
        for k in range(d.rng.randint(1, 3))
    ]


def _agency(seed: int, d: Draw, faulty: bool) -> tuple[list[Step], dict[str, float]]:
    """The agency occurrences and the outbox's fault rates, from their own random stream."""
    rng = random.Random(seed ^ 0xA6E7C1)
    mine = Draw(rng, d.born, d.end)
    names, weights = list(AGENCY_GENERATORS), [w for w, _ in AGENCY_GENERATORS.values()]
    steps: list[Step] = []
    for name in rng.choices(names, weights, k=rng.choice([0, 1, 2, 4, 6])):
        steps += AGENCY_GENERATORS[name][1](mine)
    rates = {k: rng.choice([0.0, 0.03, 0.1]) for k in OUTBOX_FAULTS} if faulty else {}
    return steps, rates


def _days(d: Draw, checkout: datetime) -> list[Step]:
    """The daily run (dispatcher + invoice run of ended periods) at a random time of the days a period of
    the org ends and the day after (a run before the settle window is over must not invoice it), and of
    two random days; sometimes a day is run again (re-running a day changes nothing)."""
    ends, month = [checkout], 1
    while (end := _add_months(checkout.replace(microsecond=0), month)) < d.end:
        ends.append(end)
        month += 1
    days = {e.date() + timedelta(days=k) for e in ends for k in (0, 1)}
    days |= {d.moment().date() for _ in range(2)}
    steps = []
    for day in sorted(days):
        at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=d.rng.randint(0, 86_399))
        if d.born < at < d.end:
            steps.append(Step(at, "daily_run", {"day": day.isoformat(), "again": d.rng.random() < 0.1}))
    return steps


def generate(seed: int) -> Scenario:
    rng = random.Random(seed)
    born = START + timedelta(days=rng.randint(0, 40), seconds=rng.randint(0, 86_399))
    d = Draw(rng, born, born + timedelta(days=rng.choice([36, DAYS, DAYS, 70])))
    checkout = d.moment(born, rng.choice([timedelta(minutes=30), timedelta(days=3)]))
    steps = [
        Step(born, "create_org", {"plan": "free"}),
        Step(checkout, "checkout", {"plan": rng.choice(["starter", "pro", "pro", "scale"])}),
        Step(d.moment(checkout, timedelta(hours=2)), "agency_mode"),
    ]
    names, weights = list(GENERATORS), [w for w, _ in GENERATORS.values()]
    for name in rng.choices(names, weights, k=rng.choice([2, 4, 6, 10, 16])):
        steps += GENERATORS[name][1](d)
    steps += _days(d, checkout)
    faulty = rng.random() < 0.8
    faults = {k: rng.choice([0.0, 0.02, 0.05]) for k in FAULT_KINDS} if faulty else {}
    agency, outbox_faults = _agency(seed, d, faulty)
    steps += agency
    faults |= outbox_faults
    steps.sort(key=lambda s: s.at)
    return Scenario(seed, (*steps, Step(d.end, "end")), faults)
