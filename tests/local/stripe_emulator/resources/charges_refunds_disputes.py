"""Charges (made by payment intents), refunds, and disputes (with their test helper)."""

from __future__ import annotations

from decimal import Decimal

from .. import fixtures
from ..errors import invalid, param_missing
from ..money import format_unit
from ..params import (
    ANY,
    get_enum,
    get_int,
    get_str,
    merge_metadata,
)
from ..routes import ID, Route, helper, stripe
from ..store import Obj, Store
from .payment_methods import DECLINE_MESSAGES, Card


class Charges:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.renderers["charge"] = self._render_charge

    def new_card_charge(self, pi: Obj, pm: Obj, card: Card) -> Obj:
        ok = card.decline_code is None
        charge_id = fixtures.new_id("ch_")
        charge = fixtures.base(
            "charge",
            id=charge_id,
            amount=pi["amount"],
            amount_captured=pi["amount"] if ok else 0,
            amount_refunded=0,
            balance_transaction=fixtures.new_id("txn_") if ok else None,
            billing_details=pm["billing_details"],
            captured=ok,
            created=self.store.now(pi["customer"]),
            currency=pi["currency"],
            customer=pi["customer"],
            description=pi["description"],
            failure_code=None if ok else "card_declined",
            failure_message=None if ok else DECLINE_MESSAGES.get(card.decline_code or "", "Your card was declined."),
            metadata=dict(pi["metadata"]),
            outcome={
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if ok else "declined_by_network",
                "reason": None if ok else card.decline_code,
                "risk_level": "normal",
                "seller_message": "Payment complete."
                if ok
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if ok else "issuer_declined",
            },
            paid=ok,
            payment_intent=pi["id"],
            payment_method=pm["id"],
            receipt_url=f"{self.store.base_url}/receipts/{charge_id}",
            refunded=False,
            refunds=None,
            shipping=None,
            source=None,
            status="succeeded" if ok else "failed",
            transfer_data=None,
        )
        details = charge["payment_method_details"]["card"]
        details.update(
            brand=card.brand,
            last4=card.last4,
            network=card.brand,
            fingerprint=pm["card"]["fingerprint"],
            wallet=None,
            amount_authorized=pi["amount"] if ok else None,
        )
        details["overcapture"]["maximum_amount_capturable"] = pi["amount"]
        return self.store.add(charge)

    def new_delayed_charge(self, pi: Obj, pm: Obj, status: str) -> Obj:
        charge_id = fixtures.new_id("py_")
        charge = fixtures.base(
            "charge",
            id=charge_id,
            amount=pi["amount"],
            amount_captured=pi["amount"],
            amount_refunded=0,
            balance_transaction=fixtures.new_id("txn_"),
            billing_details=pm["billing_details"],
            captured=True,
            created=self.store.now(pi["customer"]),
            currency=pi["currency"],
            customer=pi["customer"],
            description=pi["description"],
            disputed=False,
            failure_code=None,
            failure_message=None,
            metadata=dict(pi["metadata"]),
            outcome={
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "not_assessed",
                "seller_message": "Payment complete." if status == "succeeded" else "The payment is pending.",
                "type": "authorized",
            },
            paid=status == "succeeded",
            payment_intent=pi["id"],
            payment_method=pm["id"],
            receipt_url=f"{self.store.base_url}/receipts/{charge_id}",
            refunded=False,
            refunds=None,
            shipping=None,
            source=None,
            status=status,
            transfer_data=None,
        )
        return self.store.add(charge)

    def _render_charge(self, out: Obj) -> None:
        refunds = [self.store.render(r) for r in reversed(self.store.all("refund")) if r["charge"] == out["id"]]
        out["refunds"] = self.store.list_object(refunds, f"/v1/charges/{out['id']}/refunds")

    def list_charges(self, params: Obj) -> Obj:
        items = self.store.all("charge")
        for field in ("customer", "payment_intent"):
            value = get_str(params, field)
            if value:
                items = [c for c in items if c[field] == value]
        return self.store.paginate(items, "/v1/charges", params)

    def create_refund(self, params: Obj) -> Obj:
        charge_id = get_str(params, "charge")
        pi_id = get_str(params, "payment_intent")
        if charge_id:
            charge = self.store.get("charge", charge_id, param="charge")
        elif pi_id:
            pi = self.store.get("payment_intent", pi_id, param="payment_intent")
            if not pi["latest_charge"] or self.store.objects[pi["latest_charge"]]["status"] != "succeeded":
                raise invalid(
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="charge_not_refundable",
                )
            charge = self.store.objects[pi["latest_charge"]]
        else:
            raise param_missing("charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        amount = get_int(params, "amount", remaining)
        assert amount is not None
        if amount <= 0:
            raise invalid("Invalid positive integer", param="amount", code="parameter_invalid_integer")
        if amount > remaining:
            currency = charge["currency"]
            label = "charge amount" if charge["amount_refunded"] == 0 else "unrefunded amount on charge"
            raise invalid(
                f"Refund amount ({format_unit(currency, Decimal(amount))}) is greater than "
                f"{label} ({format_unit(currency, Decimal(remaining))})",
                param="amount",
                code="amount_too_large",
            )
        reason = get_enum(params, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
        refund = fixtures.base(
            "refund",
            id=fixtures.new_id("re_"),
            amount=amount,
            balance_transaction=fixtures.new_id("txn_"),
            charge=charge["id"],
            created=self.store.now(charge["customer"]),
            currency=charge["currency"],
            metadata=merge_metadata({}, params.get("metadata")),
            payment_intent=charge["payment_intent"],
            reason=reason,
            status="succeeded",
            customer=None,
            destination_details={
                "card": {
                    "reference_status": "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
        )
        refund.pop("next_action", None)
        self.store.add(refund)
        before = self.store.render(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.store.emit("refund.created", refund)
        self.store.emit("charge.refunded", charge, self.store.diff(before, self.store.render(charge)))
        return refund

    def list_refunds(self, params: Obj) -> Obj:
        items = self.store.all("refund")
        for field in ("charge", "payment_intent"):
            value = get_str(params, field)
            if value:
                items = [r for r in items if r[field] == value]
        return self.store.paginate(items, "/v1/refunds", params)

    def list_disputes(self, params: Obj) -> Obj:
        items = self.store.all("dispute")
        for field in ("charge", "payment_intent"):
            value = get_str(params, field)
            if value:
                items = [d for d in items if d[field] == value]
        return self.store.paginate(items, "/v1/disputes", params)

    def create_dispute(self, params: Obj, charge_id: str) -> Obj:
        """Test helper: the cardholder (or the bank account's owner) disputes a settled charge."""
        charge = self.store.get("charge", charge_id)
        if charge["status"] == "pending":
            raise invalid(f"Charge {charge_id} is still pending; only settled payments can be disputed.")
        amount = get_int(params, "amount", charge["amount"] - charge["amount_refunded"])
        now = self.store.now(charge["customer"])
        dispute = fixtures.base(
            "dispute",
            id=fixtures.new_id("dp_"),
            amount=amount,
            charge=charge_id,
            created=now,
            currency=charge["currency"],
            payment_intent=charge["payment_intent"],
            reason=get_str(params, "reason", "general"),
            status="needs_response",
            is_charge_refundable=False,
            metadata={},
        )
        dispute["evidence_details"]["due_by"] = now + 21 * 86_400
        self.store.add(dispute)
        charge["disputed"] = True
        self.store.emit("charge.dispute.created", dispute)
        kind = charge["payment_method_details"]["type"]
        if kind != "card":  # (after the event, as before the split: its snapshot keeps the example's card details)
            dispute["payment_method_details"] = {"type": kind}
        return dispute

    def routes(self) -> list[Route]:
        return [
            stripe("GET", "/v1/charges", self.list_charges),
            stripe("GET", f"/v1/charges/{ID}", lambda p, i: self.store.get("charge", i)),
            stripe("POST", "/v1/refunds", self.create_refund),
            stripe("GET", "/v1/refunds", self.list_refunds),
            stripe("GET", f"/v1/refunds/{ID}", lambda p, i: self.store.get("refund", i)),
            stripe("GET", "/v1/disputes", self.list_disputes),
            stripe("GET", f"/v1/disputes/{ID}", lambda p, i: self.store.get("dispute", i)),
            helper("POST", f"/_emulator/charges/{ID}/dispute", {"amount": ANY, "reason": ANY}, self.create_dispute),
        ]
