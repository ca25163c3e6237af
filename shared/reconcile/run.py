"""The daily run over every org that moved: found from Stripe's lists of the range (top-up payments,
refunds, disputes), the platforms' spend reports, the invoice run's due lists and the open discrepancies;
queued in the run's items, each org reconciled and marked done. The run keeps its place (Stripe list
cursors after every page, the orgs done), so an invocation that runs out of time is resumed by the next
one (the schedule fires again within the hour) and a finished run is not done twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from shared.observability import logger
from shared.reconcile import checks
from shared.reconcile.models import RunSummary
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.service import SPEND_RECHECK_DAYS, Reconciler, day_start
from shared.reconcile.stripe_reads import StripeReads
from shared.wallet.repository import WalletRepository

RESERVE_S = 60.0  # no org is started with less than this left of the invocation


@dataclass
class RunCheckpoint:
    """The run's state item: list cursors, and the orgs found on the pages read so far (queued with
    the cursor, so a resumed run loses none)."""

    repo: ReconcileRepository
    run_id: str
    state: dict[str, object]
    found: set[str] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)

    def cursor(self, name: str) -> str | None:
        cursors = self.state.get("cursors") or {}
        assert isinstance(cursors, dict)
        value = cursors.get(name)
        return str(value) if value else None

    def save(self, name: str, after: str | None, seen: list[str]) -> None:
        self.repo.queue_orgs(self.run_id, self.found - self.queued - {""})
        self.queued |= self.found
        cursors = dict(self.state.get("cursors") or {})  # type: ignore[call-overload]
        cursors[name] = after or ""
        self.state["cursors"] = cursors
        self.repo.save_run_state(self.run_id, self.state)


class ReconcileRun:
    def __init__(
        self,
        reconciler: Reconciler,
        repo: ReconcileRepository,
        wallet: WalletRepository,
        reads: StripeReads,
        due_orgs: Callable[[date], list[str]],
    ):
        self._reconciler = reconciler
        self._repo = repo
        self._wallet = wallet
        self._reads = reads
        self._due_orgs = due_orgs

    def run(self, day_from: date, day_to: date, seconds_left: Callable[[], float]) -> RunSummary:
        """Reconciles every org that moved in [day_from, day_to). Resumable; a finished run does nothing."""
        run_id = f"{day_from.isoformat()}_{day_to.isoformat()}"
        state = self._repo.run_state(run_id)
        if state.get("phase") == "done":
            return RunSummary(day_from.isoformat(), day_to.isoformat(), done=True, orgs=int(state.get("orgs", 0)))
        if state.get("phase") != "orgs":
            self._discover(run_id, state, day_from, day_to)
        summary = self._reconcile_queued(run_id, day_from, day_to, seconds_left)
        if summary.done:
            summary = self._numbers(summary)
            self._repo.save_run_state(run_id, {**state, "phase": "done", "orgs": summary.orgs})
        return summary

    def _discover(self, run_id: str, state: dict[str, object], day_from: date, day_to: date) -> None:
        checkpoint = RunCheckpoint(self._repo, run_id, state)
        created = (int(day_start(day_from).timestamp()), int(day_start(day_to).timestamp()))
        for intent in self._reads.wallet_intents_in(created, checkpoint):
            checkpoint.found.add(intent.metadata.get("org_id", ""))
        moved = self._reads.payments_moved_in(created)
        checkpoint.found |= {m.metadata.get("org_id", "") for m in moved if m.metadata.get("kind") == "wallet_topup"}
        charges = [r.charge_id for r in self._reads.refunds_in(created)]
        charges += [d.charge_id for d in self._reads.disputes_in(created)]
        charges += [m.charge_id for m in moved if m.type != "payment_intent.succeeded"]
        for charge_id in filter(None, charges):
            link = self._wallet.charge_link(charge_id)
            if link:
                checkpoint.found.add(link[0])
        day = day_from - timedelta(days=SPEND_RECHECK_DAYS)
        while day < day_to:
            checkpoint.found |= self._repo.orgs_reported(day.isoformat())
            if day >= day_from:  # the invoice run's orgs, and those whose wallet moved (a bill only)
                checkpoint.found |= set(self._due_orgs(day)) | self._repo.orgs_with_wallet_activity(day.isoformat())
            day += timedelta(days=1)
        checkpoint.found |= self._repo.orgs_with_open()
        checkpoint.found.discard("")
        self._repo.queue_orgs(run_id, checkpoint.found - checkpoint.queued)
        self._repo.save_run_state(run_id, {**state, "phase": "orgs"})

    def _reconcile_queued(
        self, run_id: str, day_from: date, day_to: date, seconds_left: Callable[[], float]
    ) -> RunSummary:
        totals = {"orgs": 0, "findings": 0, "opened": 0, "resolved": 0, "corrected": 0, "failed": 0}
        by_kind: dict[str, int] = {}
        done = True
        for org_id, finished in self._repo.queued_orgs(run_id):
            if finished:
                continue
            if seconds_left() < RESERVE_S:
                done = False
                break
            try:
                report = self._reconciler.reconcile_org(org_id, day_from, day_to)
            except Exception as error:  # one org's failure is kept, the run goes on
                logger.exception("reconciliation of an org failed", extra={"org_id": org_id, "run_id": run_id})
                totals["opened"] += self._reconciler.record_failure(org_id, error)
                totals["failed"] += 1
                self._repo.org_done(run_id, org_id)
                continue
            self._repo.org_done(run_id, org_id)
            found = (*report.findings, *report.fixed)
            for name, value in (("orgs", 1), ("findings", len(found)), ("opened", report.opened)):
                totals[name] += value
            totals["resolved"] += report.resolved
            totals["corrected"] += report.corrected
            for finding in found:
                by_kind[finding.kind.value] = by_kind.get(finding.kind.value, 0) + 1
        return RunSummary(
            day_from.isoformat(),
            day_to.isoformat(),
            **totals,
            by_kind=by_kind,
            done=done,
            stripe_reads=self._reads.requests,
        )

    def _numbers(self, summary: RunSummary) -> RunSummary:
        """Gapless numbering of every series, once per run (of no one org)."""
        numbers, counters = self._repo.invoice_numbers()
        findings = checks.number_gaps(numbers, counters)
        opened, resolved = self._reconciler.record_global(findings)
        by_kind = dict(summary.by_kind)
        for finding in findings:
            by_kind[finding.kind.value] = by_kind.get(finding.kind.value, 0) + 1
        open_total = self._repo.open_count()
        return RunSummary(
            summary.day_from,
            summary.day_to,
            orgs=summary.orgs,
            findings=summary.findings + len(findings),
            opened=summary.opened + opened,
            resolved=summary.resolved + resolved,
            corrected=summary.corrected,
            failed=summary.failed,
            open_total=open_total,
            stripe_reads=summary.stripe_reads,
            by_kind=by_kind,
            done=True,
        )
