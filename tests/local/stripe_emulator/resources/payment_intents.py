"""Payment intents: create, confirm (cards here; ACH and bank transfers in bank_payments.py), cancel."""

from __future__ import annotations

from decimal import Decimal

from .. import fixtures
from ..errors import invalid
from ..money import format_unit
from ..params import (
    get_bool,
    get_dict,
    get_enum,
    get_list,
    get_str,
    merge_metadata,
    req_int,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store
from .bank_payments import BankPayments
from .charges_refunds_disputes import Charges
from .payment_methods import TEST_CARDS, PaymentMethods


class PaymentIntents:
    def __init__(
        self, store: Store, payment_methods: PaymentMethods, charges: Charges, bank_payments: BankPayments
    ) -> None:
        self.store = store
        self.payment_methods = payment_methods
        self.charges = charges
        self.bank_payments = bank_payments
        # PaymentIntents created with `allowed_payment_method_types` (the PM type is checked against it).
        self.explicit_pm_types: set[str] = set()

    def new_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        payment_method: str | None = None,
        setup_future_usage: str | None = None,
        payment_method_types: list[str] | None = None,
        payment_method_options: Obj | None = None,
        allowed_payment_method_types: list[str] | None = None,
    ) -> Obj:
        pi_id = fixtures.new_id("pi_")
        pi = fixtures.base(
            "payment_intent",
            id=pi_id,
            amount=amount,
            allowed_payment_method_types=allowed_payment_method_types,
            amount_details={"tip": {}},
            automatic_payment_methods=None,
            canceled_at=None,
            client_secret=f"{pi_id}_secret_{fixtures.new_id('', 25)}",
            created=self.store.now(customer),
            currency=currency,
            customer=customer,
            description=description,
            last_payment_error=None,
            metadata=metadata or {},
            next_action=None,
            payment_method=payment_method,
            payment_method_configuration_details=None,
            payment_method_options=payment_method_options or {},
            payment_method_types=payment_method_types or ["card"],
            processing=None,
            setup_future_usage=setup_future_usage,
            shipping=None,
            status="requires_confirmation" if payment_method else "requires_payment_method",
            transfer_data=None,
            managed_payments=None,
        )
        self.store.add(pi)
        self.store.emit("payment_intent.created", pi)
        return pi

    def confirm(self, pi: Obj, pm: Obj, *, off_session: bool = False) -> Obj:
        """Charge `pm` (a card) for the intent. Returns the charge; on a decline the intent goes back to
        requires_payment_method with `last_payment_error` (the caller decides whether to raise)."""
        if pm["type"] != "card":
            raise invalid(
                f"The emulator only pays invoices and Checkout Sessions with cards, not {pm['type']} "
                "(delayed payment methods are emulated on standalone PaymentIntents).",
                param="payment_method",
            )
        card = self.payment_methods.cards.get(pm["id"], TEST_CARDS["pm_card_visa"])
        pi["payment_method"] = pm["id"]
        charge = self.charges.new_card_charge(pi, pm, card)
        pi["latest_charge"] = charge["id"]
        if card.decline_code is None and not card.settles:
            charge.update(status="pending", paid=False, captured=False)
            pi.update(status="processing", last_payment_error=None)
            self.store.emit("charge.pending", charge)
            self.store.emit("payment_intent.processing", pi)
        elif card.decline_code is None:
            pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
            self.store.emit("charge.succeeded", charge)
            self.store.emit("payment_intent.succeeded", pi)
            if pi["setup_future_usage"] and pi["customer"] and pm["customer"] is None:
                self.payment_methods.attach(pm, pi["customer"])
        else:
            error = self.payment_methods.card_error(card, charge["id"], pm)
            pi.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
            self.store.emit("charge.failed", charge)
            self.store.emit("payment_intent.payment_failed", pi)
        return charge

    def create_payment_intent(self, params: Obj) -> Obj:
        amount = req_int(params, "amount")
        currency = req_str(params, "currency").lower()
        customer_id = get_str(params, "customer")
        if customer_id:
            self.store.get("customer", customer_id, param="customer")
        if amount < 50:
            raise invalid(
                f"Amount must be at least {format_unit(currency, Decimal(50))} {currency}",
                param="amount",
                code="amount_too_small",
            )
        types = self._allowed_types(params)
        pm = self._payment_method_param(params)
        if pm is not None:
            self.check_payment_method_type(pm, types, currency)
        options = self.payment_method_options(params, types or ([pm["type"]] if pm else []))
        if pm is not None and get_bool(params, "confirm", False):
            self.bank_payments.check_confirmable(pm, customer_id, options)
        pi = self.new_payment_intent(
            amount=amount,
            currency=currency,
            customer=customer_id,
            description=get_str(params, "description"),
            metadata=merge_metadata({}, params.get("metadata")),
            payment_method=pm["id"] if pm else None,
            setup_future_usage=get_enum(params, "setup_future_usage", ("off_session", "on_session")),
            payment_method_types=types or ([pm["type"]] if pm else ["card"]),
            payment_method_options=options,
            allowed_payment_method_types=types or None,
        )
        if types:
            self.explicit_pm_types.add(pi["id"])
        if get_bool(params, "confirm", False):
            self._confirm_or_raise(pi, pm, params)
        elif "mandate_data" in params:
            raise invalid("mandate_data can only be used with confirm=true.", param="mandate_data")
        return pi

    @staticmethod
    def _allowed_types(params: Obj) -> list[str]:
        """`allowed_payment_method_types` (`payment_method_types` is refused with Stripe's own code: contract.py)."""
        return [str(t) for t in get_list(params, "allowed_payment_method_types")]

    def _payment_method_param(self, params: Obj) -> Obj | None:
        """`payment_method` (an id or a test token) or `payment_method_data` (a new PM), not both."""
        pm_id = get_str(params, "payment_method")
        data = get_dict(params, "payment_method_data")
        if pm_id and data:
            raise invalid(
                "You cannot specify both payment_method and payment_method_data.", param="payment_method_data"
            )
        if data:
            return self.payment_methods.from_data(data)
        return self.payment_methods.resolve(pm_id, param="payment_method") if pm_id else None

    def check_payment_method_type(self, pm: Obj, types: list[str], currency: str) -> None:
        if types and pm["type"] not in types:
            raise invalid(
                f"The PaymentMethod provided ({pm['type']}) is not allowed for this PaymentIntent. Please attach a "
                f"PaymentMethod of one of the following types: {', '.join(types)}. Alternatively, update the "
                f'allowed_payment_method_types for this PaymentIntent to include "{pm["type"]}".',
                param="payment_method",
                code="payment_intent_invalid_parameter",
            )
        if pm["type"] in ("us_bank_account", "customer_balance") and currency != "usd":
            raise invalid(
                f"The currency provided ({currency}) is invalid. Payments with {pm['type']} support the following "
                "currencies: usd.",
                param="currency",
                code="payment_intent_invalid_parameter",
            )

    def payment_method_options(self, params: Obj, types: list[str]) -> Obj:
        """The PaymentIntent's `payment_method_options`, as Stripe echoes them (only the emulated types)."""
        given = get_dict(params, "payment_method_options")
        out: Obj = {}
        if "card" in given or "card" in types:
            out["card"] = {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        if "us_bank_account" in given or "us_bank_account" in types:
            ach = get_dict(given, "us_bank_account")
            out["us_bank_account"] = {
                "verification_method": get_enum(
                    ach, "verification_method", ("automatic", "instant", "microdeposits"), "automatic"
                )
            }
        if "customer_balance" in given or "customer_balance" in types:
            balance = get_dict(given, "customer_balance")
            transfer = get_dict(balance, "bank_transfer")
            out["customer_balance"] = {
                "funding_type": get_str(balance, "funding_type"),
                "bank_transfer": {
                    "type": get_str(transfer, "type"),
                    "requested_address_types": [str(t) for t in get_list(transfer, "requested_address_types")]
                    or ["aba", "swift"],
                }
                if transfer
                else None,
            }
        return out

    def _confirm_or_raise(self, pi: Obj, pm: Obj | None, params: Obj) -> None:
        if pm is None:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        if pm["type"] != "card":
            self.bank_payments.confirm(pi, pm, params)
            return
        charge = self.confirm(pi, pm, off_session=bool(get_bool(params, "off_session", False)))
        if pi["status"] not in ("succeeded", "processing"):
            self.payment_methods.raise_card_error(pi, dict(pi["last_payment_error"], charge=charge["id"]))

    def confirm_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        pi = self.store.get("payment_intent", pi_id)
        if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise invalid(
                f"This PaymentIntent's status is {pi['status']}, so it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        pm = self._payment_method_param(params)
        if pm is None:
            pm_id = pi["payment_method"]
            if pm_id is None and pi["last_payment_error"]:
                pm_id = pi["last_payment_error"]["payment_method"]["id"]
            pm = self.payment_methods.resolve(pm_id, param="payment_method") if pm_id else None
        if pm is not None:
            types = pi["payment_method_types"] if pi["id"] in self.explicit_pm_types else []
            self.check_payment_method_type(pm, types, pi["currency"])
        options = {**pi["payment_method_options"], **self.payment_method_options(params, [])}
        for type_ in [*pi["payment_method_types"], *([pm["type"]] if pm else [])]:
            if type_ not in options:
                options.update(self.payment_method_options({}, [type_]))
        if pm is not None:
            self.bank_payments.check_confirmable(pm, pi["customer"], options)
            if pm["type"] not in pi["payment_method_types"]:
                pi["payment_method_types"] = [*pi["payment_method_types"], pm["type"]]
        pi["payment_method_options"] = options
        self._confirm_or_raise(pi, pm, params)
        return pi

    def cancel_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        pi = self.store.get("payment_intent", pi_id)
        if pi["status"] in ("succeeded", "canceled"):
            raise invalid(
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        pi.update(
            status="canceled",
            canceled_at=self.store.now(pi["customer"]),
            cancellation_reason=get_str(params, "cancellation_reason"),
        )
        self.store.emit("payment_intent.canceled", pi)
        self.bank_payments.on_cancel(pi)
        return pi

    def list_payment_intents(self, params: Obj) -> Obj:
        items = self.store.all("payment_intent")
        customer = get_str(params, "customer")
        if customer:
            items = [p for p in items if p["customer"] == customer]
        return self.store.paginate(items, "/v1/payment_intents", params)

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/payment_intents", self.create_payment_intent),
            stripe("GET", "/v1/payment_intents", self.list_payment_intents),
            stripe("GET", f"/v1/payment_intents/{ID}", lambda p, i: self.store.get("payment_intent", i)),
            stripe("POST", f"/v1/payment_intents/{ID}/confirm", self.confirm_payment_intent),
            stripe("POST", f"/v1/payment_intents/{ID}/cancel", self.cancel_payment_intent),
        ]
