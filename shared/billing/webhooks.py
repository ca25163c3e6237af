"""What each Stripe event does. Called at most once per event id (the webhook function's
idempotency layer); every action is also safe to repeat and independent of delivery order:
subscription state is re-fetched from Stripe, refunds are planned once and keyed per charge."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.billing.refunds import DowngradeRefunds
from shared.billing.subscriptions import SeatSync, SubscriptionMirror
from shared.credits.service import CreditService
from shared.observability import logger
from shared.orgs.repository import OrgRepository
from shared.outbox import Notice, OutboxWriter
from shared.stripe_gateway import (
    CheckoutSession,
    Dispute,
    PaymentIntent,
    StripeGateway,
    SubscriptionChange,
    WebhookEvent,
)
from shared.stripe_gateway import Invoice as StripeInvoice
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
        self._handlers: dict[str, Callable[[WebhookEvent], str]] = {
            "checkout.session.completed": lambda e: self._checkout_completed(e.checkout_session()),
            "customer.subscription.created": lambda e: self._subscription_changed(e.subscription_change()),
            "customer.subscription.updated": lambda e: self._subscription_changed(e.subscription_change()),
            "customer.subscription.deleted": lambda e: self._subscription_changed(e.subscription_change()),
            "invoice.created": lambda e: self._invoice_seen(e.invoice()),
            "invoice.finalized": lambda e: self._invoice_seen(e.invoice()),
            "invoice.paid": lambda e: self._invoice_paid(e.invoice()),
            "invoice.payment_failed": lambda e: self._invoice_payment_failed(e.invoice()),
            "payment_intent.succeeded": lambda e: self._payment_intent(e.payment_intent()),
            "payment_intent.payment_failed": lambda e: self._payment_intent(e.payment_intent()),
            "charge.refunded": lambda e: "noted",
            "charge.dispute.created": lambda e: self._dispute_created(e.dispute()),
        }

    def handle(self, event: WebhookEvent) -> str:
        """The outcome, for the log and the reply. Unknown types are acknowledged and ignored."""
        handler = self._handlers.get(event.type)
        if handler is None:
            return "ignored"
        return handler(event)

    # ------------------------------------------------------------------ subscriptions
    def _org_for(self, customer_id: str | None, metadata: Mapping[str, str] | None = None) -> str | None:
        org_id = (metadata or {}).get("org_id")
        if org_id:
            return str(org_id)
        return self._repo.org_id_for_customer(customer_id) if customer_id else None

    def _sync_subscription(self, subscription_id: str, org_id: str | None) -> str:
        fetched = self._mirror.now_ms()
        sub = self._gateway.get_subscription(subscription_id)
        org_id = org_id or self._org_for(sub.customer_id, sub.metadata)
        if org_id is None:
            logger.warning("subscription for an unknown org", extra={"subscription_id": subscription_id})
            return "unknown_org"
        org = self._mirror.apply(org_id, sub, fetched)
        if org is None:
            return "stale"
        self._seats.seats_changed(org_id)
        return f"subscription_{sub.status}"

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
        if session.customer_id is not None:
            self._repo.link_stripe_customer(str(org_id), session.customer_id)
        return self._sync_subscription(session.subscription_id, str(org_id))

    def _subscription_changed(self, sub: SubscriptionChange) -> str:
        return self._sync_subscription(sub.subscription_id, self._org_for(sub.customer_id, sub.metadata))

    # ------------------------------------------------------------------ invoices and payments
    def _invoice_seen(self, invoice: StripeInvoice) -> str:
        if invoice.billing_reason != "subscription_cycle" or invoice.status != "draft":
            return "noted"
        org_id = self._org_for(invoice.customer_id)
        if org_id is None:
            return "unknown_org"
        # Re-read: the draft may have been finalized since the event was sent.
        current = self._gateway.get_invoice(invoice.invoice_id) if invoice.invoice_id else invoice
        return f"overage_billed {self._overage.bill_renewal(org_id, current)}"

    def _invoice_paid(self, invoice: StripeInvoice) -> str:
        org_id = self._org_for(invoice.customer_id)
        if org_id is None:
            return "unknown_org"
        outcome = "paid"
        if invoice.subscription_id:
            outcome = self._sync_subscription(invoice.subscription_id, org_id)
        if invoice.billing_reason == "subscription_update" and invoice.total_minor < 0 and invoice.invoice_id:
            refunded = self._refunds.refund_credit(org_id, invoice)
            outcome += f", refunded {refunded}"
        return outcome

    def _invoice_payment_failed(self, invoice: StripeInvoice) -> str:
        org_id = self._org_for(invoice.customer_id)
        if org_id is None:
            return "unknown_org"
        if invoice.subscription_id:
            self._sync_subscription(invoice.subscription_id, org_id)
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

    def _payment_intent(self, intent: PaymentIntent) -> str:
        metadata = intent.metadata
        if metadata.get("kind") != "wallet_topup" or not metadata.get("org_id"):
            return "noted"  # credit packs are credited on checkout.session.completed
        if intent.status == "succeeded":
            credited = self._wallet.topup_succeeded(
                org_id=metadata["org_id"],
                topup_id=metadata["topup_id"],
                payment_intent_id=intent.intent_id,
                charge_id=intent.latest_charge_id,
                amount_minor=int(intent.amount_received_minor or intent.amount_minor),
            )
            return "wallet_credited" if credited else "wallet_already_credited"
        if intent.status in ("requires_payment_method", "canceled") and metadata.get("method") != "auto_card":
            # (auto-top-up charges are retried and reported by the wallet itself)
            self._wallet.topup_failed(
                org_id=metadata["org_id"], topup_id=metadata["topup_id"], payment_intent_id=intent.intent_id
            )
            return "wallet_topup_failed"
        return "noted"

    def _dispute_created(self, dispute: Dispute) -> str:
        charge_id = dispute.charge_id
        if charge_id and self._wallet.dispute(
            charge_id=charge_id, dispute_id=dispute.dispute_id, amount_minor=int(dispute.amount_minor or 0)
        ):
            return "wallet_reversed"
        org_id = self._org_for(dispute.customer_id) if dispute.customer_id else None
        if org_id:
            notice = Notice(
                "Payment.Disputed",
                "Layers: a payment was disputed",
                f"A payment of {dispute.amount_minor} (minor units) was disputed.",
                {"charge_id": charge_id, "reason": dispute.reason},
            )
            self._outbox.send(org_id, f"dispute:{dispute.dispute_id}", [notice])
        return "dispute_noted"
