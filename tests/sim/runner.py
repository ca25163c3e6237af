"""Runs scenarios: each step at its simulated time through the real services, faults injected as the seed
chose, Stripe's events delivered the way webhooks arrive (duplicated, reordered, late), failed calls retried
the way their callers retry (API clients with the same idempotency key, Lambda, Step Functions, Stripe's
redelivery); then the invariants. A failure is shrunk (steps dropped while it still fails) and printed with
the command that replays it."""

from __future__ import annotations

import gc
import multiprocessing
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.errors import ConcurrentUpdateError, DomainError, ThrottledError, UpstreamError
from tests.sim import invariants, outbox
from tests.sim.actions import ACTIONS, Life, advance_stripe, run_invoice, stripe_event, watch_runway
from tests.sim.scenario import Scenario, Step, generate
from tests.sim.world import FaultPlan, SimCrash, SimWorld

ATTEMPTS = 6  # a call that keeps failing is retried; the last attempt runs with the faults passed
RETRIED = (SimCrash, ConcurrentUpdateError, ThrottledError, UpstreamError, ClientError)
STRIPE_ACTIONS = {
    "checkout",
    "top_up",
    "stripe_refund",
    "stripe_dispute",
    "auto_top_up",
    "bill",
    "support_refund",
    "end",
    "daily_run",
    "change_plan",
    "subscription_status",
}


@dataclass
class Failure:
    invariant: str
    detail: str
    step: int  # index of the step after which it was seen (len(steps) for the end checks)


@dataclass
class Outcome:
    seed: int
    steps: int
    faults: int
    failures: list[Failure] = field(default_factory=list)
    numbers: list[str] | None = None  # the invoice numbers the org's items hold at its end (None: not read yet)


class Run:
    """One scenario's run."""

    def __init__(
        self,
        world: SimWorld,
        scenario: Scenario,
        *,
        each_step: bool = True,
        extra: dict[str, Callable[[Life], None]] | None = None,
    ):
        self.scenario = scenario
        rng = random.Random(scenario.seed ^ 0x5EED)
        faults = FaultPlan(random.Random(scenario.seed ^ 0xFA17), dict(scenario.faults))
        self.life = Life(world, world.scenario(scenario.steps[0].at, faults), rng)
        self.life.stream = outbox.stream_for(
            scenario.seed, scenario.faults, self.life.kit.table, lambda: faults.outbox_writes
        )
        watch_runway(self.life)
        self.world, self.each_step, self.extra = world, each_step, extra or {}
        self.outcome = Outcome(scenario.seed, 0, 0)

    def go(self) -> Outcome:
        for index, step in enumerate(self.scenario.steps):
            self.life.kit.clock.at = max(self.life.kit.clock.at, step.at)
            if not self._step(index, step):
                break
        if self.outcome.numbers is None:  # stopped by a failure before the end's checks read them
            self.outcome.numbers = self._numbers_left()
        self.outcome.faults = len(self.life.kit.faults.log) + len(self.life.stream.faults.log)
        return self.outcome

    def _numbers_left(self) -> list[str]:
        """The invoice numbers of a scenario stopped by a failure (reported already), so that the run's series
        show no gap for its invoices. When even this read fails, that is said too: the run's check of the series
        is then missing them (a gap it reports, or a repeat it cannot see)."""
        if not self.life.org_id:
            return []
        try:
            return invariants.issued_numbers(self._quiet(lambda: invariants.org_items(self.life)))
        except Exception as exc:
            self._fail("invoice_numbers_gapless", f"the org's invoice numbers unread at its end: {exc!r}"[:300], -1)
            return []

    def _fail(self, name: str, detail: str, index: int) -> None:
        self.outcome.failures.append(Failure(name, detail, index))

    def _step(self, index: int, step: Step) -> bool:
        self.outcome.steps += 1
        try:
            self._retried(lambda: self._act(step))
            if step.action in STRIPE_ACTIONS or self.life.late_events:
                self._webhooks(final=step.action == "end")
            if step.action != "end":  # the table's stream hands the step's outbox items to the publisher
                outbox.after_step(self.life.stream, self.life.kit.table, self.life.org_id)
            if step.action == "daily_run" and step.args.get("again"):  # the day run again at once
                for problem in self._rerun_day(step):
                    self._fail("rerun_changes_nothing", f"after {step.describe()} run again: {problem}", index)
        except DomainError as refused:  # a refusal the product answers with a 4xx: an outcome, not a bug
            self.life.notes.append(f"{step.action}: {type(refused).__name__} {getattr(refused, 'code', '')}")
        except Exception:
            self._fail("no_server_error", f"{step.describe()}\n{traceback.format_exc(limit=12)}", index)
            return False
        if step.action == "end":
            try:
                self._final(index)
            except Exception:  # the last run, reconciliation or a check broke: reported
                self._fail("no_server_error", f"at the end\n{traceback.format_exc(limit=12)}", index)
        elif self.each_step and self.life.org_id:
            for name, problem in self._checked(invariants.AFTER_EACH):
                self._fail(name, f"after {step.describe()}: {problem}", index)
        return not self.outcome.failures

    def _checked(self, names: set[str] | None, items: invariants.Items | None = None) -> list[tuple[str, str]]:
        faults = self.life.kit.faults
        faults.armed = False
        try:
            return invariants.check(self.life, names, items)
        finally:
            faults.armed = True

    def _act(self, step: Step) -> None:
        if step.action in self.extra:
            self.life.stream.touched()  # a test's step may write past the services (a tampered store)
            self.extra[step.action](self.life)
            return
        if step.action in STRIPE_ACTIONS:
            self._quiet(lambda: advance_stripe(self.life, pause=self._renewed))
        ACTIONS[step.action](self.life, step.args)

    def _quiet(self, fn: Callable[[], Any]) -> Any:
        """The simulator's own work (Stripe's side, set-up reads): no faults injected."""
        faults = self.life.kit.faults
        armed, faults.armed = faults.armed, False
        try:
            return fn()
        finally:
            faults.armed = armed

    def _retried(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                return self._quiet(fn) if last else fn()
            except RETRIED as exc:
                if last or (isinstance(exc, ClientError) and not _injected(exc)):
                    raise
        return None

    # ------------------------------------------------------------------ Stripe's webhooks
    def _renewed(self) -> None:
        """A renewal's draft was made while Stripe's clock advanced: its webhooks delivered (with the faults)
        before the clock goes on to finalize it, as within Stripe's hour."""
        faults = self.life.kit.faults
        armed, faults.armed = faults.armed, True
        try:
            self._webhooks(final=False)
        finally:
            faults.armed = armed

    def _webhooks(self, *, final: bool) -> None:
        life, faults = self.life, self.life.kit.faults
        fresh = life.kit.stripe.events_for(life.customer) if life.customer else []
        if faults.fire("webhook_reorder"):
            life.rng.shuffle(fresh)
        now = life.now
        due = [e for at, e in life.late_events if final or at <= now]
        life.late_events = [(at, e) for at, e in life.late_events if not (final or at <= now)]
        for event in fresh:
            if not final and faults.fire("webhook_delay"):  # dropped now, redelivered hours or days later
                life.late_events.append((now + timedelta(hours=life.rng.choice([1, 20, 80])), event))
                continue
            due.append(event)
            if faults.fire("webhook_duplicate"):
                due.append(event)
        for event in due:
            self._retried(lambda e=event: life.services.stripe_events.handle(stripe_event(e)))

    # ------------------------------------------------------------------ the end
    def _final(self, index: int) -> None:
        """The last settling, the publisher's retries until nothing is unsent, every invariant over the org's
        items, and the re-run compared against those same items (one read of them before the re-run: the
        checks change nothing). The invoice numbers the org holds after it are the run's to check."""
        life = self.life
        self._quiet(self._settle_up)
        outbox.drain(life.stream, life.kit.table, life.org_id)
        if not life.org_id:
            self.outcome.numbers = []
            return
        items = self._quiet(lambda: invariants.org_items(life))
        for name, problem in self._checked(None, items):
            self._fail(name, problem, index)
        after = self._quiet(self._rerun_everything)
        for problem in _changes(items, after):
            self._fail("rerun_changes_nothing", problem, index)
        self.outcome.numbers = invariants.issued_numbers(after)

    def _settle_up(self) -> None:
        """Everything Stripe still owes delivered, a last sweep, run and reconciliation."""
        life = self.life
        advance_stripe(life, pause=lambda: self._webhooks(final=False))
        self._webhooks(final=True)
        ACTIONS["sweep"](life, {})
        ACTIONS["daily_run"](life, {"day": life.now.date().isoformat(), "again": False})
        ACTIONS["reconcile"](life, {})

    def _rerun_day(self, step: Step) -> list[str]:
        """The same day run again right after it ran (a scheduler's duplicate, a re-run by hand), with the
        scenario's faults: no item of the org changes."""
        before = self._quiet(lambda: invariants.org_items(self.life))
        self._retried(lambda: ACTIONS["daily_run"](self.life, step.args))
        return _changes(before, self._quiet(lambda: invariants.org_items(self.life)))

    def _rerun_everything(self) -> invariants.Items:
        """The day (the dispatcher and every invoice it ran) run again; the org's items after it (which
        `rerun_changes_nothing` compares with those read after the last run)."""
        life = self.life
        for period_key in sorted(life.invoiced):
            run_invoice(life, period_key)
        ACTIONS["daily_run"](life, {"day": life.now.date().isoformat(), "again": True})
        return invariants.org_items(life)


def _changes(before_items: invariants.Items, after_items: invariants.Items) -> list[str]:
    """What a re-run changed: the items made, gone or changed (the first five)."""
    before, after = _snapshot(before_items), _snapshot(after_items)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [f"{sk} changed: {_diff(before.get(sk), after.get(sk))}" for sk in changed[:5]]


def _snapshot(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["SK"]: i for i in items if not i["SK"].startswith(("RECON#", "RUN#"))}


def _diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    if before is None or after is None:
        return "made" if before is None else "gone"
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys)[:400]


def _injected(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Message") in ("Rate exceeded", "Transaction cancelled")


def run_one(world: SimWorld, scenario: Scenario, **kwargs: Any) -> Outcome:
    return Run(world, scenario, **kwargs).go()


# ---------------------------------------------------------------------------------------------- many
@dataclass
class Summary:
    seed: int
    scenarios: int = 0
    steps: int = 0
    faults: int = 0
    seconds: float = 0.0
    failed: list[tuple[Outcome, Scenario]] = field(default_factory=list)
    global_failures: list[Failure] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)  # every scenario's invoice numbers (Outcome.numbers)

    def line(self) -> str:
        return f"simulation: {self.scenarios} scenarios, {self.steps} steps, {self.faults} faults, seed {self.seed}"


def run_many(
    world: SimWorld,
    seed: int,
    count: int,
    *,
    workers: int = 8,
    processes: int = 1,
    each_step: bool = True,
    budget_s: float | None = None,
) -> Summary:
    """Scenarios seed .. seed+count-1 (each replayable alone by its own seed), `workers` threads at a time in
    each of `processes` processes (threads share one core: the GIL; DynamoDB Local is the other process), all
    on the world's table; with a budget, no scenario starts after it is spent (the summary says how many ran).
    Then the rules across the run: the invoice numbers every scenario's org held at its end against what the
    table's counters gave out since the run began."""
    started = time.monotonic()
    before = world.invoice_counters()  # a fresh table's: none
    deadline = None if budget_s is None else time.time() + budget_s
    if processes <= 1:
        summary = _run_share(world, seed, range(count), workers, each_step, deadline)
    else:
        summary = _run_processes(world.table_name, seed, count, workers, processes, each_step, deadline)
    gaps = invariants.invoice_numbers_gapless(summary.numbers, world.invoice_counters(), since=before)
    summary.global_failures = [Failure("invoice_numbers_gapless", problem, -1) for problem in gaps]
    summary.seconds = time.monotonic() - started
    return summary


def _run_share(
    world: SimWorld, seed: int, share: range, workers: int, each_step: bool, deadline: float | None
) -> Summary:
    """The scenarios seed + n for n in `share`, in threads; none started after the deadline (time.time())."""
    summary, lock = Summary(seed), threading.Lock()

    def one(n: int) -> None:
        if deadline is not None and time.time() > deadline:
            return
        scenario = generate(seed + n)
        outcome = run_one(world, scenario, each_step=each_step)
        with lock:
            summary.scenarios += 1
            summary.steps += outcome.steps
            summary.faults += outcome.faults
            summary.numbers += outcome.numbers or []
            if outcome.failures:
                summary.failed.append((outcome, scenario))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, share))
    return summary


def _run_processes(
    table_name: str, seed: int, count: int, workers: int, processes: int, each_step: bool, deadline: float | None
) -> Summary:
    """The scenarios dealt round-robin to `processes` interpreters, each with its own world on the same table.
    They are forked from a fresh server process that imported the simulator once (a fork of this one would carry
    its threads' state, the Stripe emulator's server among them; a spawn imports everything again: ~1.6 s of CPU)."""
    summary = Summary(seed)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        shares = [range(k, count, processes) for k in range(processes)]
        for part in pool.map(_process_share, [(table_name, seed, s, workers, each_step, deadline) for s in shares]):
            summary.scenarios += part.scenarios
            summary.steps += part.steps
            summary.faults += part.faults
            summary.numbers += part.numbers
            summary.failed += part.failed
    summary.failed.sort(key=lambda failed: failed[1].seed)
    return summary


# The cyclic collector's first generation after this many allocations (CPython's default: 700). A scenario
# allocates millions of short-lived dicts and Stripe objects that reference counting frees; at the default the
# collector ran ~20 times a scenario and cost ~6 % of a process's CPU, most of it scanning what lives for the
# whole run (modules, the emulators' stores: frozen out of its sight once the world is made).
GC_FIRST_GENERATION = 50_000
# How long a thread holding the GIL runs before another that waits for it gets it (CPython's default: 5 ms). A
# scenario's thread gives the GIL up at each call to DynamoDB Local anyway (a few a millisecond of its Python);
# the forced switches between them only add switches (at 50 ms a few % more scenarios a budget: within the noise).
SWITCH_INTERVAL_S = 0.05


def _process_share(job: tuple[str, int, range, int, bool, float | None]) -> Summary:
    table_name, seed, share, workers, each_step, deadline = job
    world = SimWorld(table_name)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_FIRST_GENERATION, 20, 10)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        return _run_share(world, seed, share, workers, each_step, deadline)
    finally:
        world.stop()


# ---------------------------------------------------------------------------------------------- shrink, report
def still_fails(world: SimWorld, scenario: Scenario, name: str, **kwargs: Any) -> bool:
    return any(f.invariant == name for f in run_one(world, scenario, **kwargs).failures)


def shrink(world: SimWorld, scenario: Scenario, name: str, *, budget_s: float = 60.0, **kwargs: Any) -> Scenario:
    """Drops steps (never the org's creation nor the end) while the scenario still breaks `name`."""
    deadline = time.monotonic() + budget_s
    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        index = len(scenario.steps) - 2
        while index >= 1 and time.monotonic() < deadline:
            smaller = scenario.without(index)
            if still_fails(world, smaller, name, **kwargs):
                scenario, changed = smaller, True
            index -= 1
    return scenario


def replay_command(seed: int) -> str:
    return f"make sim SEED={seed} SCENARIOS=1"


def report(world: SimWorld, outcome: Outcome, scenario: Scenario, *, budget_s: float = 60.0, **kwargs: Any) -> str:
    first = outcome.failures[0]
    small = shrink(world, scenario, first.invariant, budget_s=budget_s, **kwargs)
    lines = [
        f"invariant {first.invariant} broken in scenario seed {scenario.seed}: {first.detail}",
        f"shortest reproduction found ({len(small.steps)} of {len(scenario.steps)} steps, faults {small.faults}):",
        *(f"  {step.describe()}" for step in small.steps),
        f"replay: {replay_command(scenario.seed)}",
    ]
    return "\n".join(lines)
