"""Wallet top-ups by card (saved card off-session, else Checkout), ACH and wire: recorded before Stripe
is called, credited once when Stripe says the money arrived (payment_intent.succeeded)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import timedelta

from shared.auth import Caller
from shared.clock import Clock, iso
from shared.errors import ConflictError, InvalidRequestError, PaymentDeclinedError
from shared.ledger import Cause
from shared.orgs.models import MANAGE_BILLING, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Notice
from shared.stripe_gateway import PaymentIntent, StripeGateway
from shared.wallet.account import EntryKind
from shared.wallet.models import ChargeLink, StoredWallet, TopUp, TopUpSet, WalletChange
from shared.wallet.poster import WalletPoster, agency, agency_spend_open, spend_stopped
from shared.wallet.repository import Duplicate, WalletRepository

_OPEN_TOPUP = ("creating", "awaiting_checkout", "processing", "pending")
CHECKOUT_LIFETIME = timedelta(hours=24)  # a Checkout session older than this brings nothing


def _topup_id(org_id: str, key: str) -> str:
    return "tu_" + hashlib.sha256(f"{org_id}:{key}".encode()).hexdigest()[:24]


# The bank rails a wallet can be topped up on, per currency: ACH debits (us_bank_account) and wires to
# the customer balance (us_bank_transfer) are US-dollar rails. EUR would take SEPA Direct Debit and an EU
# bank transfer (eu_bank_transfer, which needs the customer's country); until those are offered, a
# non-USD wallet tops up by card and a bank top-up is refused before anything is written.
BANK_RAILS: dict[str, frozenset[str]] = {"USD": frozenset({"ach", "wire"})}


def check_bank_rails(method: str, currency: str) -> None:
    if method != "card" and method not in BANK_RAILS.get(currency.upper(), frozenset()):
        raise InvalidRequestError(
            f"{method.upper()} top-ups are not offered for {currency.upper()} wallets yet: top up by card.",
            code="bank_method_unsupported_for_currency",
            details={"method": method, "currency": currency.upper()},
        )


@dataclass(frozen=True)
class Credit:
    """Stripe's word that a top-up's money arrived."""

    org_id: str
    topup_id: str
    payment_intent_id: str
    charge_id: str | None
    amount_minor: int


class TopUps:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: WalletRepository,
        gateway: StripeGateway,
        clock: Clock,
        poster: WalletPoster,
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._gateway = gateway
        self._clock = clock
        self._poster = poster

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
    ) -> TopUp:
        """Starts a top-up; the wallet is credited when Stripe says the money arrived (webhook).
        Card: the saved card off-session, else a Checkout URL. ACH / wire: pending until funds arrive."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        check_bank_rails(method, org.currency)
        topup_id = _topup_id(org_id, idempotency_key)
        existing = self._repo.topup(org_id, topup_id)
        if existing and (existing.amount_minor, existing.method) != (amount_minor, method):
            raise ConflictError(
                "This Idempotency-Key started a top-up of another amount or method; use a new key for a new one.",
                code="idempotency_key_reused",
            )
        if existing and existing.status != "creating":
            return existing
        if existing is None and not agency_spend_open(org, self._clock.now()):
            self._check_deficit_top_up(org, amount_minor)
        # A top-up still "creating" never reached Stripe's answer (an error or a crash): a retry carries
        # on with the same Stripe idempotency key, so Stripe acts at most once.
        customer = org.stripe_customer_id or self._customer(org, caller)
        topup = existing or TopUp(
            topup_id, method, amount_minor, org.currency, "creating", iso(self._clock.now()), caller.user_id
        )
        if existing is None:
            topup = replace(topup, idempotency_key=idempotency_key)
            try:
                self._repo.create_topup(org_id, topup)
            except Duplicate:
                return self._repo.topup(org_id, topup_id) or topup
        if topup.method == "card":
            return self._by_card(org, customer, topup, return_url)
        return self._by_bank(org, customer, topup, payment_method)

    def _by_card(self, org: Org, customer: str, topup: TopUp, return_url: str | None) -> TopUp:
        key, metadata = f"wallet-topup:{topup.topup_id}", _metadata(org, topup)
        card = self._gateway.default_card(customer)
        if card is None:
            session_id, url = self._gateway.create_payment_checkout(
                customer_id=customer,
                name="Layers ad wallet top-up",
                amount_minor=topup.amount_minor,
                currency=topup.currency,
                metadata=metadata,
                success_url=return_url or "https://app.layers.com",
                cancel_url=return_url or "https://app.layers.com",
                key=key,
            )
            values: dict[str, object] = {"status": "awaiting_checkout", "checkout_url": url}
            return self._update(org, topup, values | {"checkout_session_id": session_id})
        try:
            intent = self._gateway.charge_card(
                customer_id=customer,
                payment_method=card,
                amount_minor=topup.amount_minor,
                currency=topup.currency,
                metadata=metadata,
                key=key,
            )
        except PaymentDeclinedError:
            self._update(org, topup, {"status": "failed"})
            raise
        return self._update(org, topup, {"status": "processing", "payment_intent_id": intent})

    def _by_bank(self, org: Org, customer: str, topup: TopUp, payment_method: str | None) -> TopUp:
        intent, instructions = self._gateway.start_bank_payment(
            customer_id=customer,
            method=topup.method,
            amount_minor=topup.amount_minor,
            currency=topup.currency,
            metadata=_metadata(org, topup),
            key=f"wallet-topup:{topup.topup_id}",
            payment_method=payment_method,
        )
        values: dict[str, object] = {"status": "pending", "payment_intent_id": intent, "instructions": instructions}
        self._pending(org, topup, values)
        return self._repo.topup(org.org_id, topup.topup_id) or topup

    def _pending(self, org: Org, topup: TopUp, values: dict[str, object]) -> None:
        """The money counts as on its way, and the record says `pending`, in one wallet change, unless
        Stripe's credit came first (a wire paid at once from the cash balance): a credit and this change
        are both versioned wallet changes, so one always sees the other."""

        def build(stored: StoredWallet) -> WalletChange | None:
            now = self._repo.topup(org.org_id, topup.topup_id)
            if now is None or now.status != "creating":
                return None  # credited (or failed) meanwhile: nothing is on its way
            after = replace(stored.account, pending=stored.account.pending + topup.amount_minor)
            cause = Cause(f"topup-pending:{topup.topup_id}")
            return WalletChange(after, cause=cause, records=[TopUpSet(topup.topup_id, values)])

        if self._poster.post(org, build) is None:  # still record what to show the customer
            shown = {k: v for k, v in values.items() if k != "status"}
            self._repo.set_topup(org.org_id, topup.topup_id, shown, unlist=False)

    def _check_deficit_top_up(self, org: Org, amount_minor: int) -> None:
        """Out of agency mode a wallet takes money only to settle what late bills left it owing, less
        what top-ups still on their way will bring."""
        stored = self._repo.get(org.org_id)
        deficit = stored.account.deficit if stored else 0
        if not deficit:
            agency(org)
            raise spend_stopped()
        stale = iso(self._clock.now() - CHECKOUT_LIFETIME)
        on_the_way = sum(
            t.amount_minor
            for t in self._repo.topups(org.org_id)
            if t.status in _OPEN_TOPUP and not (t.status == "awaiting_checkout" and t.created_at < stale)
        )
        owed = max(0, deficit - on_the_way)
        if amount_minor > owed:
            raise InvalidRequestError(
                f"Without agency spend, a top-up settles only what the wallet owes ({owed} once the top-ups "
                "on their way arrive).",
                code="amount_exceeds_deficit",
                details={"deficit_minor": deficit, "on_the_way_minor": on_the_way, "requested_minor": amount_minor},
            )

    def _customer(self, org: Org, caller: Caller) -> str:
        created = self._gateway.create_customer(org_id=org.org_id, name=org.name, email=caller.email)
        return self._org_repo.link_stripe_customer(org.org_id, created)

    def _update(self, org: Org, topup: TopUp, values: dict[str, object]) -> TopUp:
        """Only from the status it was read in: a credit that landed meanwhile (the webhook was faster than
        Stripe's reply to us) is never overwritten."""
        updated = self._repo.set_topup(org.org_id, topup.topup_id, values, only_from=topup.status, unlist=False)
        if updated is None:
            shown = {k: v for k, v in values.items() if k != "status"}
            updated = self._repo.set_topup(org.org_id, topup.topup_id, shown, unlist=False)
        return updated or topup

    # ------------------------------------------------------------------ Stripe's answers (webhooks)
    def topup_for(self, intent: PaymentIntent) -> TopUp | None:
        """The top-up a PaymentIntent (as re-read from Stripe) pays (`paid_by`), None for none."""
        paid = self.paid_by(intent)
        return paid[1] if paid else None

    def paid_by(self, intent: PaymentIntent) -> tuple[Org, TopUp] | None:
        """The org and top-up a PaymentIntent (as re-read from Stripe) pays, when our record and Stripe's
        object agree: the org and top-up its metadata names exist, the intent is the org's customer's, in the
        top-up's currency, and the intent our record holds (card, ACH, wire; an auto-top-up's attempts
        each have their own). None otherwise: a payment we did not ask for moves nothing."""
        org_id, topup_id = intent.metadata.get("org_id"), intent.metadata.get("topup_id")
        org = self._org_repo.get_org(org_id) if org_id else None
        topup = self._repo.topup(org_id, topup_id) if org is not None and org_id and topup_id else None
        if org is None or topup is None:
            return None
        mismatch = (
            intent.customer_id != org.stripe_customer_id
            or intent.currency != (topup.currency or org.currency).upper()
            or (topup.method != "auto_card" and topup.payment_intent_id not in (None, intent.intent_id))
        )
        return None if mismatch else (org, topup)

    def topup_succeeded(
        self,
        *,
        org_id: str,
        topup_id: str,
        payment_intent_id: str,
        charge_id: str | None,
        amount_minor: int,
        org: Org | None = None,
    ) -> bool:
        """Credits a top-up once (Stripe's payment_intent.succeeded). False on a replay. `org`: as the caller
        just read it (`paid_by`; None: read here)."""
        credit = Credit(org_id, topup_id, payment_intent_id, charge_id, amount_minor)
        org = org or self._org_repo.require_org(org_id)
        posted = self._poster.post(org, lambda stored: self._credit_change(stored, credit))
        return posted is not None and not posted.replay

    def _credit_change(self, stored: StoredWallet, credit: Credit) -> WalletChange:
        # Read in the change (retried with it): a bank top-up counts as on its way only while `pending`
        # (one reported failed first was taken off then; one still `creating` was never put on).
        topup = self._repo.topup(credit.org_id, credit.topup_id)
        method = topup.method if topup else "card"
        account = stored.account
        if topup is not None and topup.method in ("ach", "wire") and topup.status == "pending":
            account = replace(account, pending=max(0, account.pending - credit.amount_minor))
        after, movements, _ = account.move((EntryKind.TOPUP, credit.amount_minor))
        auto = None
        if stored.auto.in_flight == credit.topup_id:
            auto = replace(stored.auto, in_flight="", failures=0)
        credited: dict[str, object] = {
            "status": "succeeded",
            "charge_id": credit.charge_id or "",
            "refunded_minor": 0,
            "payment_intent_id": credit.payment_intent_id,
            "credited_at": iso(self._clock.now()),
            "method": method,
            "amount_minor": credit.amount_minor,
            "topup_id": credit.topup_id,
        }
        records: list[TopUpSet | ChargeLink] = [TopUpSet(credit.topup_id, credited)]
        if credit.charge_id:
            records.append(ChargeLink(credit.charge_id, credit.topup_id))
        return WalletChange(
            after,
            movements,
            entry={
                "ref": f"payment_intent:{credit.payment_intent_id}",
                "actor": "stripe",
                "idempotency_key": f"topup:{credit.payment_intent_id}",
                "method": method,
            },
            auto=auto,
            cause=Cause(f"topup-credit:{credit.payment_intent_id}", {"topup_id": credit.topup_id}),
            records=records,
        )

    def topup_failed(self, *, org_id: str, topup_id: str, payment_intent_id: str, org: Org | None = None) -> None:
        """A top-up's payment failed (card decline, ACH return before settlement). Once per intent. The
        record, what is on its way and the notice change together, in one wallet change: a credit that
        landed meanwhile (it did not fail after all) is never overwritten, nor is pending lowered twice.
        `org`: as the caller just read it (`paid_by`; None: read here)."""
        org = org or self._org_repo.require_org(org_id)
        notice = Notice(
            "Wallet.TopUpFailed",
            "Layers: a wallet top-up failed",
            "A top-up of your ad wallet could not be collected.",
            {"topup_id": topup_id},
        )

        def build(stored: StoredWallet) -> WalletChange | None:
            topup = self._repo.topup(org_id, topup_id)
            if topup is None or topup.status in ("failed", "succeeded"):
                return None
            on_the_way = topup.method in ("ach", "wire") and topup.status == "pending"
            pending = max(0, stored.account.pending - topup.amount_minor) if on_the_way else stored.account.pending
            told = replace(notice, details={**notice.details, "amount_minor": topup.amount_minor})
            return WalletChange(
                replace(stored.account, pending=pending),
                cause=Cause(f"topup-failed:{payment_intent_id}"),
                records=[TopUpSet(topup_id, {"status": "failed"})],
                messages=[told],
            )

        self._poster.post(org, build)


def _metadata(org: Org, topup: TopUp) -> dict[str, str]:
    return {"org_id": org.org_id, "kind": "wallet_topup", "topup_id": topup.topup_id, "method": topup.method}
