"""Prorated refunds of mid-cycle downgrades.

A downgrade invoices the proration immediately; its negative total becomes a Stripe customer credit.
We refund that credit to the card(s) that paid, newest charge first, and consume the credit so it is
not also applied to the next invoice. The split across charges is planned once and stored before any
Stripe call, so a retry (even after Stripe's 24 h idempotency window) repeats the same requests with
the same keys and never refunds twice."""

from __future__ import annotations

from typing import Any

from shared.clock import Clock, iso
from shared.dynamo import TransactionConditionFailed, dynamo_errors, plain
from shared.stripe_gateway import Invoice, StripeGateway


class RefundPlanRepository:
    def __init__(self, table: Any):
        self._table = table

    def plan_once(self, org_id: str, plan: dict[str, Any]) -> dict[str, Any]:
        """Stores the plan for its invoice unless one exists; returns the stored one."""
        key = {"PK": f"ORG#{org_id}", "SK": f"REFUND#{plan['invoice_id']}"}
        try:
            with dynamo_errors():
                self._table.put_item(
                    Item={**key, "type": "refund", **plan}, ConditionExpression="attribute_not_exists(PK)"
                )
        except TransactionConditionFailed:
            with dynamo_errors():
                return plain(self._table.get_item(Key=key, ConsistentRead=True)["Item"])
        return plan

    def mark_done(self, org_id: str, invoice_id: str) -> None:
        with dynamo_errors():
            self._table.update_item(
                Key={"PK": f"ORG#{org_id}", "SK": f"REFUND#{invoice_id}"},
                UpdateExpression="SET #s = :done",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": "refunded"},
            )


class DowngradeRefunds:
    def __init__(self, repo: RefundPlanRepository, gateway: StripeGateway, clock: Clock):
        self._repo = repo
        self._gateway = gateway
        self._clock = clock

    def refund_credit(self, org_id: str, invoice: Invoice) -> int:
        """Refunds the credit a downgrade invoice created (minor units refunded). Idempotent per invoice."""
        assert invoice.invoice_id is not None
        # Only what is still on the customer's balance: a renewal may already have used the credit.
        credit = min(-invoice.total_minor, max(0, -self._gateway.customer_balance(invoice.customer_id)))
        allocations: list[dict[str, Any]] = []
        left = credit
        for charge in sorted(self._gateway.list_charges(customer_id=invoice.customer_id), key=lambda c: -c.created):
            take = min(left, charge.refundable_minor)
            if take > 0 and charge.currency == invoice.currency:
                allocations.append({"charge_id": charge.charge_id, "amount_minor": take})
                left -= take
        plan = self._repo.plan_once(
            org_id,
            {
                "invoice_id": invoice.invoice_id,
                "credit_minor": credit,
                "currency": invoice.currency,
                "allocations": allocations,
                "status": "planned",
                "created_at": iso(self._clock.now()),
            },
        )
        refunded = 0
        for allocation in plan["allocations"]:
            charge_id, amount = str(allocation["charge_id"]), int(allocation["amount_minor"])
            self._gateway.refund(
                charge_id=charge_id,
                amount_minor=amount,
                metadata={"org_id": org_id, "invoice_id": invoice.invoice_id, "reason": "prorated_downgrade"},
                key=f"refund:{invoice.invoice_id}:{charge_id}",
            )
            refunded += amount
        if refunded:
            # The refunded part of the credit must not also reduce the next invoice.
            self._gateway.adjust_customer_balance(
                customer_id=invoice.customer_id,
                amount_minor=refunded,
                currency=invoice.currency,
                description=f"Refunded to card: prorated downgrade ({invoice.invoice_id})",
                key=f"refund-balance:{invoice.invoice_id}",
            )
        self._repo.mark_done(org_id, invoice.invoice_id)
        return refunded
