"""The monthly invoice run, step by step. Every step is idempotent per (org, period): a rerun finds
the invoice where the last run left it and does only what is left, so nothing is numbered, stored,
charged or announced twice. Assembly reads running aggregates (per period, project, platform), never
ledger entries, so its cost does not grow with the ledger."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared import keys
from shared.auth import Caller
from shared.clock import Clock, iso
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository
from shared.errors import ConcurrentUpdateError, ConflictError, NotFoundError
from shared.invoices.figures import (
    day_of,
    metric_label,
    metric_unit,
    stripe_payments,
    stripe_unpaid_minor,
    unit_price_of,
    wallet_paid_minor,
)
from shared.invoices.models import (
    CUSTOMER_STATUSES,
    BillTo,
    DocumentKind,
    DocumentUrl,
    Invoice,
    InvoiceLine,
    Payment,
    Totals,
    WalletStatement,
)
from shared.invoices.render import CSV_CONTENT_TYPE, render_csv, render_pdf
from shared.invoices.repository import DocumentStore, InvoiceRepository
from shared.orgs.models import READ, Org
from shared.orgs.repository import OrgRepository, PeriodRead
from shared.orgs.service import SETTLE_WINDOW, OrgService, period_settled
from shared.outbox import Event, Message, Notice
from shared.pagination import Page
from shared.retry import until_done
from shared.stripe_gateway import Invoice as StripeInvoice
from shared.stripe_gateway import InvoiceLine as StripeLine
from shared.stripe_gateway import StripeGateway
from shared.usage.service import UsageService
from shared.wallet.account import deficit as wallet_deficit
from shared.wallet.platforms import platform_name
from shared.wallet.repository import WalletRepository

# The wallet statement reads the statements of the periods after the invoiced one (to take their movements
# off the balance): one per month since, in one TransactGetItems (at most 100 items).
MAX_LATER_PERIODS = 60
FINALIZE_ATTEMPTS = 8  # about 4 s of jittered backoff (base 20 ms, cap 1 s) before the task fails and the run retries


_INVOICE_ID = re.compile(r"^inv_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


def invoice_id_of(period: Period) -> str:
    return "inv_" + period.key.replace("-", "").replace(":", "")


def period_key_of(invoice_id: str) -> str | None:
    """The period key an invoice id names (None if it names none)."""
    match = _INVOICE_ID.match(invoice_id)
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"


def _period(org: Org, period_key: str) -> Period:
    return period_containing(org, datetime.strptime(period_key, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))


@dataclass(frozen=True)
class _Section:
    """The lines of one section of an invoice and the DynamoDB items read to make them."""

    lines: list[InvoiceLine]
    reads: int


@dataclass(frozen=True)
class _StripeCharges:
    """What Stripe's invoices for the period charged, line by line, and what of it is still open."""

    lines: list[InvoiceLine]
    invoice_ids: list[str]
    total_minor: int
    unpaid_minor: int
    payments: list[Payment]
    due_on: str | None  # the earliest due date of what is still open


class _ProjectNames:
    """Project names for an invoice's lines, each project read once (the reads are counted)."""

    def __init__(self, org_repo: OrgRepository, org_id: str) -> None:
        self._org_repo = org_repo
        self._org_id = org_id
        self._names: dict[str, str] = {}

    @property
    def reads(self) -> int:
        return len(self._names)

    def of(self, project_id: str) -> str:
        """The project's name, or its id when it no longer exists."""
        if project_id not in self._names:
            project = self._org_repo.get_project(self._org_id, project_id)
            self._names[project_id] = project.name if project else project_id
        return self._names[project_id]


def _bills_period(period: Period, stripe_invoice: StripeInvoice) -> bool:
    """Whether a Stripe invoice is part of this period's invoice. A renewal belongs to the period it
    closes (its arrears; its advance is next month's charge, billed on this anniversary); every other
    Stripe invoice to when it was made. Drafts, voided invoices and previews are never part of one."""
    if stripe_invoice.status in ("draft", "void") or stripe_invoice.invoice_id is None:
        return False
    at = (
        stripe_invoice.period_end - 1
        if stripe_invoice.billing_reason == "subscription_cycle"
        else stripe_invoice.period_start
    )
    return period.start <= datetime.fromtimestamp(at, UTC) < period.end


def _wallet_payment(paid_from_wallet: int, deficit: int, period: Period) -> list[Payment]:
    """The wallet's payment, dated the period's last day (it paid each bill as it came)."""
    paid = wallet_paid_minor(paid_from_wallet, deficit)
    on = (period.end - timedelta(seconds=1)).date().isoformat()
    return [Payment(method="wallet", amount_minor=paid, on=on)] if paid else []


def _nothing_to_bill(invoice: Invoice) -> bool:
    """No Stripe invoice, no money line, nothing due: only information (e.g. credits used on Free)."""
    totals = invoice.totals
    statement = invoice.wallet_statement
    # A deficit only carried over (the wallet did not move) was due on an earlier invoice already.
    carried = totals.wallet_deficit_minor if totals and statement is not None and _unmoved(statement) else 0
    return (
        not invoice.stripe_invoice_ids
        and all(line.amount_minor == 0 for line in invoice.lines)
        and (totals is None or (totals.total_minor == 0 and totals.amount_due_minor == carried))
        and (statement is None or _unmoved(statement))
    )


def _unmoved(statement: WalletStatement) -> bool:
    """No movement in the period (the balance only carried over)."""
    moved = (statement.topups_minor, statement.spend_minor, statement.fees_minor, statement.refunds_minor)
    return not any(moved) and not statement.reversals_minor and not statement.adjustments_minor


_SPEND_KINDS = (
    ("Ad spend", "ad_spend"),
    ("Platform fee", "fee"),
    ("Reversed or credited ad spend", "credited_spend"),
    ("Platform fee given back", "credited_fee"),
)


def _spend_row_lines(row: Mapping[str, object], names: _ProjectNames, period: Period, rate: int) -> list[InvoiceLine]:
    """The lines of one platform and project's spend aggregate (kinds with nothing are left out). Fee
    lines show the rate and the spend they apply to; late lines name the period they were spent in."""
    project_id, platform = str(row["project_id"]), str(row["platform"])
    late_for = str(row["late_for"]) if row.get("late_for") else None
    late = f" (late, for the period from {late_for[:10]})" if late_for else ""
    where = f"{platform_name(platform)}, {names.of(project_id)}{late}"
    base_of = {"fee": "ad_spend", "credited_fee": "credited_spend"}  # a fee line's base: the spend it is on
    lines = []
    for kind, field in _SPEND_KINDS:
        if field not in row:
            continue
        fee = {"rate_bps": rate, "base_minor": int(str(row.get(base_of[field], 0)))} if field in base_of else {}
        lines.append(
            InvoiceLine(
                section="ad_spend",
                paid_via="wallet",
                amount_minor=int(str(row[field])),
                project_id=project_id,
                platform=platform,
                late_for=late_for,
                service_start=late_for or iso(period.start),
                service_end=None if late_for else iso(period.end),
                description=f"{kind}: {where}" + (" (rounded per bill)" if fee else ""),
                **fee,
            )
        )
    return lines


def statement_of(moved: Mapping[str, int], closing: int) -> WalletStatement:
    """The wallet statement from the period's movements by kind (signed) and its closing balance: the
    opening is what the closing was before them."""
    kinds = ("topups", "spend", "fees", "refunds", "reversals", "adjustments")
    figures = {f"{kind}_minor": moved.get(kind, 0) for kind in kinds}
    return WalletStatement(opening_minor=closing - sum(figures.values()), closing_minor=closing, **figures)


@dataclass(frozen=True)
class Assembled:
    """An invoice's content: lines, totals, the Stripe invoices it cites, the wallet statement, and the
    DynamoDB items read to make it (constant in the ledgers' size)."""

    lines: list[InvoiceLine]
    totals: Totals
    stripe_invoice_ids: list[str]
    wallet_statement: WalletStatement | None
    reads: int


def _subscription_lines(stripe_invoice: StripeInvoice) -> list[InvoiceLine]:
    """Stripe's lines as Stripe shows them: quantity x unit price, the service period, Stripe's number."""
    return [
        InvoiceLine(
            section="subscription",
            description=line.description,
            amount_minor=line.amount_minor,
            paid_via="stripe",
            quantity=line.quantity,
            unit=_stripe_unit(line),
            unit_price_minor=unit_price_of(line),
            service_start=iso(datetime.fromtimestamp(line.period_start, UTC)),
            service_end=iso(datetime.fromtimestamp(line.period_end, UTC)),
            stripe_invoice_id=stripe_invoice.invoice_id,
            stripe_invoice_number=stripe_invoice.number,
        )
        for line in stripe_invoice.lines
    ]


def _stripe_unit(line: StripeLine) -> str | None:
    """What the quantity of a Stripe line counts: our overage's metric, a proration; a subscription
    price's quantity (the plan, seats) is shown bare, with its unit price per month."""
    if line.metric is not None:
        return metric_unit(line.metric)
    return "prorated" if line.proration else None


@dataclass(frozen=True)
class InvoiceSources:
    """Where an invoice's lines come from besides Stripe: the credit, wallet and usage books."""

    credits: CreditRepository
    wallet: WalletRepository
    usage: UsageService


class InvoiceService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: InvoiceRepository,
        sources: InvoiceSources,
        gateway: StripeGateway,
        documents: DocumentStore,
        clock: Clock,
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._credits = sources.credits
        self._wallet = sources.wallet
        self._usage = sources.usage
        self._gateway = gateway
        self._documents = documents
        self._clock = clock

    def _read(self, org_id: str, period_key: str, *, with_org: bool = True) -> tuple[PeriodRead, Invoice | None]:
        """The period's invoice as stored (None: not closed) with its listing on the run's index, and the org
        unless `with_org` is False: one round trip (a step reads what it needs at once)."""
        sk = keys.invoice_sk(period_key)
        read = self._org_repo.read_period(org_id, period_key, with_org=with_org, also=[sk])
        item = read.items.get(sk)
        return read, self._repo.of_item(item) if item else None

    @staticmethod
    def _org_and_period(read: PeriodRead, period_key: str) -> tuple[Org, Period]:
        """The org and the period a key names: from the org's anchor, unless a new subscription cut it short."""
        org, cut = read.require_org(), read.truncated_end
        if cut is None:
            return org, _period(org, period_key)
        start = datetime.strptime(period_key, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return org, Period(start=start, end=datetime.strptime(cut, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))

    @staticmethod
    def _found(invoice: Invoice | None, org_id: str, period_key: str) -> Invoice:
        if invoice is None:
            raise NotFoundError(f"No invoice for {org_id} and period {period_key}.", code="invoice_not_found")
        return invoice

    def _invoice(self, org_id: str, period_key: str) -> Invoice:
        return self._found(self._repo.get(org_id, period_key), org_id, period_key)

    def _status_after(self, wrote: bool, status: str, org_id: str, period_key: str) -> str:
        """A step's answer: the status its conditional write set, or (the write's condition failed: another
        run moved the invoice first) the stored one."""
        return status if wrote else self._invoice(org_id, period_key).status

    # ------------------------------------------------------------------ steps (the state machine's tasks)
    def close(self, org_id: str, period_key: str) -> str:
        """Freezes the period: its invoice exists from now on, as a draft, and the next period is listed for
        the next run. A rerun that finds the invoice past its draft answers its status and writes nothing: the
        run finalizes only after a close returned, and every close lists the next period before it returns."""
        read, stored = self._read(org_id, period_key)
        org, period = self._org_and_period(read, period_key)
        if not period_settled(period.end, self._clock.now()):
            raise ConflictError(
                f"The period {period.key} ends at {iso(period.end)}: its invoice is made once it has ended and "
                f"settled ({SETTLE_WINDOW} later), so it holds the renewal and the period's last spend.",
                code="period_not_ended",
            )
        if period.key != period_key:  # the key names a period of another anchor: its invoice was not read
            stored = self._repo.get(org_id, period.key)
        if stored is not None and stored.status != "draft":
            return stored.status
        made = stored is None and self._repo.create_draft(self._draft(org, period))
        self._orgs.index_period_of(org, period.end)  # the next period, for the next run
        return self._status_after(made or stored is not None, "draft", org_id, period.key)

    def _draft(self, org: Org, period: Period) -> Invoice:
        """The period's invoice as its close makes it: the org's details frozen, no lines yet."""
        plan = self._orgs.subscribed_plan(org)
        return Invoice(
            invoice_id=invoice_id_of(period),
            org_id=org.org_id,
            period_key=period.key,
            period_start=iso(period.start),
            period_end=iso(period.end),
            status="draft",
            currency=org.currency,
            bill_to_name=org.name,
            bill_to=BillTo(name=org.name, **(org.billing_details.model_dump() if org.billing_details else {})),
            billing_mode=org.billing_mode.value,
            plan_name=plan.name,
            created_at=iso(self._clock.now()),
        )

    def collect(self, org_id: str, period_key: str) -> str:
        """The draft's lines and totals (the invoice and the org read in one round trip)."""
        read, stored = self._read(org_id, period_key)
        invoice = self._found(stored, org_id, period_key)
        if invoice.status == "draft":
            made = self.assemble(*self._org_and_period(read, period_key))
            content = {
                "lines": made.lines,
                "totals": made.totals,
                "stripe_invoice_ids": made.stripe_invoice_ids,
                "wallet_statement": made.wallet_statement,
                "reads": made.reads,
            }
            saved = self._repo.save(invoice.model_copy(update=content), expected_status="draft")
            return self._status_after(saved, "draft", org_id, period_key)
        return invoice.status

    def finalize(self, org_id: str, period_key: str) -> str:
        """Numbers the invoice (gapless, per year) - unless there is nothing to bill: then the period is
        recorded as `empty` and no invoice is issued (no 0.00 invoice and notification every month)."""
        stored, counters = self._repo.get_to_number(org_id, period_key)  # with its year's counter, at once
        invoice = self._found(stored, org_id, period_key)
        if invoice.status == "draft" and _nothing_to_bill(invoice):
            closed = self._repo.close_empty(invoice)
            self._org_repo.unindex_period(org_id, period_key)  # done: no run sends it again
            return self._status_after(closed, "empty", org_id, period_key)
        if invoice.status == "draft":
            stamped = invoice.model_copy(update={"finalized_at": iso(self._clock.now())})
            year = int(invoice.period_end[:4])
            # The year's number counter is one item every finalize writes: under a scaled-out run its
            # transactions conflict (TransactionConflict), so they are retried here with backoff (the counter
            # read with the invoice serves the first attempt only: a retry reads it again).
            numbered = until_done(
                lambda: self._repo.finalize(stamped, year=year, counter=counters.pop(year, None)),
                retry_on=(ConcurrentUpdateError,),
                attempts=FINALIZE_ATTEMPTS,
                busy="The invoice number counter stayed busy; the run retries this org.",
                base=0.02,
                cap=1.0,
            )
            return self._status_after(numbered, "finalized", org_id, period_key)
        if invoice.status == "empty":  # a finalize cut short between its record and the unlisting
            self._org_repo.unindex_period(org_id, period_key)
        return invoice.status

    def render(self, org_id: str, period_key: str) -> str:
        invoice = self._invoice(org_id, period_key)
        if invoice.status == "finalized":
            base = f"invoices/{org_id}/{invoice.period_key[:10]}/{invoice.number}"
            self._documents.put(f"{base}.pdf", render_pdf(invoice), "application/pdf")
            self._documents.put(f"{base}.csv", render_csv(invoice), CSV_CONTENT_TYPE)
            saved = self._repo.save(
                invoice.model_copy(update={"status": "rendered", "pdf_key": f"{base}.pdf", "csv_key": f"{base}.csv"}),
                expected_status="finalized",
            )
            return self._status_after(saved, "rendered", org_id, period_key)
        return invoice.status

    def issue(self, org_id: str, period_key: str) -> str:
        read, stored = self._read(org_id, period_key, with_org=False)  # the invoice and its listing at once
        invoice = self._found(stored, org_id, period_key)
        if invoice.status == "rendered":
            issued = invoice.model_copy(update={"status": "issued", "issued_at": iso(self._clock.now())})
            totals = issued.totals
            detail = {
                "org_id": org_id,
                "invoice_id": issued.invoice_id,
                "number": issued.number,
                "period_key": issued.period_key,
                "currency": issued.currency,
                "total_minor": totals.total_minor if totals else 0,
                "amount_due_minor": totals.amount_due_minor if totals else 0,
            }
            announced: list[Message] = [
                Event("Invoice.Issued", detail),
                Notice(
                    "Invoice.Issued",
                    f"Layers invoice {issued.number}",
                    "Your monthly Layers invoice is ready (PDF and CSV in Billing).",
                    detail,
                ),
            ]
            # Issued and announced in one transaction: only the run that moved it announces.
            moved = self._repo.issue(issued, announced, self._clock.now())
            status = self._status_after(moved, "issued", org_id, period_key)
        else:
            status = invoice.status
        if status == "issued" and read.listed:
            # Off the run's index (after the issue: should this be lost, a rerun finds it issued and still
            # listed, and unlists it; one that finds it unlisted writes nothing).
            self._org_repo.unindex_period(org_id, period_key)
        return status

    def record_failure(self, org_id: str, period_key: str, error: str) -> None:
        """A failed org: recorded for the alarm and for a rerun; the others go on."""
        self._credits.set_period_fields(
            org_id, period_key, {"invoice_run_error": error[:500], "invoice_run_failed_at": iso(self._clock.now())}
        )

    # ------------------------------------------------------------------ assembly
    def assemble(self, org: Org, period: Period) -> Assembled:
        """The invoice's lines and totals from running aggregates and Stripe's invoices for the period,
        with the number of DynamoDB items read (constant in the ledger's size)."""
        charged = self._stripe_charges(org, period)
        names = _ProjectNames(self._org_repo, org.org_id)
        credits = self._credit_lines(org, period, names)
        usage = self._usage_lines(org, period)
        # Read in either mode: an org that left agency mode is still billed for its agency spend, and
        # owes what late bills took its wallet below zero.
        spend = self._ad_spend_lines(org, period, names)
        statement = self._wallet_statement(org, period)
        deficit = wallet_deficit(statement.closing_minor) if statement else 0
        wallet_paid = sum(line.amount_minor for line in spend.lines)
        totals = Totals(
            charged_through_stripe_minor=charged.total_minor,
            stripe_unpaid_minor=charged.unpaid_minor,
            paid_from_wallet_minor=wallet_paid,
            total_minor=charged.total_minor + wallet_paid,
            wallet_deficit_minor=deficit,
            amount_due_minor=charged.unpaid_minor + deficit,
            payments=charged.payments + _wallet_payment(wallet_paid, deficit, period),
            due_on=charged.due_on,
        )
        lines = charged.lines + credits.lines + usage.lines + spend.lines
        reads = credits.reads + usage.reads + spend.reads + names.reads + 1  # + the statement
        return Assembled(lines, totals, charged.invoice_ids, statement, reads)

    def _stripe_charges(self, org: Org, period: Period) -> _StripeCharges:
        """The lines and amounts of the period's Stripe invoices (none without a Stripe customer)."""
        if not org.stripe_customer_id:
            return _StripeCharges(lines=[], invoice_ids=[], total_minor=0, unpaid_minor=0, payments=[], due_on=None)
        ours = [
            stripe_invoice
            for stripe_invoice in sorted(
                self._gateway.list_invoices(customer_id=org.stripe_customer_id),
                key=lambda i: (i.period_start, i.invoice_id or ""),
            )
            if _bills_period(period, stripe_invoice)
        ]
        return _StripeCharges(
            lines=[line for stripe_invoice in ours for line in _subscription_lines(stripe_invoice)],
            invoice_ids=[str(stripe_invoice.invoice_id) for stripe_invoice in ours],
            total_minor=sum(stripe_invoice.total_minor for stripe_invoice in ours),
            unpaid_minor=sum(map(stripe_unpaid_minor, ours)),
            payments=sorted((paid for i in ours for paid in stripe_payments(i)), key=lambda paid: paid.on or ""),
            due_on=min((day_of(i.due_date) or "" for i in ours if stripe_unpaid_minor(i) and i.due_date), default=None),
        )

    def _credit_lines(self, org: Org, period: Period, names: _ProjectNames) -> _Section:
        """One information line per project: the credits it consumed and where they came from."""
        projects = self._credits.project_periods(org.org_id, period.key)
        lines = []
        for row in sorted(projects, key=lambda r: str(r["project_id"])):
            project_id = str(row["project_id"])
            used = int(row.get("used", 0))
            lines.append(
                InvoiceLine(
                    section="credits",
                    paid_via="info",
                    amount_minor=0,
                    quantity=used,
                    unit="credits",
                    service_start=iso(period.start),
                    service_end=iso(period.end),
                    project_id=project_id,
                    description=f"{names.of(project_id)}: {int(row.get('included_used', 0)):,} included, "
                    f"{int(row.get('packs_used', 0)):,} from packs, {int(row.get('overage', 0)):,} overage",
                )
            )
        return _Section(lines=lines, reads=len(projects))

    def _usage_lines(self, org: Org, period: Period) -> _Section:
        """One information line per usage allowance gone over (the overage itself is billed by Stripe)."""
        lines = [
            InvoiceLine(
                section="usage",
                paid_via="info",
                amount_minor=0,
                quantity=allowance.overage,
                unit=metric_unit(allowance.metric),
                unit_price_minor=None if allowance.unit_price_minor is None else Decimal(allowance.unit_price_minor),
                service_start=iso(period.start),
                service_end=iso(period.end),
                description=f"{metric_label(allowance.metric)} over allowance: {allowance.used:,} used, "
                f"{allowance.included:,} included (billed through Stripe)",
            )
            for allowance in self._usage.allowances_of(org, period)
            if allowance.overage
        ]
        return _Section(lines=lines, reads=1)

    def _ad_spend_lines(self, org: Org, period: Period, names: _ProjectNames) -> _Section:
        """Ad spend and platform fee per platform and project, both paid from the wallet: the period's own,
        then what was recorded for earlier periods after their invoices were made (`late_for`), with the
        reversals and platform credits of each as their own lines."""
        spend = self._wallet.period_spend(org.org_id, period.key)
        rate = self._orgs.subscribed_plan(org).platform_fee_bps or 0
        order = sorted(spend, key=lambda r: (str(r.get("late_for", "")), str(r["platform"]), str(r["project_id"])))
        lines = [line for row in order for line in _spend_row_lines(row, names, period, rate)]
        return _Section(lines=lines, reads=len(spend))

    def project_lines(self, org: Org, period: Period, project_id: str) -> list[InvoiceLine]:
        """The project's credits and ad-spend lines as the period's invoice would have them from the books
        now (the same assembly as `assemble`: a client statement of a period not invoiced yet)."""
        names = _ProjectNames(self._org_repo, org.org_id)
        lines = self._credit_lines(org, period, names).lines + self._ad_spend_lines(org, period, names).lines
        return [line for line in lines if line.project_id == project_id]

    def _wallet_statement(self, org: Org, period: Period) -> WalletStatement | None:
        """The wallet over the period: the movements attributed to it by kind, and its closing balance
        (the balance now less the movements attributed to later periods: one snapshot read of the wallet
        and the statements). None for an org without a wallet."""
        later: list[str] = []
        at = period.end
        while at <= self._clock.now() and len(later) < MAX_LATER_PERIODS:
            later.append(period_containing(org, at).key)
            at = period_containing(org, at).end
        read = self._wallet.statement(org.org_id, period.key, later)
        return None if read is None else statement_of(read.moved, read.closing)

    def stored(self, org_id: str, period_key: str) -> Invoice | None:
        """The period's invoice as stored, any status (None: its period is not closed)."""
        return self._repo.get(org_id, period_key)

    # ------------------------------------------------------------------ reads (people)
    def list(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[Invoice]:
        self._orgs.access(caller, org_id, READ, support=True)
        return self._repo.list(org_id, cursor, limit)

    def get(self, caller: Caller, org_id: str, invoice_id: str) -> Invoice:
        """One read by key: the id names its period (`inv_<period start, compact>`), however old it is."""
        self._orgs.access(caller, org_id, READ, support=True)
        period_key = period_key_of(invoice_id)
        invoice = self._repo.get(org_id, period_key) if period_key else None
        if invoice is None or invoice.invoice_id != invoice_id or invoice.status not in CUSTOMER_STATUSES:
            raise NotFoundError(f"Invoice {invoice_id} was not found.", code="invoice_not_found")
        return invoice

    def download(self, caller: Caller, org_id: str, invoice_id: str, kind: DocumentKind) -> DocumentUrl:
        invoice = self.get(caller, org_id, invoice_id)
        key = invoice.pdf_key if kind == "pdf" else invoice.csv_key
        if key is None:
            raise NotFoundError("The invoice's documents are not rendered yet.", code="document_not_ready")
        return DocumentUrl(url=self._documents.url(key, f"{invoice.number}.{kind}"), expires_in=900)
