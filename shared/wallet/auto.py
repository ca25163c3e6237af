"""Auto-top-up: below its threshold, a bill claims the org's one in-flight auto-top-up in its own
transaction; the saved card is then charged. A declined attempt (at once, or later by Stripe's
`payment_intent.payment_failed`) is tried again on a schedule by the sweeper, never in a loop against
the same card; after the last one auto-top-up is turned off and the owner told. An interrupted attempt
is resumed by the sweeper with the same key and parameters (Stripe replays it, never charges twice)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

from shared.clock import Clock, iso
from shared.deadline import seconds_left
from shared.errors import DomainError, InvalidRequestError, PaymentDeclinedError, ThrottledError, UpstreamError
from shared.observability import logger
from shared.orgs.models import BillingMode, Org
from shared.orgs.repository import OrgRepository
from shared.outbox import Event, Message, Notice
from shared.stripe_gateway import StripeGateway
from shared.wallet.account import WalletAccount
from shared.wallet.models import AutoTopUp, StoredWallet, TopUp, WalletChange
from shared.wallet.poster import WalletPoster, wallet_mode
from shared.wallet.repository import WalletRepository

MAX_AUTO_ATTEMPTS = 3
# After a failed attempt n (1-based), the next is made this much later (by the sweeper): a card declined
# now is rarely accepted a second later, and issuers treat rapid retries as suspicious.
AUTO_RETRY_AFTER = (timedelta(hours=1), timedelta(hours=6))
# An auto-top-up whose charge was interrupted (Stripe unreachable or slow, the function timed out) is
# resumed by the sweeper once it is this old: well past the timeout of any function still running it.
AUTO_RESUME_AFTER = timedelta(minutes=2)
# Stripe keeps idempotency keys for 24 h: past that a resumed attempt could charge twice, so the claim ends.
AUTO_GIVE_UP_AFTER = timedelta(hours=23)
SWEEP_RESERVE_S = 6.0  # the sweeper resumes no more auto-top-ups with less time than this left


class AutoTopUps:
    def __init__(
        self,
        org_repo: OrgRepository,
        repo: WalletRepository,
        gateway: StripeGateway,
        clock: Clock,
        poster: WalletPoster,
    ):
        self._org_repo = org_repo
        self._repo = repo
        self._gateway = gateway
        self._clock = clock
        self._poster = poster

    def claim(self, org: Org, stored: StoredWallet, after: WalletAccount) -> tuple[AutoTopUp | None, TopUp | None]:
        """In a bill's own transaction: the org's one in-flight auto-top-up, claimed if one is due."""
        auto = stored.auto
        if (
            wallet_mode(stored, org) is not BillingMode.AGENCY  # the org pays the platforms itself now
            or not org.agency_spend_open(self._clock.now())  # its subscription is unpaid
            or not auto.enabled
            or auto.in_flight
            or after.balance >= auto.threshold_minor
        ):
            return None, None
        now = self._clock.now()
        today = now.date().isoformat()
        spent_today = auto.day_total if auto.day == today else 0
        if spent_today + auto.amount_minor > auto.daily_cap_minor:
            logger.info("auto-top-up daily cap reached", extra={"org_id": org.org_id})
            return None, None
        topup_id = "tu_auto_" + hashlib.sha256(f"{org.org_id}:{stored.version}".encode()).hexdigest()[:20]
        claim = TopUp(
            topup_id, "auto_card", auto.amount_minor, org.currency, "processing", iso(now), "system:auto-top-up"
        )
        return replace(auto, in_flight=topup_id, day=today, day_total=spent_today + auto.amount_minor), claim

    def run(self, org: Org, topup: TopUp) -> None:
        """Makes the claim's next attempt (one): its payment intent is recorded, or a decline schedules the
        next attempt (the last one turns auto-top-up off). A Stripe outage or timeout leaves the claim to
        the sweeper, which makes the same attempt again with the same key and parameters (the card, amount
        and currency the claim recorded): an attempt Stripe already made replays, none is charged twice."""
        attempt = (topup.attempts or 0) + 1
        try:
            card = self._claim_card(org, topup)
            intent = self._charge(org, topup, card, attempt) if card else None
        except (UpstreamError, ThrottledError):
            logger.warning(
                "auto-top-up interrupted; the sweeper resumes it", extra={"org_id": org.org_id}, exc_info=True
            )
            return
        if intent:
            recorded = self._repo.set_topup(
                org.org_id, topup.topup_id, {"payment_intent_id": intent, "attempts": attempt}
            )
            self._failed_meanwhile(org, recorded, intent)
            return
        self._attempt_failed(org, topup.topup_id, attempt, last=card is None)

    def _failed_meanwhile(self, org: Org, recorded: TopUp | None, intent: str) -> None:
        """An attempt Stripe failed before we recorded its intent (the reply was lost and replayed, and the
        failure's webhook found no intent to match): counted now, from Stripe's object."""
        if recorded is None or recorded.status != "processing":
            return
        try:
            status = self._gateway.get_payment_intent(intent).status
        except (UpstreamError, ThrottledError):
            return  # (rare: a second outage at this very moment; the daily reconciliation is the backstop)
        if status in ("requires_payment_method", "canceled"):
            self.payment_failed(org, recorded, intent)

    def payment_failed(self, org: Org, topup: TopUp, payment_intent_id: str) -> bool:
        """Stripe says an attempt's payment failed after it was made (payment_intent.payment_failed): it
        counts as a failed attempt, once. False when it is not the claim's current attempt (one that
        failed at once and was counted then, or a claim that ended)."""
        stored = self._repo.get(org.org_id)
        if (
            topup.payment_intent_id != payment_intent_id
            or topup.status != "processing"
            or stored is None
            or stored.auto.in_flight != topup.topup_id
        ):
            return False
        return self._attempt_failed(org, topup.topup_id, topup.attempts or 1, failed_intent=payment_intent_id)

    def _attempt_failed(
        self, org: Org, topup_id: str, attempt: int, *, last: bool = False, failed_intent: str | None = None
    ) -> bool:
        if last or attempt >= MAX_AUTO_ATTEMPTS:
            return self._disable(org, topup_id, attempt)
        retry_at = self._clock.now() + AUTO_RETRY_AFTER[attempt - 1]
        logger.info("auto-top-up attempt failed; retried later", extra={"org_id": org.org_id, "attempt": attempt})
        return self._repo.reschedule_auto_top_up(org.org_id, topup_id, attempt, iso(retry_at), failed_intent)

    def _claim_card(self, org: Org, topup: TopUp) -> str | None:
        """The card this claim charges: the one it recorded, else the customer's saved card (recorded now,
        so a resumed attempt sends exactly what the first did). None when there is no card to charge."""
        if topup.payment_method:
            return topup.payment_method
        try:
            card = self._gateway.default_card(org.stripe_customer_id) if org.stripe_customer_id else None
        except InvalidRequestError:  # the customer is gone (deleted in Stripe)
            logger.exception("auto-top-up: no Stripe customer to charge", extra={"org_id": org.org_id})
            return None
        if card:
            self._repo.set_topup(org.org_id, topup.topup_id, {"payment_method": card}, unlist=False)
        return card

    def _charge(self, org: Org, topup: TopUp, card: str, attempt: int) -> str | None:
        """One attempt's payment intent; None when the card was declined or Stripe refused the charge."""
        metadata = {"org_id": org.org_id, "kind": "wallet_topup", "topup_id": topup.topup_id, "method": "auto_card"}
        try:
            return self._gateway.charge_card(
                customer_id=org.stripe_customer_id or "",
                payment_method=card,
                amount_minor=topup.amount_minor,
                currency=topup.currency or org.currency,  # the wallet's, when the claim was made
                metadata=metadata,
                key=f"wallet-topup:{topup.topup_id}:{attempt}",
            )
        except PaymentDeclinedError:
            return None
        except InvalidRequestError:
            logger.exception("auto-top-up charge refused by Stripe", extra={"org_id": org.org_id})
            return None

    # ------------------------------------------------------------------ the sweeper's part
    def resume_stalled(self) -> int:
        """Auto-top-ups interrupted before they had a payment intent are charged again (same keys), or
        ended without a charge when no longer wanted or too old to resume safely. One org's failure never
        stops the others. Returns how many were taken up."""
        now = self._clock.now()
        taken = 0
        for org_id, topup in self._repo.stalled_auto_top_ups(iso(now - AUTO_RESUME_AFTER)):
            left = seconds_left()
            if left is not None and left < SWEEP_RESERVE_S:
                break
            try:
                taken += self._resume(org_id, topup, now)
            except DomainError:
                logger.exception("auto-top-up could not be resumed", extra={"topup_id": topup.topup_id})
        return taken

    def _resume(self, org_id: str, topup: TopUp, now: datetime) -> int:
        stored = self._repo.get(org_id)
        if stored is None or stored.auto.in_flight != topup.topup_id:
            # Credited or ended meanwhile. Ended but still "processing" (the run that ended it stopped
            # before writing so): canceled now, so it never counts as money on its way.
            self._repo.set_topup(org_id, topup.topup_id, {"status": "canceled"}, only_from="processing")
            return 0
        org = self._org_repo.require_org(org_id)
        auto = stored.auto
        unwanted = (
            not auto.enabled  # turned off meanwhile
            or wallet_mode(stored, org) is not BillingMode.AGENCY  # left agency mode
            or stored.account.balance >= auto.threshold_minor  # topped up meanwhile
            or datetime.fromisoformat(topup.created_at) < now - AUTO_GIVE_UP_AFTER  # Stripe forgot the keys
        )
        if unwanted:
            # Ended without a charge. Had an interrupted attempt been charged after all, its
            # payment_intent.succeeded still credits the wallet (topup_succeeded needs no claim).
            self._end_claim(org, topup)
        else:
            self.run(org, topup)
        return 1

    def _end_claim(self, org: Org, topup: TopUp) -> None:
        """Ends a claim without a charge; its amount no longer counts against the day's cap."""
        claimed_on = topup.created_at[:10]

        def build(stored: StoredWallet) -> WalletChange | None:
            auto = stored.auto
            if auto.in_flight != topup.topup_id:
                return None
            total = max(0, auto.day_total - topup.amount_minor) if auto.day == claimed_on else auto.day_total
            return WalletChange(stored.account, auto=replace(auto, in_flight="", day_total=total))

        self._poster.post(org, build)
        self._repo.set_topup(org.org_id, topup.topup_id, {"status": "canceled"}, only_from="processing")

    def _disable(self, org: Org, topup_id: str, attempts: int) -> bool:
        detail = {"org_id": org.org_id, "topup_id": topup_id, "attempts": attempts}
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

        def build(stored: StoredWallet) -> WalletChange | None:
            if stored.auto.in_flight != topup_id:
                return None  # ended already (credited, or turned off by another run): told then
            off = replace(stored.auto, in_flight="", enabled=False, failures=attempts)
            return WalletChange(stored.account, auto=off, messages=told)

        if self._poster.post(org, build) is None:  # only the run that turned it off says so
            return False
        self._repo.set_topup(org.org_id, topup_id, {"status": "failed", "attempts": attempts}, only_from="processing")
        return True
