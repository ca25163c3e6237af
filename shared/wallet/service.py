"""The agency wallet: holds for the optimizer, platform bills with the platform fee, low-balance pause /
resume, settings and reads; top-ups (topups.py), auto-top-ups (auto.py) and refunds (refunds.py).

Every money movement is one versioned change through the ledger engine: its entries, the account and
the marker of its cause (`IDEM#<cause>`), so a retried request, a redelivered bill or a replayed Stripe
webhook moves nothing twice. Stripe is called only after our record of the intent exists, with an
idempotency key derived from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from functools import partial

from shared.auth import Caller
from shared.budgets.models import OPEN, BudgetGuard, BudgetTouch
from shared.budgets.repository import BudgetChanged, BudgetRefused, budget_key, budget_of
from shared.budgets.rules import ProjectBudget, spend_budgets
from shared.budgets.service import BudgetService, BudgetState, ProjectBudgetExceededError, crossing_messages
from shared.clock import Clock, iso
from shared.credits.periods import period_containing
from shared.dynamo import Item
from shared.errors import ConcurrentUpdateError, ConflictError, InvalidRequestError, NotFoundError
from shared.ledger import Cause, EntryLine
from shared.orgs.models import MANAGE_BILLING, READ, BillingMode, Org, Project
from shared.orgs.repository import OrgRepository, active_project
from shared.orgs.service import OrgService
from shared.outbox import Message
from shared.pagination import Page
from shared.retry import until_done
from shared.stripe_gateway import StripeGateway
from shared.sweep import SweepReport, sweep_batched
from shared.wallet.account import (
    EntryKind,
    WalletAccount,
    WalletStatus,
    add_spend,
    bill_fee_bps,
    hold_draw,
    hold_expiry,
    platform_fee,
)
from shared.wallet.auto import AutoTopUps
from shared.wallet.models import (
    AutoTopUp,
    BillResult,
    Hold,
    HoldDrawn,
    PeriodSpend,
    RefundResult,
    StoredWallet,
    TopUp,
    TopUpPut,
    WalletChange,
)
from shared.wallet.platforms import platform_name
from shared.wallet.poster import (
    MAX_ATTEMPTS,
    Posted,
    WalletNotAvailableError,
    WalletPoster,
    agency,
    spend_stopped,
    wallet_mode,
)
from shared.wallet.refunds import WalletRefunds
from shared.wallet.repository import (
    MAX_HOLDS_ENDED,
    Duplicate,
    HoldEnded,
    HoldRefused,
    WalletRepository,
    hold_key,
    hold_of,
    hold_packs,
)
from shared.wallet.runway_repository import RunwayRepository
from shared.wallet.runway_watch import RunwayReading, RunwayWatch
from shared.wallet.topups import TopUps

MAX_BUDGET_READS = 20  # a hold reads the project's limits again when they changed meanwhile
MAX_ATTEMPTS_RELEASE = 50  # a release reads the hold again when a bill drew on it meanwhile

__all__ = [
    "Bill",
    "BillReusedError",
    "InsufficientWalletFundsError",
    "WalletNotAvailableError",
    "WalletService",
    "WalletView",
]


class InsufficientWalletFundsError(ConflictError):
    code = "insufficient_wallet_funds"


class BillReusedError(ConflictError):
    """A bill id sent again with other content: final (a retry is refused again), unlike a busy wallet."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class WalletView:
    org: Org
    account: WalletAccount
    auto: AutoTopUp
    runway: RunwayReading  # days, the rate, the next alert stage, the funding suggestion
    budgets: Sequence[BudgetState] = ()  # the projects' budgets this period (those that have one)


@dataclass(frozen=True)
class WalletSettings:
    low_threshold_minor: int
    floor_minor: int
    auto: AutoTopUp | None = None  # enabled, threshold, amount, daily cap (the rest is state); None: as is
    runway_alert_days: tuple[int, ...] | None = None  # the runway's alert stages; None: as they are


@dataclass(frozen=True)
class Bill:
    org_id: str
    platform: str
    bill_id: str
    project_id: str
    amount_minor: int
    currency: str
    billed_on: date
    hold_id: str | None
    actor: str

    @property
    def cause(self) -> str:
        return f"bill:{self.platform}:{self.bill_id}"


def bill_dated(org: Org, billed_on: date) -> datetime:
    """When a bill's spend happened, for its invoice: noon UTC of its date, never before the org's first
    period began."""
    first = org.subscription.billing_anchor if org.subscription else org.created_at
    return max(datetime.combine(billed_on, time_of_day(12), UTC), first)


def bill_period_key(org: Org, billed_on: date) -> str:
    """The period a bill of that date is dated in (its own: a late one is carried to a later invoice)."""
    return period_containing(org, bill_dated(org, billed_on)).key


class WalletService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: WalletRepository,
        gateway: StripeGateway,
        clock: Clock,
        budgets: BudgetService,
    ):
        """Events and notifications leave through the outbox, with the changes that cause them."""
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._gateway = gateway
        self._clock = clock
        self._budgets = budgets
        self._poster = WalletPoster(org_repo, repo, clock)
        self._auto = AutoTopUps(org_repo, repo, gateway, clock, self._poster)
        self._topups = TopUps(orgs, org_repo, repo, gateway, clock, self._poster)
        self._refunds = WalletRefunds(orgs, org_repo, repo, gateway, self._poster)
        self.top_up = self._topups.top_up
        self.topup_succeeded = self._topups.topup_succeeded
        self.topup_failed = self._topups.topup_failed
        self.topup_for = self._topups.topup_for
        self.paid_by = self._topups.paid_by
        self.resume_stalled_auto_top_ups = self._auto.resume_stalled
        self.dispute = self._refunds.dispute
        self.dispute_won = self._refunds.dispute_won
        self.refunds_in_stripe = self._refunds.refunds_in_stripe
        # Spend the platforms reported that no bill covers yet (shared/reconcile), set by the wiring.
        self.unbilled_spend: Callable[[str, date], int] | None = None
        # The watch reads with its own repository: a reader after the change, never part of it.
        self.runway = RunwayWatch(WalletRepository(repo.table), RunwayRepository(repo.table), clock, self._unbilled)
        self._poster.after_commit = self.runway.after_post

    def _unbilled(self, org_id: str, today: date) -> int:
        return self.unbilled_spend(org_id, today) if self.unbilled_spend else 0

    def auto_top_up_failed(self, org_id: str, topup: TopUp, payment_intent_id: str, org: Org | None = None) -> bool:
        """Stripe says an auto-top-up attempt failed after it was made: a failed attempt, counted once.
        `org`: as the caller just read it (`paid_by`; None: read here)."""
        return self._auto.payment_failed(org or self._org_repo.require_org(org_id), topup, payment_intent_id)

    def _with_wallet(self, org: Org) -> Org:
        """Agency orgs, and orgs that left agency mode with a wallet (`_wallet_kept`)."""
        return org if org.billing_mode is BillingMode.AGENCY else _wallet_kept(org, self._repo.get(org.org_id))

    # ------------------------------------------------------------------ reads and settings (people)
    def view(self, caller: Caller, org_id: str) -> WalletView:
        org = self._with_wallet(self._orgs.access(caller, org_id, READ, support=True).org)
        stored = self._poster.load(org)
        return WalletView(org, stored.account, stored.auto, self.runway.read(org, stored), self._budgets.states(org))

    def transactions(
        self, caller: Caller, org_id: str, filters: dict[str, str | None], cursor: str | None, limit: int
    ) -> Page[EntryLine]:
        self._with_wallet(self._orgs.access(caller, org_id, READ, support=True).org)
        return self._repo.lines(org_id, cursor, limit, filters)

    def configure(self, caller: Caller, org_id: str, settings: WalletSettings) -> WalletView:
        """Low-balance threshold, floor and auto-top-up (enabled, threshold, amount, daily cap)."""
        org = agency(self._orgs.access(caller, org_id, MANAGE_BILLING).org)
        if (
            settings.auto
            and settings.auto.enabled
            and not (org.stripe_customer_id and self._gateway.default_card(org.stripe_customer_id))
        ):
            raise ConflictError("Auto-top-up needs a saved card: top up once by card first.", code="no_saved_card")

        def build(stored: StoredWallet) -> WalletChange:
            account = replace(stored.account, low_threshold=settings.low_threshold_minor, floor=settings.floor_minor)
            after, _, _ = account.move()
            wanted = settings.auto
            if wanted is None:
                return WalletChange(after)
            auto = replace(
                stored.auto,
                enabled=wanted.enabled,
                threshold_minor=wanted.threshold_minor,
                amount_minor=wanted.amount_minor,
                daily_cap_minor=wanted.daily_cap_minor,
                failures=0 if wanted.enabled else stored.auto.failures,
            )
            return WalletChange(after, auto=auto)

        if settings.runway_alert_days is not None:
            self.runway.configure(org_id, settings.runway_alert_days)
        self._poster.post(org, build, agency_only=True)
        return self.view(caller, org_id)

    # ------------------------------------------------------------------ holds (optimizer)
    def hold(
        self,
        *,
        org_id: str,
        hold_id: str,
        project_id: str,
        platform: str,
        amount_minor: int,
        expires_at: datetime | None = None,
        retry: bool = True,
    ) -> Hold:
        """Authorizes spend before an ad launches or scales, until `expires_at` (the campaign's end; at most
        HOLD_MAX_LIFETIME; default 24 h). Idempotent by hold_id. InsufficientWalletFundsError (409) when
        `balance - held - floor` does not cover it; ProjectBudgetExceededError (409) when the project's
        ad-spend budget (or its budget on the platform) has not that much left this period."""
        platform_name(platform)
        read = self._org_repo.org_and_project(org_id, project_id, [])  # one round trip
        org = read.org
        self._require_project(org_id, project_id, hold_id, read.project)
        now = self._clock.now()
        period = period_containing(org, now).key
        hold = Hold(hold_id, project_id, platform, amount_minor, "pending", iso(now), iso(hold_expiry(now, expires_at)))
        hold = replace(hold, remaining_minor=amount_minor, budget_period=OPEN)  # held now, whatever the period
        # Reads: the project (above), the budget and this period's counters; the transaction itself checks the
        # mode (the wallet's copy), the funds, the budget (and that what was read is unchanged), a replayed id.
        for _ in range(MAX_BUDGET_READS):
            try:
                checked = self._budgets.check(org_id, project_id, period, spend_budgets(platform), amount_minor)
                touch = BudgetTouch(project_id, OPEN, platform, held=amount_minor, guard=checked.guard)
                self._repo.place_hold(org_id, hold, touch)
            except Duplicate:
                self.runway.check(org_id)  # a retry heals a check that failed after the hold
                return _same_hold(self._repo.hold(org_id, hold_id) or hold, hold)
            except BudgetChanged:
                continue  # the limits changed since read: read them again
            except (BudgetRefused, ProjectBudgetExceededError):
                return self._replay_or(org_id, hold, period)
            except HoldRefused:
                org, stored = self._refused(org_id)
                if retry and self._refusal_passed(org, stored, amount_minor):
                    # What refused it has changed since (the mode copied, a hold released): once more.
                    return self.hold(
                        org_id=org_id,
                        hold_id=hold_id,
                        project_id=project_id,
                        platform=platform,
                        amount_minor=amount_minor,
                        expires_at=expires_at,
                        retry=False,
                    )
                raise self._refusal(org, stored, amount_minor) from None
            self.runway.check(org_id)  # the hold lowers the funds and raises the rate
            return hold
        raise ConcurrentUpdateError("The project's budget is changing; retry.")

    def _require_project(self, org_id: str, project_id: str, hold_id: str, project: Project | None) -> None:
        """A hold is for an active project of the org (`project`, as read), as a credit reservation (404
        project_not_found, 409 project_archived); a replay of a hold made before the project was archived is
        answered as made."""
        try:
            active_project(project_id, project)
        except (NotFoundError, ConflictError):
            made = self._repo.hold(org_id, hold_id)
            if made is None or made.project_id != project_id:
                raise

    def _replay_or(self, org_id: str, hold: Hold, period: str) -> Hold:
        """A hold the budget refuses: the one made before with its id if this is a replay (the budget may
        have been lowered since), else ProjectBudgetExceededError naming the budget and what is left."""
        made = self._repo.hold(org_id, hold.hold_id)
        if made is not None:
            return _same_hold(made, hold)
        names = spend_budgets(hold.platform)
        raise self._budgets.refusal(org_id, hold.project_id, period, names, hold.amount_minor)

    def open_held_minor(self, org_id: str) -> int:
        """What the org's open holds still reserve (the wallet's `held`: the sum of their remainders), for
        the runway and the available figure."""
        stored = self._repo.get(org_id)
        return stored.account.held if stored else 0

    def open_holds(self, org_id: str) -> list[Hold]:
        """The org's open holds, each with what it still reserves (`open_minor`) and when it expires."""
        return self._repo.open_holds(org_id)

    def _refused(self, org_id: str) -> tuple[Org, StoredWallet]:
        """What a refused hold reads again, once, for the retry and the refusal both (what refused it may have
        changed since): the org (404 for an unknown one, 409 wallet_not_available for BYO) and the wallet."""
        org = agency(self._org_repo.require_org(org_id))
        return org, self._poster.load(org)

    def _refusal_passed(self, org: Org, stored: StoredWallet, amount_minor: int) -> bool:
        if stored.version and stored.mode is None:
            # A wallet written before it kept a copy of the mode: copy it (or a racing hold did).
            self._repo.copy_mode(org.org_id, org.billing_mode.value)
            stored = self._poster.load(org)
        open_ = org.agency_spend_open(self._clock.now())
        return wallet_mode(stored, org) is BillingMode.AGENCY and open_ and stored.account.can_hold(amount_minor)

    def _refusal(self, org: Org, stored: StoredWallet, amount_minor: int) -> ConflictError:
        """Why the hold was refused, as the refused hold read it again (`_refused`)."""
        if not org.agency_spend_open(self._clock.now()):
            return spend_stopped()
        account = stored.account
        if account.status is WalletStatus.PAUSED:
            return InsufficientWalletFundsError(
                "Agency spend is paused: the wallet is below its floor.", code="wallet_paused"
            )
        free = max(account.available, 0)
        return InsufficientWalletFundsError(
            f"The wallet cannot cover {amount_minor} (available {free}).",
            details={"available_minor": free, "requested_minor": amount_minor},
        )

    def release_hold(self, *, org_id: str, hold_id: str, expired: bool = False) -> Hold:
        """Ends a hold: what it still holds (its remainder after the bills that drew on it) is free again,
        in the wallet and in its project's budget. Idempotent: an ended hold is returned as it is."""
        self._org_repo.require_org(org_id)
        for _ in range(MAX_ATTEMPTS_RELEASE):
            hold = self._repo.hold(org_id, hold_id)
            if hold is None:
                raise NotFoundError(f"No hold {hold_id}.", code="hold_not_found")
            if hold.status != "pending":
                return hold
            status = "expired" if expired else "voided"
            if self._repo.end_hold(org_id, hold, status, iso(self._clock.now())):
                self.runway.check(org_id, rising=True)  # freed: the runway may rise above a stage (re-armed)
                return replace(hold, status=status)  # as stored: ended on being as read, and final once ended
            # ended concurrently, or a bill drew on it since it was read: read it again
        raise ConcurrentUpdateError("The hold is busy; retry.")

    def expire_holds(self) -> SweepReport:
        """Expires holds past their expiry (the scheduled sweeper), every shard, within the Lambda's time
        budget; one that fails never stops the others (shared/sweep.py)."""

        def expire(item: Item) -> bool:
            org_id, hold = self._repo.listed_hold(item)
            self.release_hold(org_id=org_id, hold_id=hold.hold_id, expired=True)
            return True

        entries = self._repo.expired_holds(iso(self._clock.now()))
        return sweep_batched("wallet holds", entries, self._expire_together, expire, most=MAX_HOLDS_ENDED)

    def _expire_together(self, items: list[Item]) -> int:
        """The listed holds of one wallet, as the index projects them (no reads): one transaction a pack
        (`hold_packs`), each freeing its holds' remainders in the wallet and the budgets. A hold that fell
        out (a bill drew on it, or it ended, since the index listed it) goes the single way, read afresh.
        The runway is checked once, after. How many it expired."""
        listed = [self._repo.listed_hold(item) for item in items]
        org_id, now = listed[0][0], iso(self._clock.now())
        pending = [hold for _, hold in listed if hold.status == "pending"]
        ended: set[str] = set()
        for pack in hold_packs(pending):
            expire_pack = partial(self._repo.end_holds, org_id, pack, "expired", now)
            done = until_done(
                expire_pack, retry_on=(ConcurrentUpdateError,), attempts=MAX_ATTEMPTS, busy="The wallet is busy; retry."
            )
            ended |= {hold.hold_id for hold in done}
        if ended:
            self.runway.check(org_id, rising=True)  # freed: the runway may rise above a stage (re-armed)
        fell = [hold.hold_id for hold in pending if hold.hold_id not in ended]
        again = [self.release_hold(org_id=org_id, hold_id=hold_id, expired=True) for hold_id in fell]
        return len(ended) + sum(hold.status == "expired" for hold in again)

    # ------------------------------------------------------------------ platform bills
    def record_bill(self, bill: Bill) -> BillResult:
        """Debits the exact spend and the plan's platform fee, once per (platform, bill id), even below
        zero. Draws its amount on the hold it names (while pending, of the same project and platform): what
        the hold still holds goes down by it, at most to 0 (the rest is spend all the same); each bill
        once. Counts against the project's budget of the bill's period (Project.BudgetWarning / Reached
        when it crosses 80 % / 100 %). May start one auto-top-up. A negative amount is a platform credit
        (e.g. for invalid traffic): see `record_platform_credit`."""
        if bill.amount_minor < 0:
            return self.record_platform_credit(bill)
        # One round trip: the org, the wallet, the project's budget and the hold named (the first attempt's).
        more = [
            budget_key(bill.org_id, bill.project_id),
            *([hold_key(bill.org_id, bill.hold_id)] if bill.hold_id else []),
        ]
        org, read, items = self._poster.org_and_wallet(bill.org_id, more)
        _wallet_kept(org, read)
        platform_name(bill.platform)
        claims: list[TopUp] = []
        first = self._poster.as_stored(org, read)
        known = _BillReads.of(bill, items)

        def build(stored: StoredWallet) -> WalletChange:
            return self._bill_change(org, bill, stored, True, claims, known if stored is first else None)

        try:
            posted = self._poster.post(org, build, read=first)
        except HoldEnded:  # voided or expired while the bill was written: the bill still counts
            claims.clear()
            posted = self._poster.post(org, lambda stored: self._bill_change(org, bill, stored, False, claims))
        except InvalidRequestError as refused:  # spent on the platform all the same: kept for support
            fields = {k: v for k, v in asdict(bill).items() if v is not None} | {
                "billed_on": bill.billed_on.isoformat()
            }
            self._repo.record_refused_bill(bill.org_id, fields, refused.code, refused.message, iso(self._clock.now()))
            raise
        assert posted is not None
        if posted.replay:
            charged = self._repo.cause(bill.org_id, bill.cause) or {}
            _same_bill(charged, bill)
            amount, fee = int(charged.get("amount_minor", bill.amount_minor)), int(charged.get("fee_minor", 0))
            return BillResult(bill.bill_id, bill.platform, amount, fee, replayed=True)
        if claims:
            self._auto.run(org, claims[-1])
        return BillResult(bill.bill_id, bill.platform, bill.amount_minor, self._fee_of(org, bill, posted.before), False)

    def record_platform_credit(self, credit: Bill) -> BillResult:
        """Money a platform gives back (a negative bill): the spend and the platform fee on it return to
        the wallet, once per (platform, bill id), dated like a bill (a credit for a period already
        invoiced is carried to the next invoice). Names no hold."""
        if credit.hold_id is not None:
            raise InvalidRequestError(
                "A platform credit settles no hold: send it without hold_id.", code="credit_with_hold"
            )
        org, read, _ = self._poster.org_and_wallet(credit.org_id)  # one round trip
        _wallet_kept(org, read)
        platform_name(credit.platform)
        amount = -credit.amount_minor

        def build(stored: StoredWallet) -> WalletChange:
            _same_currency(stored, credit.currency)
            fee = platform_fee(amount, self._fee_bps(org, stored))
            dated = bill_dated(org, credit.billed_on)
            period = bill_period_key(org, credit.billed_on)
            change = self._correction(stored, credit.cause, amount, fee, credit, dated, budget_period=period)
            assert change.cause is not None
            return replace(change, cause=Cause(credit.cause, {**change.cause.record, **_bill_content(credit)}))

        posted = self._poster.post(org, build, read=self._poster.as_stored(org, read))
        if posted is not None and posted.replay:
            _same_bill(self._repo.cause(credit.org_id, credit.cause) or {}, credit)
        return self._correction_result(credit, credit.cause, posted)

    def credit_adjustment(self, *, org_id: str, amount_minor: int, cause: str, ref: str, actor: str) -> None:
        """Money a credit note re-credits to the wallet (an `adjustment` entry), once per cause. In any
        mode: the wallet that paid gets it back."""
        org = self._org_repo.require_org(org_id)

        def build(stored: StoredWallet) -> WalletChange:
            after, movements, _ = stored.account.move((EntryKind.ADJUSTMENT, amount_minor))
            entry = {"ref": ref, "actor": actor, "idempotency_key": cause}
            return WalletChange(after, movements, entry=entry, cause=Cause(cause, {"amount_minor": amount_minor}))

        self._poster.post(org, build)

    def bill_record(self, org_id: str, platform: str, bill_id: str) -> Mapping[str, object] | None:
        """What recording a bill wrote (amount, fee, project, and the period its invoice is, `period_key`
        and `late_for`), None if it never was."""
        return self._repo.cause(org_id, f"bill:{platform}:{bill_id}")

    def reverse_bill(self, *, org_id: str, platform: str, bill_id: str, reason: str, actor: str) -> BillResult:
        """Takes back a recorded bill (support, or the spend feed's correction): its spend and the fee it
        was charged return to the wallet as new entries (the bill's stay), once per bill. On the next
        invoice. 404 for a bill never recorded."""
        org = self._org_repo.require_org(org_id)
        original = Bill(org_id, platform, bill_id, "", 0, "", self._clock.now().date(), None, actor)
        charged = self._repo.cause(org_id, original.cause)
        if charged is None:
            raise NotFoundError(f"No {platform} bill {bill_id} was recorded for this org.", code="bill_not_found")
        amount, fee = int(charged.get("amount_minor", 0)), int(charged.get("fee_minor", 0))
        if amount <= 0:
            raise ConflictError(
                "That is a platform credit, not a bill: a credit is not reversed (the platform sends a bill).",
                code="not_a_bill",
            )
        project = str(charged.get("project_id", ""))
        reversal = replace(original, bill_id=f"{bill_id}:reversal", project_id=project, amount_minor=-amount)
        cause = f"reversal:{original.cause}"

        period = str(charged["budget_period"]) if charged.get("budget_period") else None

        def build(stored: StoredWallet) -> WalletChange:
            return self._correction(stored, cause, amount, fee, reversal, None, reason=reason, budget_period=period)

        return self._correction_result(reversal, cause, self._poster.post(org, build))

    def _correction(
        self,
        stored: StoredWallet,
        cause: str,
        amount: int,
        fee: int,
        bill: Bill,
        dated: datetime | None,
        reason: str | None = None,
        budget_period: str | None = None,
    ) -> WalletChange:
        """`budget_period`: the period whose project budget gets the spend back (None: none)."""
        after, movements, _ = stored.account.correct(amount, fee)
        back = [BudgetTouch(bill.project_id, budget_period, bill.platform, spent=-amount)] if budget_period else []
        entry = {"project_id": bill.project_id, "platform": bill.platform, "ref": cause, "actor": bill.actor}
        return WalletChange(
            after,
            movements,
            entry=entry | {"idempotency_key": cause} | ({"reason": reason} if reason else {}),
            cause=Cause(cause, {"amount_minor": -amount, "fee_minor": -fee, "project_id": bill.project_id}),
            records=[PeriodSpend(bill.platform, bill.project_id, -amount, -fee, correction=True)],
            dated=dated,
            budgets=back,
        )

    def _correction_result(self, bill: Bill, cause: str, posted: Posted | None) -> BillResult:
        """What the correction recorded (the first time: a replay answers the same)."""
        assert posted is not None
        done = self._repo.cause(bill.org_id, cause) or {}
        amount, fee = int(done.get("amount_minor", 0)), int(done.get("fee_minor", 0))
        return BillResult(bill.bill_id, bill.platform, amount, fee, replayed=posted.replay)

    def _fee_bps(self, org: Org, stored: StoredWallet) -> int:
        # The wallet's copy of the mode decides: it is versioned with the balance.
        plan_bps = self._orgs.subscribed_plan(org).platform_fee_bps  # the fee of the plan the spend was made on
        is_agency = wallet_mode(stored, org) is BillingMode.AGENCY
        return bill_fee_bps(agency=is_agency, plan_bps=plan_bps, kept_bps=stored.kept_fee_bps)

    def _fee_of(self, org: Org, bill: Bill, stored: StoredWallet) -> int:
        return platform_fee(bill.amount_minor, self._fee_bps(org, stored))

    def _bill_change(
        self,
        org: Org,
        bill: Bill,
        stored: StoredWallet,
        draw: bool,
        claims: list[TopUp],
        known: _BillReads | None = None,
    ) -> WalletChange:
        """`known`: the budget and the hold as read with `stored` (None: read them here)."""
        _same_currency(stored, bill.currency)
        fee_bps = self._fee_bps(org, stored)
        fee = platform_fee(bill.amount_minor, fee_bps)
        after, movements, _ = stored.account.bill(bill.amount_minor, fee_bps)
        records: list[HoldDrawn | PeriodSpend | TopUpPut] = [
            PeriodSpend(bill.platform, bill.project_id, bill.amount_minor, fee)
        ]
        budget_period = bill_period_key(org, bill.billed_on)
        budget = known.budget if known is not None else self._budgets.budget(org.org_id, bill.project_id)
        # Unguarded (a bill is spend already made), but on the limits as read: a budget put before the commit
        # fails it (read again), so the lines the bill crosses are those of the limits it is counted under.
        spend = BudgetTouch(bill.project_id, budget_period, bill.platform, spent=bill.amount_minor)
        touches = [replace(spend, guard=BudgetGuard(rev=budget.rev))]
        hold = self._drawable_hold(bill, known) if draw else None
        taken = 0
        if hold is not None:
            taken = hold_draw(bill.amount_minor, hold.open_minor)
            after = replace(after, held=after.held - taken)
            records.append(HoldDrawn(hold.hold_id, bill.cause, taken, hold.open_minor))
            if hold.budget_period and taken:
                touches.append(BudgetTouch(hold.project_id, hold.budget_period, hold.platform, held=-taken))
        claims.clear()
        auto, claim = self._auto.claim(org, stored, after)
        if claim is not None:
            claims.append(claim)
            records.append(TopUpPut(claim, listed=True))
        today = self._clock.now().date()
        record = {"amount_minor": bill.amount_minor, "fee_minor": fee, "project_id": bill.project_id}
        record |= _bill_content(bill)
        return WalletChange(
            after,
            movements,
            entry={
                "project_id": bill.project_id,
                "platform": bill.platform,
                "ref": bill.cause,
                "actor": bill.actor,
                "idempotency_key": bill.cause,
                "billed_on": bill.billed_on.isoformat(),
            },
            auto=auto,
            spend_days=add_spend(stored.spend_days, bill.billed_on, bill.amount_minor + fee, today),
            drawn_days=add_spend(stored.drawn_days, bill.billed_on, taken, today),
            cause=Cause(bill.cause, record | {"budget_period": budget_period}),
            records=records,
            messages=self._crossed(org.org_id, spend, budget),
            dated=bill_dated(org, bill.billed_on),
            budgets=touches,
        )

    def _drawable_hold(self, bill: Bill, known: _BillReads | None) -> Hold | None:
        """The pending hold a bill draws on (read at each attempt, with the wallet or after it: a bill since
        may have drawn on it): the one it names, if of the bill's project and platform."""
        hold = known.hold if known is not None else self._named_hold(bill)
        if hold is None or hold.status != "pending":
            return None
        return hold if (hold.project_id, hold.platform) == (bill.project_id, bill.platform) else None

    def _named_hold(self, bill: Bill) -> Hold | None:
        return self._repo.hold(bill.org_id, bill.hold_id) if bill.hold_id else None

    def _crossed(self, org_id: str, spend: BudgetTouch, budget: ProjectBudget) -> list[Message]:
        """The budget lines this bill's spend crosses (read after the wallet: bills, the only writers of
        spend, are serialized by the wallet's version, so what is read is what the bill adds to). `budget`:
        the project's limits as read with the wallet or after it (the commit checks they are still those)."""
        if not budget.limits():
            return []
        before = self._budgets.usage(org_id, spend.project_id, spend.period_key)
        return crossing_messages(org_id, spend, budget, before, spend_budgets(spend.platform))

    # ------------------------------------------------------------------ refunds (support)
    def refund(
        self, caller: Caller, org_id: str, *, amount_minor: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        return self._refunds.refund(
            caller, org_id, amount_minor=amount_minor, reason=reason, idempotency_key=idempotency_key
        )


@dataclass(frozen=True)
class _BillReads:
    """What a bill's first attempt read with the wallet, in one snapshot: the project's budget and the hold
    the bill names (None: it names none, or there is none)."""

    budget: ProjectBudget
    hold: Hold | None

    @staticmethod
    def of(bill: Bill, items: Sequence[Item | None] | None) -> _BillReads | None:
        """Of the items read (the budget's, then the hold's if the bill names one); None: none were read."""
        if items is None:
            return None
        return _BillReads(budget_of(bill.project_id, items[0]), hold_of(items[1]) if bill.hold_id else None)


def _wallet_kept(org: Org, stored: StoredWallet | None) -> Org:
    """Agency orgs, and orgs that left agency mode with a wallet (`stored`: as read): its money still has
    to be settled (late platform bills, pending top-ups, disputes, the support refund of what is left)."""
    if org.billing_mode is not BillingMode.AGENCY and stored is None:
        agency(org)
    return org


def _same_hold(made: Hold, asked: Hold) -> Hold:
    """The hold made before with this id, if a replay asks for the same one (project, platform, amount; its
    expiry is the first request's); 409 idempotency_key_reused if it asks for another."""
    if (made.project_id, made.platform, made.amount_minor) != (asked.project_id, asked.platform, asked.amount_minor):
        raise ConflictError(
            f"Hold {asked.hold_id} was placed for another project, platform or amount; use a new hold_id.",
            code="idempotency_key_reused",
        )
    return made


def _bill_content(bill: Bill) -> dict[str, str]:
    """What a bill's cause keeps of its content besides amount and project, to tell a replay from a reuse."""
    return {"billed_on": bill.billed_on.isoformat(), "currency": bill.currency, "hold_id": bill.hold_id or ""}


def _same_bill(charged: Mapping[str, object], bill: Bill) -> None:
    """A bill id (per platform) sent again must be the same bill: same amount, project, date, currency and
    hold; else 409 idempotency_key_reused and nothing changed (a correction is a reversal and a new bill).
    What an older record did not keep is not compared. The platform is the cause's key. Not the period it
    was counted in: a re-anchored subscription may place the same day in another period since."""
    asked: dict[str, object] = {"amount_minor": bill.amount_minor, "project_id": bill.project_id}
    asked |= _bill_content(bill)
    differs = sorted(name for name, value in asked.items() if name in charged and str(charged[name]) != str(value))
    if differs:
        raise BillReusedError(
            f"{bill.platform} bill {bill.bill_id} was recorded with another {', '.join(differs)}: a bill id names "
            "one bill. To correct it, reverse it and send the corrected bill under a new id.",
            code="idempotency_key_reused",
        )


def _same_currency(stored: StoredWallet, currency: str) -> None:
    """Bills and credits are in the wallet's own currency, whatever the org's says."""
    if currency != stored.account.currency:
        raise InvalidRequestError(
            f"The wallet is in {stored.account.currency}, the bill in {currency}: refused until wallets "
            "hold several currencies. The platform account must bill in the wallet's currency.",
            code="currency_mismatch",
        )
