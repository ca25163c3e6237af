"""The agency wallet: top-ups (card, ACH, wire, auto), holds for the optimizer, platform bills with
the platform fee, low-balance pause / resume, support refunds, and reads.

Every money movement is one versioned DynamoDB transaction: its entries, the balance projection and a
marker for its cause (`IDEM#<cause>`), so a retried request, a redelivered bill or a replayed Stripe
webhook moves nothing twice. Stripe is called only after our record of the intent exists, with an
idempotency key derived from it."""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

from shared.auth import Caller
from shared.clock import Clock, iso
from shared.credits.periods import period_containing
from shared.deadline import seconds_left
from shared.errors import (
    ConcurrentUpdateError,
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PaymentDeclinedError,
    ThrottledError,
    UpstreamError,
)
from shared.observability import logger
from shared.orgs.models import MANAGE_BILLING, READ, BillingMode, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event, Message, Notice
from shared.pagination import Page
from shared.stripe_gateway import StripeGateway
from shared.wallet.account import EntryKind, Signal, WalletAccount, WalletStatus, platform_fee
from shared.wallet.platforms import platform_name
from shared.wallet.repository import (
    AUTO_IN_FLIGHT,
    HoldRefused,
    ModeChanged,
    RecordConflict,
    StoredWallet,
    VersionConflict,
    WalletRepository,
)

HOLD_TTL = timedelta(hours=24)
MAX_AUTO_ATTEMPTS = 3
# An auto-top-up whose charge was interrupted (Stripe unreachable or slow, the function timed out) is
# resumed by the sweeper once it is this old: well past the timeout of any function still running it.
AUTO_RESUME_AFTER = timedelta(minutes=2)
# Stripe keeps idempotency keys for 24 h: past that a resumed attempt could charge twice, so the claim ends.
AUTO_GIVE_UP_AFTER = timedelta(hours=23)
SWEEP_RESERVE_S = 6.0  # the sweeper resumes no more auto-top-ups with less time than this left
DEFAULT_LOW_THRESHOLD_MINOR = 10_000
MAX_ATTEMPTS = 100


_OPEN_TOPUP = ("creating", "awaiting_checkout", "processing", "pending")


def _wallet_mode(stored: StoredWallet, org: Org) -> BillingMode:
    """The wallet's copy of the org's mode (the org's own for a wallet not written yet)."""
    return BillingMode(stored.settings.get("billing_mode", org.billing_mode.value))


class WalletNotAvailableError(ConflictError):
    code = "wallet_not_available"


class InsufficientWalletFundsError(ConflictError):
    code = "insufficient_wallet_funds"


@dataclass(frozen=True)
class WalletView:
    org: Org
    account: WalletAccount
    settings: dict[str, Any]
    runway_days: int | None
    avg_daily_spend_minor: int


@dataclass(frozen=True)
class Posted:
    before: StoredWallet
    after: WalletAccount
    signals: list[Signal]
    replay: bool


def _topup_id(org_id: str, key: str) -> str:
    return "tu_" + hashlib.sha256(f"{org_id}:{key}".encode()).hexdigest()[:24]


class WalletService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: WalletRepository,
        gateway: StripeGateway,
        clock: Clock,
    ):
        """Events and notifications leave through the outbox, with the changes that cause them."""
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._gateway = gateway
        self._clock = clock

    # ------------------------------------------------------------------ plumbing
    def _agency(self, org: Org) -> Org:
        if org.billing_mode is not BillingMode.AGENCY:
            raise WalletNotAvailableError(
                "This org pays the ad platforms directly (BYO mode): there is no wallet and no platform fee."
            )
        return org

    def _org(self, org_id: str) -> Org:
        return self._agency(self._org_repo.require_org(org_id))

    def _with_wallet(self, org: Org) -> Org:
        """Agency orgs, and orgs that left agency mode with a wallet: its money still has to be settled
        (late platform bills, pending top-ups, disputes, the support refund of what is left)."""
        if org.billing_mode is not BillingMode.AGENCY and self._repo.get(org.org_id) is None:
            self._agency(org)
        return org

    def _load(self, org: Org) -> StoredWallet:
        stored = self._repo.get(org.org_id)
        if stored is None:
            return StoredWallet(WalletAccount(currency=org.currency, low_threshold=DEFAULT_LOW_THRESHOLD_MINOR), 0, 0)
        return stored

    def _post(
        self, org: Org, build: Callable[[StoredWallet], dict[str, Any] | None], *, agency_only: bool = False
    ) -> Posted | None:
        """Runs a versioned balance change: `build` returns the `post` arguments for the current state
        (or None to write nothing). None when the change's marker already exists (a replay).
        `agency_only`: refused (409) if the org turns out to have left agency mode meanwhile."""
        for attempt in range(MAX_ATTEMPTS):
            stored = self._load(org)
            if agency_only and _wallet_mode(stored, org) is not BillingMode.AGENCY:
                self._agency(self._org_repo.require_org(org.org_id))  # left agency mode meanwhile: 409
            args = build(stored)
            if args is None:
                return None
            after: WalletAccount = args.pop("after")
            signals: list[Signal] = args.pop("signals", [])
            if _wallet_mode(stored, org) is not BillingMode.AGENCY:
                # Low and paused are about agency spend, and there is none any more; resumed still tells.
                signals = [signal for signal in signals if signal is Signal.RESUMED]
            messages = [*self._signal_messages(org, stored.account, after, signals), *args.pop("messages", [])]
            outbox = self._repo.outbox(
                org.org_id, f"wallet:{org.org_id}:v{stored.version + 1}", messages, self._clock.now()
            )
            args["extra"] = [*args.get("extra", []), *outbox]
            try:
                self._repo.post(
                    org.org_id,
                    stored,
                    after,
                    args.pop("movements", []),
                    now_iso=iso(self._clock.now()),
                    mode=org.billing_mode.value,
                    **args,
                )
            except (VersionConflict, ConcurrentUpdateError):  # another change came first, or is in flight
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))  # noqa: S311 - jitter
                continue
            except RecordConflict:
                return Posted(stored, stored.account, [], replay=True)
            except ModeChanged:  # the wallet's first write: its copy of the mode must be the org's
                org = self._org_repo.require_org(org.org_id)
                if agency_only:
                    self._agency(org)
                continue
            return Posted(stored, after, signals, replay=False)
        raise ConcurrentUpdateError("The wallet is busy; retry.")

    @staticmethod
    def _signal_messages(org: Org, before: WalletAccount, after: WalletAccount, signals: list[Signal]) -> list[Message]:
        """The event and the notification of each status change, sent with the change (the outbox)."""
        texts = {
            Signal.LOW_BALANCE: "Your Layers ad wallet is running low. Top up to keep agency ads running.",
            Signal.PAUSED: "Your Layers ad wallet is below its floor: agency ads are paused. Top up to resume.",
            Signal.RESUMED: "Your Layers ad wallet was topped up: agency ads are running again.",
        }
        messages: list[Message] = []
        for signal in signals:
            detail = {
                "org_id": org.org_id,
                "balance_minor": after.balance,
                "currency": after.currency,
                "status": after.status.value,
                "previous_status": before.status.value,
            }
            messages.append(Event(signal.value, detail))
            messages.append(Notice(signal.value, f"Layers: {signal.value}", texts[signal], detail))
        return messages

    # ------------------------------------------------------------------ reads and settings (people)
    def view(self, caller: Caller, org_id: str) -> WalletView:
        org = self._with_wallet(self._orgs.access(caller, org_id, READ, support=True).org)
        stored = self._load(org)
        today = self._clock.now().date()
        days = [(today - timedelta(days=d)).isoformat() for d in range(7)]  # today and the 6 before
        spend = sum(self._repo.spend_days(org_id, days).values())
        avg = spend // 7
        runway = max(stored.account.balance, 0) // avg if avg > 0 else None
        return WalletView(org, stored.account, stored.settings, runway, avg)

    def transactions(
        self, caller: Caller, org_id: str, filters: dict[str, Any], cursor: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        self._with_wallet(self._orgs.access(caller, org_id, READ, support=True).org)
        return self._repo.entries(org_id, cursor, limit, filters)

    def configure(self, caller: Caller, org_id: str, settings: dict[str, Any]) -> WalletView:
        """Low-balance threshold, floor and auto-top-up (enabled, threshold, amount, daily cap)."""
        org = self._agency(self._orgs.access(caller, org_id, MANAGE_BILLING).org)
        if settings.get("auto_enabled") and not (
            org.stripe_customer_id and self._gateway.default_card(org.stripe_customer_id)
        ):
            raise ConflictError("Auto-top-up needs a saved card: top up once by card first.", code="no_saved_card")

        def build(stored: StoredWallet) -> dict[str, Any]:
            account = replace(
                stored.account, low_threshold=settings["low_threshold_minor"], floor=settings["floor_minor"]
            )
            after, _, signals = account.move()
            auto = {k: v for k, v in settings.items() if k.startswith("auto_")}
            if auto.get("auto_enabled"):
                auto["auto_failures"] = 0
            return {"after": after, "signals": signals, "sets": auto, "entry_fields": {}}

        self._post(org, build, agency_only=True)
        return self.view(caller, org_id)

    # ------------------------------------------------------------------ top-ups
    def top_up(
        self,
        caller: Caller,
        org_id: str,
        *,
        amount_minor: int,
        method: str,
        idempotency_key: str,
        return_url: str | None,
        payment_method: str | None = None,
    ) -> dict[str, Any]:
        """Starts a top-up; the wallet is credited when Stripe says the money arrived (webhook).
        Card: the saved card off-session, else a Checkout URL. ACH / wire: pending until funds arrive."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        topup_id = _topup_id(org_id, idempotency_key)
        existing = self._repo.item(org_id, f"TOPUP#{topup_id}")
        if existing and existing["status"] != "creating":
            return existing
        if existing is None and org.billing_mode is not BillingMode.AGENCY:
            self._check_deficit_top_up(org, amount_minor)
        # A top-up still "creating" never reached Stripe's answer (an error or a crash): a retry carries
        # on with the same Stripe idempotency key, so Stripe acts at most once.
        customer = org.stripe_customer_id or self._repo_customer(org, caller)
        record = {
            "topup_id": topup_id,
            "method": method,
            "amount_minor": amount_minor,
            "currency": org.currency,
            "status": "creating",
            "created_at": iso(self._clock.now()),
            "actor": caller.user_id,
            "idempotency_key": idempotency_key,
        }
        if existing is None:
            try:
                self._repo.write([self._repo.put(org_id, f"TOPUP#{topup_id}", record)])
            except RecordConflict:
                return self._repo.item(org_id, f"TOPUP#{topup_id}") or record
        metadata = {"org_id": org_id, "kind": "wallet_topup", "topup_id": topup_id, "method": method}
        key = f"wallet-topup:{topup_id}"
        if method == "card":
            card = self._gateway.default_card(customer)
            if card is None:
                session_id, url = self._gateway.create_payment_checkout(
                    customer_id=customer,
                    name="Layers ad wallet top-up",
                    amount_minor=amount_minor,
                    currency=org.currency,
                    metadata=metadata,
                    success_url=return_url or "https://app.layers.com",
                    cancel_url=return_url or "https://app.layers.com",
                    key=key,
                )
                return self._topup_update(
                    org_id,
                    topup_id,
                    {"status": "awaiting_checkout", "checkout_url": url, "checkout_session_id": session_id},
                )
            try:
                intent = self._gateway.charge_card(
                    customer_id=customer,
                    payment_method=card,
                    amount_minor=amount_minor,
                    currency=org.currency,
                    metadata=metadata,
                    key=key,
                )
            except PaymentDeclinedError:
                self._topup_update(org_id, topup_id, {"status": "failed"})
                raise
            return self._topup_update(org_id, topup_id, {"status": "processing", "payment_intent_id": intent})
        intent, instructions = self._gateway.start_bank_payment(
            customer_id=customer,
            method=method,
            amount_minor=amount_minor,
            currency=org.currency,
            metadata=metadata,
            key=key,
            payment_method=payment_method,
        )
        self._adjust_pending(org, amount_minor, marker=f"topup-pending:{topup_id}")
        return self._topup_update(
            org_id, topup_id, {"status": "pending", "payment_intent_id": intent, "instructions": instructions}
        )

    def _check_deficit_top_up(self, org: Org, amount_minor: int) -> None:
        """Out of agency mode a wallet takes money only to settle what late bills left it owing, less
        what top-ups still on their way will bring."""
        stored = self._repo.get(org.org_id)
        deficit = max(0, -stored.account.balance) if stored else 0
        if not deficit:
            self._agency(org)
        # A Checkout session expires after 24 hours: one older than that brings nothing.
        stale = iso(self._clock.now() - timedelta(hours=24))
        on_the_way = sum(
            int(t["amount_minor"])
            for t in self._repo.topups(org.org_id)
            if t["status"] in _OPEN_TOPUP and not (t["status"] == "awaiting_checkout" and t["created_at"] < stale)
        )
        owed = max(0, deficit - on_the_way)
        if amount_minor > owed:
            raise InvalidRequestError(
                f"Out of agency mode, a top-up settles only what the wallet owes ({owed} once the top-ups "
                "on their way arrive).",
                code="amount_exceeds_deficit",
                details={"deficit_minor": deficit, "on_the_way_minor": on_the_way, "requested_minor": amount_minor},
            )

    def _repo_customer(self, org: Org, caller: Caller) -> str:
        created = self._gateway.create_customer(org_id=org.org_id, name=org.name, email=caller.email)
        return self._org_repo.link_stripe_customer(org.org_id, created)

    def _topup_update(self, org_id: str, topup_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._repo.write([self._repo.set_fields(org_id, f"TOPUP#{topup_id}", fields)])
        return self._repo.item(org_id, f"TOPUP#{topup_id}") or {}

    def _adjust_pending(self, org: Org, delta: int, marker: str | None = None) -> None:
        def build(stored: StoredWallet) -> dict[str, Any]:
            after = replace(stored.account, pending=max(0, stored.account.pending + delta))
            extra = [self._repo.marker(org.org_id, marker, {})] if marker else []
            return {"after": after, "entry_fields": {}, "extra": extra}

        self._post(org, build)

    def topup_succeeded(
        self, *, org_id: str, topup_id: str, payment_intent_id: str, charge_id: str | None, amount_minor: int
    ) -> bool:
        """Credits a top-up once (Stripe's payment_intent.succeeded). False on a replay."""
        org = self._org_repo.require_org(org_id)
        topup = self._repo.item(org_id, f"TOPUP#{topup_id}") or {}
        method = topup.get("method", "card")

        def build(stored: StoredWallet) -> dict[str, Any]:
            account = stored.account
            if method in ("ach", "wire"):
                account = replace(account, pending=max(0, account.pending - amount_minor))
            after, movements, signals = account.move((EntryKind.TOPUP, amount_minor))
            sets: dict[str, Any] = {}
            if stored.settings.get("auto_in_flight") == topup_id:
                sets = {"auto_in_flight": "", "auto_failures": 0}
            extra = [
                self._repo.marker(org_id, f"topup-credit:{payment_intent_id}", {"topup_id": topup_id}),
                self._repo.set_fields(
                    org_id,
                    f"TOPUP#{topup_id}",
                    {
                        "status": "succeeded",
                        "charge_id": charge_id or "",
                        "refunded_minor": 0,
                        "payment_intent_id": payment_intent_id,
                        "credited_at": iso(self._clock.now()),
                        "method": method,
                        "amount_minor": amount_minor,
                        "topup_id": topup_id,
                    },
                ),
            ]
            if charge_id:
                extra.append(
                    {
                        "Put": {
                            "TableName": self._repo._name,
                            "Item": {"PK": f"CHARGE#{charge_id}", "SK": "LINK", "org_id": org_id, "topup_id": topup_id},
                        }
                    }
                )
            return {
                "after": after,
                "movements": movements,
                "signals": signals,
                "sets": sets,
                "extra": extra,
                "entry_fields": {
                    "ref": f"payment_intent:{payment_intent_id}",
                    "actor": "stripe",
                    "idempotency_key": f"topup:{payment_intent_id}",
                    "method": method,
                },
            }

        posted = self._post(org, build)
        return posted is not None and not posted.replay

    def topup_failed(self, *, org_id: str, topup_id: str, payment_intent_id: str) -> None:
        """A top-up's payment failed (card decline, ACH return before settlement). Once per intent."""
        org = self._org_repo.require_org(org_id)
        topup = self._repo.item(org_id, f"TOPUP#{topup_id}") or {}
        if topup.get("status") in ("failed", "succeeded"):
            return
        if topup.get("method") in ("ach", "wire"):
            self._adjust_pending(org, -int(topup.get("amount_minor", 0)), marker=f"topup-failed:{payment_intent_id}")
        notice = Notice(
            "Wallet.TopUpFailed",
            "Layers: a wallet top-up failed",
            "A top-up of your ad wallet could not be collected.",
            {"topup_id": topup_id, "amount_minor": topup.get("amount_minor")},
        )
        with contextlib.suppress(RecordConflict):  # credited meanwhile: it did not fail after all
            self._repo.write(
                [
                    self._repo.set_fields(  # never over a credit that landed meanwhile
                        org_id, f"TOPUP#{topup_id}", {"status": "failed"}, condition=("status", topup.get("status"))
                    ),
                    *self._repo.outbox(org_id, f"topup-failed:{payment_intent_id}", [notice], self._clock.now()),
                ]
            )

    def dispute(self, *, charge_id: str, dispute_id: str, amount_minor: int) -> bool:
        """A disputed top-up: a compensating debit, once per dispute, and a notification."""
        link = self._repo._table.get_item(Key={"PK": f"CHARGE#{charge_id}", "SK": "LINK"}).get("Item")
        if not link:
            return False
        org = self._org_repo.require_org(str(link["org_id"]))

        def build(stored: StoredWallet) -> dict[str, Any]:
            after, movements, signals = stored.account.move((EntryKind.REVERSAL, -amount_minor))
            return {
                "after": after,
                "movements": movements,
                "signals": signals,
                "extra": [self._repo.marker(org.org_id, f"dispute:{dispute_id}", {})],
                "messages": [
                    Notice(
                        "Wallet.TopUpDisputed",
                        "Layers: a wallet top-up was disputed",
                        "A disputed top-up was taken back from your ad wallet.",
                        {"charge_id": charge_id, "amount_minor": amount_minor},
                    )
                ],
                "entry_fields": {
                    "ref": f"dispute:{dispute_id}",
                    "actor": "stripe",
                    "idempotency_key": f"dispute:{dispute_id}",
                },
            }

        posted = self._post(org, build)
        return bool(posted and not posted.replay)

    # ------------------------------------------------------------------ holds (optimizer)
    def hold(
        self, *, org_id: str, hold_id: str, project_id: str, platform: str, amount_minor: int, retry: bool = True
    ) -> dict[str, Any]:
        """Authorizes spend before an ad launches or scales. Idempotent by hold_id.
        InsufficientWalletFundsError (409) when `balance - held - floor` does not cover it."""
        platform_name(platform)
        # No reads first: the transaction itself checks the mode (the wallet's copy), the funds and a replayed hold id.
        now = self._clock.now()
        hold = {
            "hold_id": hold_id,
            "project_id": project_id,
            "platform": platform,
            "amount_minor": amount_minor,
            "status": "pending",
            "created_at": iso(now),
            "expires_at": iso(now + HOLD_TTL),
        }
        try:
            self._repo.place_hold(org_id, hold)
        except RecordConflict:
            return self._repo.item(org_id, f"HOLD#{hold_id}") or hold
        except HoldRefused:
            org = self._org(org_id)  # 404 for an unknown org, 409 wallet_not_available for BYO
            stored = self._load(org)
            if stored.version and "billing_mode" not in stored.settings:
                # A wallet written before it kept a copy of the mode: copy it (or a racing hold did).
                self._repo.copy_mode(org_id, org.billing_mode.value)
                stored = self._load(org)
            if retry and _wallet_mode(stored, org) is BillingMode.AGENCY and stored.account.can_hold(amount_minor):
                # What refused it has changed since (the mode copied, a hold released): once more.
                return self.hold(
                    org_id=org_id,
                    hold_id=hold_id,
                    project_id=project_id,
                    platform=platform,
                    amount_minor=amount_minor,
                    retry=False,
                )
            if stored.account.status is WalletStatus.PAUSED:
                raise InsufficientWalletFundsError(
                    "Agency spend is paused: the wallet is below its floor.", code="wallet_paused"
                ) from None
            raise InsufficientWalletFundsError(
                f"The wallet cannot cover {amount_minor} (available {max(stored.account.available, 0)}).",
                details={"available_minor": max(stored.account.available, 0), "requested_minor": amount_minor},
            ) from None
        return hold

    def release_hold(self, *, org_id: str, hold_id: str, expired: bool = False) -> dict[str, Any]:
        self._org_repo.require_org(org_id)
        hold = self._repo.item(org_id, f"HOLD#{hold_id}")
        if hold is None:
            raise NotFoundError(f"No hold {hold_id}.", code="hold_not_found")
        if hold["status"] == "pending":
            status = "expired" if expired else "voided"
            with contextlib.suppress(RecordConflict):  # ended concurrently: nothing to do
                self._repo.end_hold(
                    org_id, hold_id, int(hold["amount_minor"]), status, {"ended_at": iso(self._clock.now())}
                )
        return self._repo.item(org_id, f"HOLD#{hold_id}") or hold

    def expire_holds(self) -> int:
        count = 0
        for hold in self._repo.expired_holds(iso(self._clock.now())):
            self.release_hold(org_id=hold["PK"].removeprefix("ORG#"), hold_id=hold["hold_id"], expired=True)
            count += 1
        return count

    # ------------------------------------------------------------------ platform bills
    def record_bill(
        self,
        *,
        org_id: str,
        platform: str,
        bill_id: str,
        project_id: str,
        amount_minor: int,
        currency: str,
        billed_on: date,
        hold_id: str | None,
        actor: str,
    ) -> dict[str, Any]:
        """Debits the exact spend and the plan's platform fee, once per (platform, bill id), even below
        zero. Settles the hold it names. May start one auto-top-up."""
        org = self._with_wallet(self._org_repo.require_org(org_id))
        platform_name(platform)
        if currency != org.currency:
            raise InvalidRequestError(
                f"The wallet is in {org.currency}, the bill in {currency}.", code="currency_mismatch"
            )
        live_fee_bps = self._orgs.plan_of(org).platform_fee_bps or 0
        hold = self._repo.item(org_id, f"HOLD#{hold_id}") if hold_id else None
        cause = f"bill:{platform}:{bill_id}"
        # The period of the bill's date (noon UTC), never before the org's first period began.
        first = org.subscription.billing_anchor if org.subscription else org.created_at
        period = period_containing(org, max(datetime.combine(billed_on, time_of_day(12), UTC), first))
        auto: dict[str, Any] = {}
        charged: dict[str, int] = {}

        def build(stored: StoredWallet) -> dict[str, Any]:
            # The plan's rate in agency mode; after leaving it, the rate the wallet kept (late bills of
            # agency spend). The wallet's copy of the mode decides: it is versioned with the balance.
            agency = _wallet_mode(stored, org) is BillingMode.AGENCY
            fee_bps = live_fee_bps if agency else int(stored.settings.get("agency_fee_bps", live_fee_bps))
            charged["fee_minor"] = fee = platform_fee(amount_minor, fee_bps)
            after, movements, signals = stored.account.bill(amount_minor, fee_bps)
            held_delta = 0
            extra = [
                self._repo.marker(org_id, cause, {"amount_minor": amount_minor, "fee_minor": fee}),
                self._repo.add_spend_day(org_id, billed_on.isoformat(), -sum(m.amount for m in movements)),
                self._repo.add_period_spend(org_id, period.key, platform, project_id, amount_minor, fee),
            ]
            if hold and hold["status"] == "pending":
                held_delta = -int(hold["amount_minor"])
                after = replace(after, held=after.held + held_delta)
                extra.append(self._repo.close_hold(org_id, hold["hold_id"], "posted", {"bill": cause}))
            sets = self._maybe_start_auto(org, stored, after, auto)
            if auto:  # listed (GSI2) until it has a payment intent: the sweeper resumes it if interrupted
                listed = {**auto, "GSI2PK": AUTO_IN_FLIGHT, "GSI2SK": auto["created_at"]}
                extra.append(self._repo.put(org_id, f"TOPUP#{auto['topup_id']}", listed))
            return {
                "after": after,
                "movements": movements,
                "signals": signals,
                "held_delta": held_delta,
                "sets": sets,
                "extra": extra,
                "entry_fields": {
                    "project_id": project_id,
                    "platform": platform,
                    "ref": cause,
                    "actor": actor,
                    "idempotency_key": cause,
                    "billed_on": billed_on.isoformat(),
                },
            }

        posted = self._post(org, build)
        marker = None
        if posted is None or posted.replay:
            # A condition failed: either the bill was recorded before (its marker says what was charged)
            # or the hold ended (voided / expired) while the bill was written, and the bill still counts.
            marker = self._repo.item(org_id, f"IDEM#{cause}")
            if marker is None and hold is not None:
                hold = None
                posted = self._post(org, build)
                marker = self._repo.item(org_id, f"IDEM#{cause}") if posted is None or posted.replay else None
        recorded = (
            {k: int(marker[k]) for k in ("amount_minor", "fee_minor")}
            if marker
            else {"amount_minor": amount_minor, **charged}
        )
        if posted is not None and not posted.replay and auto:
            self._run_auto_top_up(org, auto)
        return {
            "bill_id": bill_id,
            "platform": platform,
            **recorded,
            "replayed": posted is None or posted.replay,
        }

    # ------------------------------------------------------------------ auto-top-up
    def _maybe_start_auto(
        self, org: Org, stored: StoredWallet, after: WalletAccount, auto: dict[str, Any]
    ) -> dict[str, Any]:
        """In the bill's own transaction: claim the org's one in-flight auto-top-up if one is due."""
        auto.clear()
        s = stored.settings
        if (
            _wallet_mode(stored, org) is not BillingMode.AGENCY  # the org pays the platforms itself now
            or not s.get("auto_enabled")
            or s.get("auto_in_flight")
            or after.balance >= int(s.get("auto_threshold_minor", 0))
        ):
            return {}
        today = self._clock.now().date().isoformat()
        spent_today = int(s.get("auto_day_total", 0)) if s.get("auto_day") == today else 0
        amount = int(s["auto_amount_minor"])
        if spent_today + amount > int(s.get("auto_daily_cap_minor", 0)):
            logger.info("auto-top-up daily cap reached", extra={"org_id": org.org_id})
            return {}
        topup_id = "tu_auto_" + hashlib.sha256(f"{org.org_id}:{stored.version}".encode()).hexdigest()[:20]
        auto.update(
            {
                "topup_id": topup_id,
                "method": "auto_card",
                "amount_minor": amount,
                "currency": org.currency,
                "status": "processing",
                "created_at": iso(self._clock.now()),
                "actor": "system:auto-top-up",
            }
        )
        return {"auto_in_flight": topup_id, "auto_day": today, "auto_day_total": spent_today + amount}

    def _run_auto_top_up(self, org: Org, topup: dict[str, Any]) -> None:
        """Charges the saved card. A declined card is tried up to MAX_AUTO_ATTEMPTS times, then auto-top-up
        is turned off and the owner told. A Stripe outage or timeout leaves the claim to the sweeper, which
        resumes it with the same keys and the same parameters (the card, amount and currency the claim
        recorded): an attempt Stripe already made replays, none is charged twice."""
        topup_id = topup["topup_id"]
        try:
            card = self._claim_card(org, topup)
            for attempt in range(1, MAX_AUTO_ATTEMPTS + 1 if card else 1):
                intent = self._auto_charge(org, topup, card or "", attempt)
                if intent:
                    self._repo.settle_topup_record(
                        org.org_id, topup_id, {"payment_intent_id": intent, "attempts": attempt}
                    )
                    return
        except (UpstreamError, ThrottledError):
            logger.warning(
                "auto-top-up interrupted; the sweeper resumes it", extra={"org_id": org.org_id}, exc_info=True
            )
            return
        self._disable_auto(org, topup_id)

    def _claim_card(self, org: Org, topup: dict[str, Any]) -> str | None:
        """The card this claim charges: the one it recorded, else the customer's saved card (recorded now,
        so a resumed attempt sends exactly what the first did). None when there is no card to charge."""
        if topup.get("payment_method"):
            return str(topup["payment_method"])
        try:
            card = self._gateway.default_card(org.stripe_customer_id) if org.stripe_customer_id else None
        except InvalidRequestError:  # the customer is gone (deleted in Stripe)
            logger.exception("auto-top-up: no Stripe customer to charge", extra={"org_id": org.org_id})
            return None
        if card:
            self._repo.write(
                [self._repo.set_fields(org.org_id, f"TOPUP#{topup['topup_id']}", {"payment_method": card})]
            )
        return card

    def _auto_charge(self, org: Org, topup: dict[str, Any], card: str, attempt: int) -> str | None:
        """One attempt's payment intent; None when the card was declined or Stripe refused the charge."""
        try:
            return self._gateway.charge_card(
                customer_id=org.stripe_customer_id or "",
                payment_method=card,
                amount_minor=int(topup["amount_minor"]),
                currency=str(topup.get("currency") or org.currency),  # the wallet's, when the claim was made
                metadata={
                    "org_id": org.org_id,
                    "kind": "wallet_topup",
                    "topup_id": topup["topup_id"],
                    "method": "auto_card",
                },
                key=f"wallet-topup:{topup['topup_id']}:{attempt}",
            )
        except PaymentDeclinedError:
            return None
        except InvalidRequestError:
            logger.exception("auto-top-up charge refused by Stripe", extra={"org_id": org.org_id})
            return None

    def resume_stalled_auto_top_ups(self) -> int:
        """The sweeper's part: auto-top-ups interrupted before they had a payment intent are charged
        again (same keys), or ended without a charge when no longer wanted or too old to resume safely.
        One org's failure never stops the others. Returns how many were taken up."""
        now = self._clock.now()
        taken = 0
        for record in self._repo.stalled_auto_top_ups(iso(now - AUTO_RESUME_AFTER)):
            left = seconds_left()
            if left is not None and left < SWEEP_RESERVE_S:
                break
            try:
                taken += self._resume(record, now)
            except DomainError:
                logger.exception("auto-top-up could not be resumed", extra={"topup_id": record.get("topup_id")})
        return taken

    def _resume(self, record: dict[str, Any], now: datetime) -> int:
        org_id, topup_id = record["PK"].removeprefix("ORG#"), record["topup_id"]
        stored = self._repo.get(org_id)
        if stored is None or stored.settings.get("auto_in_flight") != topup_id:
            # Credited or ended meanwhile. Ended but still "processing" (the run that ended it stopped
            # before writing so): canceled now, so it never counts as money on its way.
            self._repo.settle_topup_record(org_id, topup_id, {"status": "canceled"}, only_from="processing")
            return 0
        org = self._with_wallet(self._org_repo.require_org(org_id))
        s = stored.settings
        unwanted = (
            not s.get("auto_enabled")  # turned off meanwhile
            or _wallet_mode(stored, org) is not BillingMode.AGENCY  # left agency mode
            or stored.account.balance >= int(s.get("auto_threshold_minor", 0))  # topped up meanwhile
            or datetime.fromisoformat(record["created_at"]) < now - AUTO_GIVE_UP_AFTER  # Stripe forgot the keys
        )
        if unwanted:
            # Ended without a charge. Had an interrupted attempt been charged after all, its
            # payment_intent.succeeded still credits the wallet (topup_succeeded needs no claim).
            self._end_claim(org, record)
        else:
            self._run_auto_top_up(org, record)
        return 1

    def _end_claim(self, org: Org, record: dict[str, Any]) -> None:
        """Ends a claim without a charge; its amount no longer counts against the day's cap."""
        topup_id, claimed_on = record["topup_id"], str(record["created_at"])[:10]

        def build(stored: StoredWallet) -> dict[str, Any] | None:
            s = stored.settings
            if s.get("auto_in_flight") != topup_id:
                return None
            sets: dict[str, Any] = {"auto_in_flight": ""}
            if s.get("auto_day") == claimed_on:
                sets["auto_day_total"] = max(0, int(s.get("auto_day_total", 0)) - int(record["amount_minor"]))
            return {"after": stored.account, "entry_fields": {}, "sets": sets}

        self._post(org, build)
        self._repo.settle_topup_record(org.org_id, topup_id, {"status": "canceled"}, only_from="processing")

    def _disable_auto(self, org: Org, topup_id: str) -> None:
        detail = {"org_id": org.org_id, "topup_id": topup_id, "attempts": MAX_AUTO_ATTEMPTS}
        told: list[Message] = [
            Event("Wallet.AutoTopUpDisabled", detail),
            Notice(
                "Wallet.AutoTopUpDisabled",
                "Layers: auto-top-up was turned off",
                "We could not charge your saved card for the ad wallet; auto-top-up is off. "
                "Update the card and top up to keep agency ads running.",
                detail,
            ),
        ]

        def build(stored: StoredWallet) -> dict[str, Any] | None:
            if stored.settings.get("auto_in_flight") != topup_id:
                return None  # ended already (credited, or turned off by another run): told then
            return {
                "after": stored.account,
                "entry_fields": {},
                "sets": {"auto_in_flight": "", "auto_enabled": False, "auto_failures": MAX_AUTO_ATTEMPTS},
                "messages": told,
            }

        if self._post(org, build) is not None:  # only the run that turned it off says so
            self._repo.settle_topup_record(org.org_id, topup_id, {"status": "failed"}, only_from="processing")

    # ------------------------------------------------------------------ refunds (support)
    def refund(
        self, caller: Caller, org_id: str, *, amount_minor: int, reason: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Refunds wallet money to the card payments it came from, newest first, never more than is
        refundable or than the balance. Support only. Idempotent by the request's key."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)
            raise ForbiddenError("Only Layers support can refund or withdraw wallet money.")
        org = self._with_wallet(self._orgs.access(caller, org_id, frozenset(), support=True).org)
        cause = f"wallet-refund:{idempotency_key}"
        plan_holder: dict[str, Any] = {}
        if self._repo.item(org_id, f"IDEM#{cause}") is None:
            self._post(
                org,
                lambda stored: self._refund_movement(org_id, stored, amount_minor, reason, cause, caller, plan_holder),
            )
        marker = self._repo.item(org_id, f"IDEM#{cause}") or {}
        allocations = marker.get("allocations", plan_holder.get("allocations", []))
        for a in allocations:  # after our ledger says so; keyed, so a retry never refunds twice
            self._gateway.refund(
                charge_id=str(a["charge_id"]),
                amount_minor=int(a["amount_minor"]),
                metadata={"org_id": org_id, "reason": "wallet_refund"},
                key=f"{cause}:{a['charge_id']}",
            )
        return {"amount_minor": sum(int(a["amount_minor"]) for a in allocations), "allocations": allocations}

    def _refund_movement(
        self,
        org_id: str,
        stored: StoredWallet,
        amount_minor: int,
        reason: str,
        cause: str,
        caller: Caller,
        plan_holder: dict[str, Any],
    ) -> dict[str, Any]:
        topups = self._refundable_topups(org_id)
        refundable = sum(t["left"] for t in topups)
        if amount_minor > min(refundable, stored.account.balance):
            raise InvalidRequestError(
                f"At most {max(min(refundable, stored.account.balance), 0)} can be refunded "
                f"(refundable card payments {refundable}, balance {stored.account.balance}).",
                code="refund_exceeds_refundable",
            )
        allocations, left = [], amount_minor
        for t in topups:
            take = min(left, t["left"])
            if take:
                allocations.append({"topup_id": t["topup_id"], "charge_id": t["charge_id"], "amount_minor": take})
                left -= take
        plan_holder["allocations"] = allocations
        after, movements, signals = stored.account.move(*[(EntryKind.REFUND, -a["amount_minor"]) for a in allocations])
        extra = [self._repo.marker(org_id, cause, {"allocations": allocations, "reason": reason})]
        extra += [
            self._repo.set_fields(
                org_id,
                f"TOPUP#{a['topup_id']}",
                {
                    "refunded_minor": next(t for t in topups if t["topup_id"] == a["topup_id"])["refunded"]
                    + a["amount_minor"]
                },
            )
            for a in allocations
        ]
        return {
            "after": after,
            "movements": movements,
            "signals": signals,
            "extra": extra,
            "per_entry": [{"ref": f"charge:{a['charge_id']}"} for a in allocations],
            "entry_fields": {"actor": caller.user_id, "idempotency_key": cause, "reason": reason},
        }

    def _refundable_topups(self, org_id: str) -> list[dict[str, Any]]:
        rows = []
        for t in self._repo.topups(org_id):
            if (
                t.get("status") == "succeeded"
                and t.get("charge_id")
                and t.get("method") in ("card", "auto_card", "ach")
            ):
                refunded = int(t.get("refunded_minor", 0))
                rows.append(
                    {
                        "topup_id": t["topup_id"],
                        "charge_id": t["charge_id"],
                        "refunded": refunded,
                        "left": int(t["amount_minor"]) - refunded,
                        "at": t.get("credited_at", ""),
                    }
                )
        return sorted(rows, key=lambda r: r["at"], reverse=True)
