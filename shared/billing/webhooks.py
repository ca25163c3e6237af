"""What each Stripe event does. Called at most once per event id (the webhook function's
idempotency layer); every action is also safe to repeat and independent of delivery order:
subscription state is re-fetched from Stripe, refunds are planned once and keyed per charge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.billing.refunds import DowngradeRefunds
from shared.billing.subscriptions import SeatSync, SubscriptionMirror
from shared.credits.service import CreditService
from shared.observability import logger
from shared.orgs.repository import OrgRepository
from shared.outbox import Notice, OutboxWriter
from shared.stripe_gateway import StripeGateway, WebhookEvent
from shared.usage.billing import OverageBilling
from shared.wallet.service import WalletService


class StripeEventHandler:
    def __init__(
        self,
        repo: OrgRepository,
        gateway: StripeGateway,
        mirror: SubscriptionMirror,
        seats: SeatSync,
        refunds: DowngradeRefunds,
        outbox: OutboxWriter,
        credits: CreditService,
        overage: OverageBilling,
        wallet: WalletService,
    ):
        self._repo = repo
        self._gateway = gateway
        self.gateway = gateway  # the webhook function verifies signatures with it
        self._mirror = mirror
        self._seats = seats
        self._refunds = refunds
        self._outbox = outbox
        self._credits = credits
        self._overage = overage
        self._wallet = wallet
        self._handlers: dict[str, Callable[[dict[str, Any]], str]] = {
            "checkout.session.completed": self._checkout_completed,
            "customer.subscription.created": self._subscription_changed,
            "customer.subscription.updated": self._subscription_changed,
            "customer.subscription.deleted": self._subscription_changed,
            "invoice.created": self._invoice_seen,
            "invoice.finalized": self._invoice_seen,
            "invoice.paid": self._invoice_paid,
            "invoice.payment_failed": self._invoice_payment_failed,
            "payment_intent.succeeded": self._payment_intent,
            "payment_intent.payment_failed": self._payment_intent,
            "charge.refunded": self._charge_refunded,
            "charge.dispute.created": self._dispute_created,
        }

    def handle(self, event: WebhookEvent) -> str:
        """The outcome, for the log and the reply. Unknown types are acknowledged and ignored."""
        handler = self._handlers.get(event.type)
        if handler is None:
            return "ignored"
        return handler(event.object)

    # ------------------------------------------------------------------ subscriptions
    def _org_for(self, customer: Any, metadata: dict[str, Any] | None = None) -> str | None:
        org_id = (metadata or {}).get("org_id")
        if org_id:
            return str(org_id)
        customer_id = customer if isinstance(customer, str) else (customer or {}).get("id")
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

    def _checkout_completed(self, session: dict[str, Any]) -> str:
        metadata = session.get("metadata") or {}
        org_id = session.get("client_reference_id") or metadata.get("org_id")
        if session.get("mode") == "payment" and metadata.get("kind") == "credit_pack" and org_id:
            if session.get("payment_status") != "paid":
                return "pack_not_paid"
            self._credits.add_pack(str(org_id), credits=int(metadata["credits"]), ref=str(session["id"]))
            return "pack_credited"
        if session.get("mode") != "subscription" or not session.get("subscription") or not org_id:
            return "ignored"
        customer = session.get("customer")
        if isinstance(customer, str):
            self._repo.link_stripe_customer(str(org_id), customer)
        subscription = session["subscription"]
        return self._sync_subscription(
            subscription if isinstance(subscription, str) else subscription["id"], str(org_id)
        )

    def _subscription_changed(self, sub: dict[str, Any]) -> str:
        return self._sync_subscription(str(sub["id"]), self._org_for(sub.get("customer"), sub.get("metadata")))

    # ------------------------------------------------------------------ invoices and payments
    def _invoice_seen(self, invoice: dict[str, Any]) -> str:
        parsed = self._gateway.invoice_of(invoice)
        if parsed.billing_reason != "subscription_cycle" or parsed.status != "draft":
            return "noted"
        org_id = self._org_for(invoice.get("customer"))
        if org_id is None:
            return "unknown_org"
        # Re-read: the draft may have been finalized since the event was sent.
        current = self._gateway.get_invoice(parsed.invoice_id) if parsed.invoice_id else parsed
        return f"overage_billed {self._overage.bill_renewal(org_id, current)}"

    def _invoice_paid(self, invoice: dict[str, Any]) -> str:
        parsed = self._gateway.invoice_of(invoice)
        org_id = self._org_for(invoice.get("customer"))
        if org_id is None:
            return "unknown_org"
        outcome = "paid"
        if parsed.subscription_id:
            outcome = self._sync_subscription(parsed.subscription_id, org_id)
        if parsed.billing_reason == "subscription_update" and parsed.total_minor < 0 and parsed.invoice_id:
            refunded = self._refunds.refund_credit(org_id, parsed)
            outcome += f", refunded {refunded}"
        return outcome

    def _invoice_payment_failed(self, invoice: dict[str, Any]) -> str:
        parsed = self._gateway.invoice_of(invoice)
        org_id = self._org_for(invoice.get("customer"))
        if org_id is None:
            return "unknown_org"
        if parsed.subscription_id:
            self._sync_subscription(parsed.subscription_id, org_id)
        notice = Notice(
            "Payment.Failed",
            "Layers: your subscription payment failed",
            f"We could not charge {parsed.amount_due_minor} {parsed.currency} (minor units) for invoice "
            f"{parsed.number or parsed.invoice_id}. Update your card in the billing portal to keep your plan.",
            {
                "invoice_id": parsed.invoice_id,
                "amount_due_minor": parsed.amount_due_minor,
                "currency": parsed.currency,
                "attempt_count": invoice.get("attempt_count"),
            },
        )
        self._outbox.send(org_id, f"invoice-failed:{parsed.invoice_id}:{invoice.get('attempt_count')}", [notice])
        return "past_due_notified"

    def _payment_intent(self, intent: dict[str, Any]) -> str:
        metadata = intent.get("metadata") or {}
        if metadata.get("kind") != "wallet_topup" or not metadata.get("org_id"):
            return "noted"  # credit packs are credited on checkout.session.completed
        if intent.get("status") == "succeeded":
            charge = intent.get("latest_charge")
            credited = self._wallet.topup_succeeded(
                org_id=metadata["org_id"],
                topup_id=metadata["topup_id"],
                payment_intent_id=str(intent["id"]),
                charge_id=charge if isinstance(charge, str) or charge is None else charge["id"],
                amount_minor=int(intent["amount_received"] or intent["amount"]),
            )
            return "wallet_credited" if credited else "wallet_already_credited"
        if intent.get("status") in ("requires_payment_method", "canceled") and metadata.get("method") != "auto_card":
            # (auto-top-up charges are retried and reported by the wallet itself)
            self._wallet.topup_failed(
                org_id=metadata["org_id"], topup_id=metadata["topup_id"], payment_intent_id=str(intent["id"])
            )
            return "wallet_topup_failed"
        return "noted"

    def _charge_refunded(self, charge: dict[str, Any]) -> str:
        return "noted"

    def _dispute_created(self, dispute: dict[str, Any]) -> str:
        charge = dispute.get("charge")
        charge_id = charge if isinstance(charge, str) else (charge or {}).get("id")
        if charge_id and self._wallet.dispute(
            charge_id=str(charge_id), dispute_id=str(dispute["id"]), amount_minor=int(dispute.get("amount") or 0)
        ):
            return "wallet_reversed"
        org_id = self._org_for(dispute.get("customer")) if dispute.get("customer") else None
        if org_id:
            notice = Notice(
                "Payment.Disputed",
                "Layers: a payment was disputed",
                f"A payment of {dispute.get('amount')} (minor units) was disputed.",
                {"charge_id": charge_id, "reason": dispute.get("reason")},
            )
            self._outbox.send(org_id, f"dispute:{dispute['id']}", [notice])
        return "dispute_noted"
