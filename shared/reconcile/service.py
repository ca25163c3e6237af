"""Reconciliation: for an org and a range of days, every check of shared/reconcile/checks.py, with both
sides gathered from our books (DynamoDB) and from Stripe (read within its limits); what disagrees is kept
as a discrepancy (one per kind and scope), what agrees again is resolved. Idempotent: a second run over
the same range and state writes nothing.

Auto-corrected (models.AUTO_CORRECTED), because the rule is the one a lost Stripe webhook would have run,
keyed by Stripe's own ids so it can never apply twice: a succeeded top-up payment our record names but the
wallet never credited, and refunds or disputes Stripe shows on a credited top-up that the wallet did not
take. Nothing else is corrected: which side is right needs a person."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.clock import Clock, iso
from shared.credits.periods import Period, period_containing
from shared.invoices.models import Invoice
from shared.invoices.repository import InvoiceRepository
from shared.orgs.models import Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event
from shared.reconcile import checks
from shared.reconcile.models import AUTO_CORRECTED, Discrepancy, DiscrepancyKind, Finding, OrgReport
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.stripe_reads import Checkpoint, MemoryCheckpoint, StripeReads
from shared.stripe_gateway import DISPUTE_INQUIRIES
from shared.usage.billing import OverageBilling
from shared.wallet.models import Hold, StoredWallet, TopUp
from shared.wallet.repository import WalletRepository
from shared.wallet.service import WalletService, bill_period_key

RUN_SCOPE = "run:reconcile"  # the scope of a reconcile_failed discrepancy
SNAPSHOT_TRIES = 3  # reads of the wallet and its holds before the last one is taken as it is
SPEND_RECHECK_DAYS = 7  # reports of the days before the range are looked at again (late bills close them)


@dataclass(frozen=True)
class Books:
    """Where our side comes from."""

    orgs: OrgRepository
    wallet: WalletRepository
    invoices: InvoiceRepository
    repo: ReconcileRepository


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


class Reconciler:
    def __init__(
        self,
        orgs: OrgService,
        books: Books,
        wallet: WalletService,
        overage: OverageBilling,
        reads: StripeReads,
        clock: Clock,
    ):
        self._orgs = orgs
        self._books = books
        self._repo = books.repo
        self._wallet = wallet
        self._overage = overage
        self._reads = reads
        self._clock = clock

    @property
    def stripe_reads(self) -> int:
        return self._reads.requests

    # ------------------------------------------------------------------ one org
    def reconcile_org(
        self, org_id: str, day_from: date, day_to: date, checkpoint: Checkpoint | None = None
    ) -> OrgReport:
        """Every check for the org over [day_from, day_to), and the open discrepancies' scopes again;
        discrepancies opened, kept or resolved. Idempotent."""
        org = self._books.orgs.get_org(org_id)
        if org is None:
            return OrgReport(org_id, frozenset(), ())
        span = (day_start(day_from), day_start(day_to))
        open_now = self._repo.all_of_org(org_id, status="open")
        stored, lines, holds = self._wallet_snapshot(org_id)
        findings, scopes = self._payments(org, span, open_now, checkpoint or MemoryCheckpoint({}))
        for found, checked in (
            self._wallet_books(org, stored, lines, holds),
            self._overage_checks(org, span, open_now),
            self._invoice_checks(org, span, lines, open_now),
            self._spend_checks(org, day_from, day_to, lines, open_now),
        ):
            findings += found
            scopes |= checked
        scopes.add(RUN_SCOPE)  # a run that got this far closes an earlier run's failure
        findings, corrected, kept = self._corrected(org, findings)
        opened, resolved = self._record(org, findings, scopes, open_now, corrected)
        opened += kept
        return OrgReport(org_id, frozenset(scopes), tuple(findings), opened, resolved, len(corrected), tuple(corrected))

    # ------------------------------------------------------------------ wallet <-> Stripe
    def _payments(
        self, org: Org, span: tuple[datetime, datetime], open_now: list[Discrepancy], checkpoint: Checkpoint
    ) -> tuple[list[Finding], set[str]]:
        if not org.stripe_customer_id:
            return [], set()
        topups = {t.payment_intent_id: t for t in self._books.repo.topups(org.org_id) if t.payment_intent_id}
        credited = self._books.repo.credited(org.org_id)
        created = (int(span[0].timestamp()), int(span[1].timestamp()))
        intents = {p.intent_id for p in self._reads.wallet_intents_in(created, checkpoint, org.stripe_customer_id)}
        intents |= {
            pi
            for pi, t in topups.items()
            if t.credited_at and span[0].isoformat() <= t.credited_at < span[1].isoformat()
        }
        intents |= self._moved_in(org, created, set(topups))
        intents |= {d.scope.removeprefix("payment:") for d in open_now if d.scope.startswith("payment:")}
        findings: list[Finding] = []
        for intent_id in sorted(intents):
            findings += self._payment(org, intent_id, topups.get(intent_id), intent_id in credited)
        return findings, {f"payment:{i}" for i in intents}

    def _moved_in(self, org: Org, created: tuple[int, int], ours: set[str]) -> set[str]:
        """Our intents with a refund or dispute made or closed in the range (a dashboard refund of an old
        top-up, a dispute won), and the org's top-up intents that succeeded in it, whatever day they were
        created (a card confirmed after midnight, a bank transfer funded in its last part days later)."""
        moved = self._reads.payments_moved_in(created)
        touched = {r.payment_intent_id for r in self._reads.refunds_in(created)}
        touched |= {d.payment_intent_id for d in self._reads.disputes_in(created)}
        touched |= {m.payment_intent_id for m in moved if m.type != "payment_intent.succeeded"}
        found = {i for i in touched if i in ours}
        return found | {
            m.payment_intent_id
            for m in moved
            if m.type == "payment_intent.succeeded"
            and m.payment_intent_id
            and m.metadata.get("kind") == "wallet_topup"
            and m.customer_id == org.stripe_customer_id
        }

    def _payment(self, org: Org, intent_id: str, topup: TopUp | None, credited: bool) -> list[Finding]:
        read = self._reads.payment(intent_id)
        stripe = read[1] if read else None
        ours = None
        if topup is not None and credited:
            ours = checks.WalletPayment(
                topup.topup_id, topup.amount_minor, topup.refunded_minor, topup.disputed_minor, topup.currency
            )
        return checks.payment(org.org_id, intent_id, stripe, ours)

    def _corrected(self, org: Org, findings: list[Finding]) -> tuple[list[Finding], list[Finding], int]:
        """Applies the unambiguous corrections; returns the findings that remain, those corrected, and how
        many of the remaining were opened here. Each is kept open before it is corrected, so a run that dies
        after the correction leaves it found (its next run resolves it)."""
        remaining, corrected, opened = [], [], 0
        for finding in findings:
            auto = finding.kind in AUTO_CORRECTED
            fresh = self._open(org.currency, finding, self._clock.now()) if auto else 0
            if auto and self._correct(org, finding):
                corrected.append(finding)
            else:
                remaining.append(finding)
                opened += fresh
        return remaining, corrected, opened

    def _correct(self, org: Org, finding: Finding) -> bool:
        """What the lost webhook would have done, through the same idempotent service call; True when the
        payment agrees afterwards."""
        intent_id = finding.scope.removeprefix("payment:")
        read = self._reads.payment(intent_id)
        if read is None:
            return False
        intent, stripe = read
        if finding.kind is DiscrepancyKind.PAYMENT_NOT_CREDITED:
            topup = self._wallet.topup_for(intent)
            if topup is None or intent.status != "succeeded":
                return False  # no record of ours names this payment: a person decides
            self._wallet.topup_succeeded(
                org_id=org.org_id,
                topup_id=topup.topup_id,
                payment_intent_id=intent.intent_id,
                charge_id=intent.latest_charge_id,
                amount_minor=stripe.kept_minor,
            )
        # a payment credited now takes its refunds and disputes in the same pass (their webhooks came
        # before the credit, or were lost with it)
        credit = finding.kind is DiscrepancyKind.PAYMENT_NOT_CREDITED
        if intent.latest_charge_id and (credit or finding.kind is DiscrepancyKind.REFUND_NOT_REFLECTED):
            self._wallet.refunds_in_stripe(self._reads.charge_refunds(intent.latest_charge_id))
        if intent.latest_charge_id and (credit or finding.kind is DiscrepancyKind.DISPUTE_NOT_REFLECTED):
            self._disputes(intent.latest_charge_id, stripe.disputes)
        topup = next((t for t in self._books.repo.topups(org.org_id) if t.payment_intent_id == intent_id), None)
        credited = intent_id in self._books.repo.credited(org.org_id)
        return not self._payment(org, intent_id, topup, credited)

    def _disputes(self, charge_id: str, disputes: Mapping[str, tuple[int, str | None]]) -> None:
        for dispute_id, (amount, status) in disputes.items():
            if status in DISPUTE_INQUIRIES:
                continue  # an inquiry took no money: nothing to take back
            self._wallet.dispute(charge_id=charge_id, dispute_id=dispute_id, amount_minor=amount)
            if status == "won":
                self._wallet.dispute_won(charge_id=charge_id, dispute_id=dispute_id, amount_minor=amount)

    # ------------------------------------------------------------------ wallet <-> itself
    def _wallet_snapshot(self, org_id: str) -> tuple[StoredWallet | None, list[Any], list[Hold]]:
        """The wallet, its ledger lines and pending holds as one consistent state while the wallet stays
        live: the wallet is read first and only the lines up to its `seq` are kept (a bill recorded
        meanwhile is in neither); the holds are read again if `held` changed while they were read."""
        for _ in range(SNAPSHOT_TRIES):
            stored = self._books.wallet.get(org_id)
            seq = stored.head.seq if stored else 0
            lines = [line for line in self._books.repo.entry_lines(org_id) if line.seq <= seq]
            holds = self._books.repo.pending_holds(org_id)
            again = self._books.wallet.get(org_id)
            if stored is None or again is None or again.account.held == stored.account.held:
                break
        return stored, lines, holds

    def _wallet_books(
        self, org: Org, stored: StoredWallet | None, lines: list[Any], holds: list[Hold]
    ) -> tuple[list[Finding], set[str]]:
        if stored is None:
            return [], set()
        books = checks.WalletBooks(
            balance=stored.account.balance,
            entries_sum=sum(line.amount for line in lines),
            held=stored.account.held,
            floor=stored.account.floor,
            stored_available=stored.stored_available,
            pending_holds={h.hold_id: (h.open_minor, h.expires_at) for h in holds},
        )
        now = self._clock.now()
        found = checks.wallet(org.org_id, books, iso(now), iso(now - checks.HOLD_EXPIRY_GRACE))
        scopes = {"wallet:balance", "wallet:available", "wallet:held"} | {f"hold:{h.hold_id}" for h in holds}
        return found, scopes | {"hold:*"}

    # ------------------------------------------------------------------ credits and usage <-> Stripe
    def _closed_periods(self, org: Org, span: tuple[datetime, datetime], open_now: list[Discrepancy]) -> list[Period]:
        """The org's periods that ended in the range (and before now), and those of its open overage
        discrepancies whatever the range (a fixed cause closes on the next daily run)."""
        if org.subscription is None:
            return []
        found: dict[str, Period] = {}
        at = span[0] - timedelta(seconds=1)
        while at < span[1]:
            period = period_containing(org, at)
            if span[0] <= period.end <= min(span[1], self._clock.now()):
                found[period.key] = period
            at = period.end
        for key in _open_keys(open_now, "overage"):
            period = period_containing(org, datetime.strptime(key, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
            if period.key == key and period.end <= self._clock.now():
                found[key] = period
        return list(found.values())

    def _overage_checks(
        self, org: Org, span: tuple[datetime, datetime], open_now: list[Discrepancy]
    ) -> tuple[list[Finding], set[str]]:
        periods = self._closed_periods(org, span, open_now)
        if not periods or not org.stripe_customer_id:
            return [], set()
        items = self._reads.overage_items(org.stripe_customer_id, org.org_id)
        found: list[Finding] = []
        for period in periods:
            billed: dict[str, list[int]] = {}
            for item in items:  # billing_key: overage:<org>:<period key>:<metric>
                key, _, metric = item.metadata["billing_key"].removeprefix(f"overage:{org.org_id}:").rpartition(":")
                if key == period.key and metric != "credits_late":
                    billed.setdefault(metric, []).append(item.amount_minor)
            found += checks.overage(org.org_id, period.key, self._overage.owed(org, period), billed)
        return found, {f"overage:{p.key}:*" for p in periods}

    # ------------------------------------------------------------------ invoices <-> sources
    def _invoices(self, org_id: str) -> list[Invoice]:
        found: list[Invoice] = []
        cursor: str | None = None
        while True:
            page = self._books.invoices.list(org_id, cursor, 100)
            found += page.items
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    def _invoice_checks(
        self, org: Org, span: tuple[datetime, datetime], lines: list[Any], open_now: list[Discrepancy]
    ) -> tuple[list[Finding], set[str]]:
        """Invoices issued in the range, and those of the open invoice discrepancies whatever the range."""
        invoices = [i for i in self._invoices(org.org_id) if i.status == "issued"]
        reopen = set(_open_keys(open_now, "invoice"))
        found: list[Finding] = []
        scopes: set[str] = set()
        for invoice in invoices:
            issued_in = span[0].isoformat() <= (invoice.issued_at or "") < span[1].isoformat()
            if not issued_in and invoice.period_key not in reopen:
                continue
            found += self._invoice(org, invoice, invoices, lines)
            scopes |= {f"invoice:{invoice.period_key}:wallet", f"invoice:{invoice.period_key}:stripe"}
        return found, scopes

    def _invoice(self, org: Org, invoice: Invoice, issued: list[Invoice], lines: list[Any]) -> list[Finding]:
        key = invoice.period_key
        later = [i for i in issued if i is not invoice and i.period_key > key]
        side = checks.InvoiceWallet(
            lines_minor=_wallet_lines(invoice, None) + sum(_wallet_lines(i, key) for i in later),
            aggregate_minor=self._period_aggregate(org.org_id, key, later),
            recorded_before_minor=_billed_before(org, key, invoice.created_at, lines),
            billed_lines_minor=_wallet_lines(invoice, None, bills=True)
            + sum(_wallet_lines(i, key, True) for i in later),
            carried_later=any(i.period_start >= invoice.period_end for i in issued),
        )
        found = checks.invoice_wallet(org.org_id, key, invoice.invoice_id, side)
        recorded = invoice.totals.charged_through_stripe_minor if invoice.totals else 0
        stripe_total = sum(self._reads.invoice_total(i) for i in invoice.stripe_invoice_ids)
        return found + checks.invoice_stripe(org.org_id, key, invoice.invoice_id, recorded, stripe_total)

    def _period_aggregate(self, org_id: str, key: str, later: list[Invoice]) -> int:
        """A period's wallet aggregates, net: its own rows, and the rows recorded late for it (kept under the
        later periods whose invoices carried them)."""
        rows = [r for r in self._books.wallet.period_spend(org_id, key) if not r.get("late_for")]
        for other in later:
            rows += [r for r in self._books.wallet.period_spend(org_id, other.period_key) if r.get("late_for") == key]
        kinds = ("ad_spend", "fee", "credited_spend", "credited_fee")
        return sum(int(r.get(kind, 0)) for r in rows for kind in kinds)

    # ------------------------------------------------------------------ platform bills <-> reports
    def _spend_checks(
        self, org: Org, day_from: date, day_to: date, lines: list[Any], open_now: list[Discrepancy]
    ) -> tuple[list[Finding], set[str]]:
        """The reports of the range and the days before it, back to the oldest open spend discrepancy's day."""
        first = min([(day_from - timedelta(days=SPEND_RECHECK_DAYS)).isoformat(), *_open_keys(open_now, "spend")])
        reports = self._repo.reports(org.org_id, first, day_to.isoformat())
        if not reports:
            return [], set()
        billed = billed_by_day(lines)
        found = checks.spend(org.org_id, reports, billed, self._clock.now().date(), org.currency)
        return found, {f"spend:{r.day}:{r.platform}:{r.project_id}" for r in reports}

    # ------------------------------------------------------------------ keeping what was found
    def _record(
        self, org: Org, findings: list[Finding], scopes: set[str], open_now: list[Discrepancy], corrected: list[Finding]
    ) -> tuple[int, int]:
        now = self._clock.now()
        opened = sum(self._open(org.currency, f, now) for f in findings)
        seen = {f.key for f in findings}
        resolved = 0
        for gone in open_now:
            if f"{gone.kind.value}#{gone.scope}" not in seen and _covered(gone.scope, scopes):
                resolved += self._resolve(gone, "agrees", now)
        for fixed in corrected:
            self._open(org.currency, fixed, now)
            stored = self._repo.discrepancy(fixed.org_id, fixed.kind.value, fixed.scope)
            if stored is not None and stored.status == "open":
                resolved += self._resolve(stored, "auto_corrected", now)
        return opened, resolved

    def record_failure(self, org_id: str, error: BaseException) -> int:
        """Keeps an org's reconciliation that raised as a `reconcile_failed` discrepancy (the org is queued
        again while it is open; its next whole run resolves it). 1 if it was not open before."""
        note = f"{type(error).__name__}: {error}"[:500]
        finding = Finding(DiscrepancyKind.RECONCILE_FAILED, org_id, RUN_SCOPE, 0, 0, (type(error).__name__,), note)
        return self._open("", finding, self._clock.now())

    def record_global(self, findings: list[Finding]) -> tuple[int, int]:
        """Findings of no one org (invoice number series): opened, and the open ones not found resolved."""
        now = self._clock.now()
        opened = sum(self._open("", f, now) for f in findings)
        seen = {f.key for f in findings}
        resolved = sum(
            self._resolve(d, "agrees", now)
            for d in self._repo.all_of_org("", status="open")
            if f"{d.kind.value}#{d.scope}" not in seen
        )
        return opened, resolved

    def _open(self, currency: str, finding: Finding, now: datetime) -> int:
        """Keeps a finding as an open discrepancy; 1 if it was not open before (an event goes out)."""
        stored = self._repo.discrepancy(finding.org_id, finding.kind.value, finding.scope)
        same = stored is not None and stored.status == "open"
        if (
            same
            and stored is not None
            and (stored.ours_minor, stored.theirs_minor) == (finding.ours_minor, finding.theirs_minor)
        ):
            return 0  # as it was: a re-run writes nothing
        record = Discrepancy(
            kind=finding.kind,
            org_id=finding.org_id,
            scope=finding.scope,
            ours_minor=finding.ours_minor,
            theirs_minor=finding.theirs_minor,
            currency=currency,
            causes=finding.causes,
            note=finding.note,
            first_seen=stored.first_seen if same and stored else iso(now),
            last_seen=iso(now),
        )
        messages = [] if same else [_event("Reconciliation.DiscrepancyFound", record)]
        self._repo.save(record, was=stored.status if stored else None, messages=messages, now=now)
        return 0 if same else 1

    def _resolve(self, stored: Discrepancy, resolution: str, now: datetime) -> int:
        record = replace(stored, status="resolved", resolved_at=iso(now), resolution=resolution, last_seen=iso(now))
        saved = self._repo.save(
            record, was="open", messages=[_event("Reconciliation.DiscrepancyResolved", record)], now=now
        )
        return int(saved)


def billed_by_day(lines: Iterable[Any]) -> dict[tuple[str, str, str], int]:
    """Ad spend billed per (billed_on, platform, project), from the wallet's ledger lines."""
    billed: dict[tuple[str, str, str], int] = {}
    for line in lines:
        if line.kind == "ad_spend" and line.fields.get("billed_on"):
            key = (str(line.fields["billed_on"]), str(line.fields.get("platform")), str(line.fields.get("project_id")))
            billed[key] = billed.get(key, 0) - line.amount
    return billed


def _wallet_lines(invoice: Invoice, late_for: str | None, bills: bool = False) -> int:
    """What an invoice's wallet lines add up to: its own period's (None), or those recorded late for one;
    `bills`: only the bills' spend and fees (corrections, reversals and platform credits, are negative)."""
    return sum(
        line.amount_minor
        for line in invoice.lines
        if line.paid_via == "wallet" and line.late_for == late_for and (line.amount_minor >= 0 or not bills)
    )


def _billed_before(org: Org, period_key: str, before: str, lines: Iterable[Any]) -> int:
    """Spend and fees of the period's bills recorded before `before` (from the ledger's bill entries)."""
    total = 0
    for line in lines:
        billed_on = line.fields.get("billed_on")
        if line.kind not in ("ad_spend", "platform_fee") or not billed_on or line.created_at >= before:
            continue
        if bill_period_key(org, date.fromisoformat(str(billed_on))) == period_key:
            total -= line.amount
    return total


def _open_keys(open_now: Iterable[Discrepancy], family: str) -> list[str]:
    """The period keys (overage, invoice) or days (spend) the open discrepancies of a family are about:
    the second part of their scope (`overage:<period key>:<metric>`, `spend:<day>:...`)."""
    prefix = f"{family}:"
    return [
        d.scope.removeprefix(prefix).split(":")[0] if family == "spend" else _period_of(d.scope, prefix)
        for d in open_now
        if d.scope.startswith(prefix)
    ]


def _period_of(scope: str, prefix: str) -> str:
    """`<family>:<period key>:<what>`; the period key holds colons itself (a UTC time to the second)."""
    return scope.removeprefix(prefix).rpartition(":")[0]


def _covered(scope: str, scopes: set[str]) -> bool:
    """Was this scope checked in the run (a whole family `<prefix>:*` counts for each of its scopes)?"""
    if scope in scopes:
        return True
    head = scope.rsplit(":", 1)[0]
    return f"{head}:*" in scopes or f"{scope.split(':', 1)[0]}:*" in scopes


def _event(detail_type: str, record: Discrepancy) -> Event:
    return Event(
        detail_type,
        {
            "org_id": record.org_id,
            "kind": record.kind.value,
            "scope": record.scope,
            "ours_minor": record.ours_minor,
            "theirs_minor": record.theirs_minor,
            "currency": record.currency,
            "status": record.status,
        },
    )
