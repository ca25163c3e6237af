"""What each Stripe event does. Called at most once per event id (the webhook function's
idempotency layer); every action is also safe to repeat and independent of delivery order:
subscription state is re-fetched from Stripe, refunds are planned once and keyed per charge."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from shared.billing.refunds import DowngradeRefunds
from shared.billing.subscriptions import ENDED, SeatSync, SubscriptionMirror
from shared.credits.service import CreditService
from shared.errors import InvalidRequestError, MalformedWebhookError, NotFoundError
from shared.observability import logger
from shared.orgs.models import Org, SubscriptionStatus
from shared.orgs.repository import OrgRepository
from shared.outbox import Notice, OutboxWriter
from shared.stripe_gateway import (
    DISPUTE_INQUIRIES,
    CheckoutSession,
    Dispute,
    PaymentIntent,
    Refund,
    StripeGateway,
    SubscriptionChange,
    WebhookEvent,
)
from shared.stripe_gateway import Invoice as StripeInvoice
from shared.stripe_gateway import Subscription as StripeSubscription
from shared.usage.billing import OverageBilling
from shared.wallet.service import WalletService


@dataclass(frozen=True)
class SubscriptionSide:
    """What the subscription events act on: the mirror of Stripe's subscription, seats, downgrade refunds."""

    mirror: SubscriptionMirror
    seats: SeatSync
    refunds: DowngradeRefunds


@dataclass(frozen=True)
class MoneySide:
    """What the payment events act on: credit packs, overage on renewals, the wallet."""

    credits: CreditService
    overage: OverageBilling
    wallet: WalletService


class StripeEventHandler:
    def __init__(
        self,
        repo: OrgRepository,
        gateway: StripeGateway,
        subscriptions: SubscriptionSide,
        money: MoneySide,
        outbox: OutboxWriter,
    ):
        self._repo = repo
        self._gateway = gateway
        self.gateway = gateway  # the webhook function verifies signatures with it
        self._mirror = subscriptions.mirror
        self._seats = subscriptions.seats
        self._refunds = subscriptions.refunds
        self._outbox = outbox
        self._credits = money.credits
        self._overage = money.overage
        self._wallet = money.wallet
        # Each event type: its object read as what it is, then what it does.
        self._handlers: dict[str, Callable[[WebhookEvent], Callable[[], str]]] = {
            "checkout.session.completed": lambda e: partial(self._checkout_completed, e.checkout_session()),
            "customer.subscription.created": lambda e: partial(self._subscription_changed, e.subscription_change()),
            "customer.subscription.updated": lambda e: partial(self._subscription_changed, e.subscription_change()),
            "customer.subscription.deleted": lambda e: partial(self._subscription_changed, e.subscription_change()),
            "invoice.created": lambda e: partial(self._invoice_seen, e.invoice()),
            "invoice.finalized": lambda e: partial(self._invoice_seen, e.invoice()),
            "invoice.paid": lambda e: partial(self._invoice_paid, e.invoice()),
            "invoice.payment_failed": lambda e: partial(self._invoice_payment_failed, e.invoice()),
            "payment_intent.succeeded": lambda e: partial(self._payment_intent, e.payment_intent()),
            "payment_intent.payment_failed": lambda e: partial(self._payment_intent, e.payment_intent()),
            "payment_intent.canceled": lambda e: partial(self._payment_intent, e.payment_intent()),
            "charge.refunded": lambda e: partial(self._charge_refunds, e.object_id),
            "refund.created": lambda e: partial(self._refund_changed, e.refund()),
            "refund.updated": lambda e: partial(self._refund_changed, e.refund()),
            "refund.failed": lambda e: partial(self._refund_changed, e.refund()),
            "charge.dispute.created": lambda e: partial(self._dispute_created, e.dispute()),
            "charge.dispute.closed": lambda e: partial(self._dispute_closed, e.dispute()),
            "charge.dispute.funds_reinstated": lambda e: partial(self._dispute_closed, e.dispute()),
        }

    def handle(self, event: WebhookEvent) -> str:
        """The outcome, for the log and the reply. Types we do not act on are acknowledged and ignored;
        an object that is not what its type says is refused (MalformedWebhookError: 400), never a 500."""
        read = self._handlers.get(event.type)
        if read is None:
            return "ignored"
        try:
            act = read(event)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedWebhookError(f"The object of this {event.type} event is not a Stripe {event.type}.") from exc
        try:
            return act()
        except InvalidRequestError as exc:
            if exc.code != "stripe_resource_missing":
                raise
            logger.warning("event about an object Stripe does not have", extra={"event_id": event.event_id})
            return "object_missing"

    # ------------------------------------------------------------------ subscriptions
    def _org_for(self, customer_id: str | None, metadata: Mapping[str, str] | None = None) -> str | None:
        org_id = (metadata or {}).get("org_id")
        if org_id:
            return str(org_id)
        return self._repo.org_id_for_customer(customer_id) if customer_id else None

    def _sync_subscription(self, subscription_id: str, org_id: str | None, link: str | None = None) -> str:
        """`link`: Checkout's customer, linked to the org if it has none yet (`_linked`)."""
        fetched = self._mirror.now_ms()
        sub = self._gateway.get_subscription(subscription_id)
        org_id = org_id or self._org_for(sub.customer_id, sub.metadata)
        if org_id is None:
            logger.warning("subscription for an unknown org", extra={"subscription_id": subscription_id})
            return "unknown_org"
        before = self._linked(org_id, link) if link else self._repo.get_org(org_id)
        return self._mirror_fetched(org_id, before, sub, fetched)

    def _customer_synced(self, customer_id: str, subscription_id: str) -> tuple[str | None, str]:
        """An invoice's org (the one its customer is linked to; None: unknown) and its subscription synced
        (`_sync_subscription`). The link and the org the subscription's metadata names are read in one round
        trip: the link decides (when it names another org, that one is read)."""
        fetched = self._mirror.now_ms()
        sub = self._gateway.get_subscription(subscription_id)
        named = sub.metadata.get("org_id")
        org_id, before = (
            self._repo.customer_org(customer_id, str(named)) if named else (self._org_for(customer_id), None)
        )
        if org_id is None:
            return None, "unknown_org"
        return org_id, self._mirror_fetched(org_id, before or self._repo.get_org(org_id), sub, fetched)

    def _invoice_org(self, invoice: StripeInvoice) -> tuple[str | None, str]:
        """The org of an invoice's customer (None: unknown), its subscription synced if it has one (the outcome)."""
        if invoice.subscription_id:
            return self._customer_synced(invoice.customer_id, invoice.subscription_id)
        return self._org_for(invoice.customer_id), "paid"

    def _mirror_fetched(self, org_id: str, before: Org | None, sub: StripeSubscription, fetched: int) -> str:
        """Mirrors the subscription fetched from Stripe at `fetched` (ms) onto the org as read (`before`)."""
        subscription_id = sub.subscription_id
        if before is None or not _is_the_orgs(before, sub):
            logger.warning("a subscription that is not the org's", extra={"subscription_id": subscription_id})
            return "not_ours"
        # Its last period has no renewal to bill its overage: billed while the org still mirrors the
        # subscription as it ran (the mirror ends a contract's terms, and its prices with them). A
        # subscription the mirror never had is billed once mirrored (at its plan). Repeats bill nothing.
        mirrored = before.subscription is not None and before.subscription.subscription_id == sub.subscription_id
        if mirrored:
            self._bill_final(org_id, sub)
        org = self._mirror.apply(org_id, sub, fetched, read=before)
        if org is None:
            return "stale"
        self._seats.seats_changed(org_id, org=org, sub=sub)
        if not mirrored:
            self._bill_final(org_id, sub)
        if sub.status in ENDED and self._overage.collect_deferred(org_id, sub.customer_id):
            return f"subscription_{sub.status}, deferred overage invoiced"
        return f"subscription_{sub.status}"

    def _linked(self, org_id: str, customer_id: str) -> Org:
        """The org (NotFoundError for none), Checkout's customer linked to it first if it has no customer yet
        (`link_stripe_customer`: the org's customer never changes once set). One read: the link writes only
        the customer, so the org is as read with it; linked to another customer meanwhile: read again."""
        org = self._repo.get_org(org_id)
        if org is None:
            raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
        if org.stripe_customer_id is not None:
            return org
        if self._repo.link_stripe_customer(org_id, customer_id) == customer_id:
            return org.model_copy(update={"stripe_customer_id": customer_id})
        return self._repo.require_org(org_id)

    def _bill_final(self, org_id: str, sub: StripeSubscription) -> None:
        """A cancelled subscription's last period (`bill_final`: billed once, by its keys)."""
        if sub.status == SubscriptionStatus.CANCELED:
            ended_at = datetime.fromtimestamp(sub.ended_at or sub.current_period_end, UTC)
            self._overage.bill_final(org_id, sub.customer_id, ended_at)

    def _checkout_completed(self, session: CheckoutSession) -> str:
        metadata = session.metadata
        org_id = session.client_reference_id or metadata.get("org_id")
        if session.mode == "payment" and metadata.get("kind") == "credit_pack" and org_id:
            if session.payment_status != "paid":
                return "pack_not_paid"
            self._credits.add_pack(str(org_id), credits=int(metadata["credits"]), ref=session.session_id)
            return "pack_credited"
        if session.mode != "subscription" or not session.subscription_id or not org_id:
            return "ignored"
        try:
            return self._sync_subscription(session.subscription_id, str(org_id), link=session.customer_id)
        except InvalidRequestError as exc:  # no subscription to mirror (`handle`): the customer is the org's still
            if exc.code == "stripe_resource_missing" and session.customer_id is not None:
                self._repo.link_stripe_customer(str(org_id), session.customer_id)
            raise

    def _subscription_changed(self, sub: SubscriptionChange) -> str:
        return self._sync_subscription(sub.subscription_id, self._org_for(sub.customer_id, sub.metadata))

    # ------------------------------------------------------------------ invoices and payments
    def _invoice_seen(self, invoice: StripeInvoice) -> str:
        """A renewal's draft takes the closed period's overage. Re-read: it may have been finalized since
        the event was sent (then the overage goes on the customer's next invoice: `overage_deferred`)."""
        if invoice.billing_reason != "subscription_cycle" or invoice.invoice_id is None:
            return "noted"
        org_id = self._org_for(invoice.customer_id)
        if org_id is None:
            return "unknown_org"
        billed = self._overage.bill_renewal(org_id, self._gateway.get_invoice(invoice.invoice_id))
        return f"overage_{'deferred' if billed.deferred else 'billed'} {billed.added_minor}"

    def _invoice_paid(self, invoice: StripeInvoice) -> str:
        org_id, outcome = self._invoice_org(invoice)
        if org_id is None:
            return "unknown_org"
        if invoice.billing_reason == "subscription_update" and invoice.total_minor < 0 and invoice.invoice_id:
            refunded = self._refunds.refund_credit(org_id, invoice)
            outcome += f", refunded {refunded}"
        return outcome

    def _invoice_payment_failed(self, invoice: StripeInvoice) -> str:
        org_id, _ = self._invoice_org(invoice)
        if org_id is None:
            return "unknown_org"
        notice = Notice(
            "Payment.Failed",
            "Layers: your subscription payment failed",
            f"We could not charge {invoice.amount_due_minor} {invoice.currency} (minor units) for invoice "
            f"{invoice.number or invoice.invoice_id}. Update your card in the billing portal to keep your plan.",
            {
                "invoice_id": invoice.invoice_id,
                "amount_due_minor": invoice.amount_due_minor,
                "currency": invoice.currency,
                "attempt_count": invoice.attempt_count,
            },
        )
        self._outbox.send(org_id, f"invoice-failed:{invoice.invoice_id}:{invoice.attempt_count}", [notice])
        return "past_due_notified"

    def _payment_intent(self, sent: PaymentIntent) -> str:
        if sent.metadata.get("kind") != "wallet_topup":
            return "noted"  # credit packs are credited on checkout.session.completed
        intent = self._gateway.get_payment_intent(sent.intent_id)  # Stripe's object now, never the payload
        paid = self._wallet.paid_by(intent)
        if paid is None:
            logger.warning("a wallet payment we did not ask for", extra={"payment_intent_id": intent.intent_id})
            return "not_ours"
        org, topup = paid  # the org as just read: handed down, not read again
        org_id = org.org_id
        if intent.status == "succeeded":
            received = intent.amount_received_minor or 0
            if received <= 0:
                return "nothing_received"
            credited = self._wallet.topup_succeeded(
                org_id=org_id,
                topup_id=topup.topup_id,
                payment_intent_id=intent.intent_id,
                charge_id=intent.latest_charge_id,
                amount_minor=received,
                org=org,
            )
            if intent.latest_charge_id:  # refunds Stripe reported before this credit (nothing to link then)
                self._charge_refunds(intent.latest_charge_id)
            return "wallet_credited" if credited else "wallet_already_credited"
        if intent.status not in ("requires_payment_method", "canceled"):
            return "noted"
        if topup.method == "auto_card":
            counted = self._wallet.auto_top_up_failed(org_id, topup, intent.intent_id, org)
            return "auto_top_up_attempt_failed" if counted else "noted"
        self._wallet.topup_failed(org_id=org_id, topup_id=topup.topup_id, payment_intent_id=intent.intent_id, org=org)
        return "wallet_topup_failed"

    def _refund_changed(self, sent: Refund) -> str:
        refund = self._gateway.get_refund(sent.refund_id)
        return self._charge_refunds(refund.charge_id) if refund.charge_id else "noted"

    def _charge_refunds(self, charge_id: str) -> str:
        """Refunds of a top-up's charge made in Stripe (the dashboard) reach the wallet's ledger once."""
        moved = self._wallet.refunds_in_stripe(self._gateway.charge_refunds(charge_id))
        return f"wallet_refunds_reflected {moved}" if moved else "noted"

    def _dispute_closed(self, sent: Dispute) -> str:
        dispute = self._gateway.get_dispute(sent.dispute_id)
        if dispute.status != "won" or not dispute.charge_id:
            return "noted"
        amount = int(dispute.amount_minor or 0)
        won = self._wallet.dispute_won(charge_id=dispute.charge_id, dispute_id=dispute.dispute_id, amount_minor=amount)
        return "wallet_reinstated" if won else "noted"

    def _dispute_created(self, sent: Dispute) -> str:
        dispute = self._gateway.get_dispute(sent.dispute_id)
        charge_id = dispute.charge_id
        inquiry = dispute.status in DISPUTE_INQUIRIES  # no funds withdrawn: the wallet keeps its money
        if (
            charge_id
            and not inquiry
            and self._wallet.dispute(
                charge_id=charge_id, dispute_id=dispute.dispute_id, amount_minor=int(dispute.amount_minor or 0)
            )
        ):
            return "wallet_reversed"
        customer = self._gateway.charge_refunds(charge_id).customer_id if charge_id else None
        org_id = self._org_for(customer) if customer else None
        if org_id:
            notice = Notice(
                "Payment.Disputed",
                "Layers: a payment was disputed",
                f"A payment of {dispute.amount_minor} (minor units) was disputed.",
                {"charge_id": charge_id, "reason": dispute.reason},
            )
            self._outbox.send(org_id, f"dispute:{dispute.dispute_id}", [notice])
        return "dispute_noted"


def _is_the_orgs(org: Org, sub: StripeSubscription) -> bool:
    """Only the org's own customer's subscription is mirrored (metadata alone names no owner), and
    while the org has another one live, that one stays the org's (a stray second Checkout's
    subscription ending must not end the org's plan). One never paid (`incomplete`) may be replaced."""
    if org.stripe_customer_id is not None and sub.customer_id != org.stripe_customer_id:
        return False
    mirrored = org.subscription
    if mirrored is None or mirrored.subscription_id == sub.subscription_id:
        return True
    return mirrored.status in ENDED or mirrored.status is SubscriptionStatus.INCOMPLETE
