"""Customers, catalog (products/prices), payment methods, payment intents, charges, refunds, disputes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import fixtures
from .core import Core, Obj
from .errors import ApiError, invalid, missing, param_missing
from .money import format_unit
from .params import (
    get_bool,
    get_decimal,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_int,
    req_str,
)


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    decline_code: str | None = None  # None: every charge succeeds
    settles: bool = True  # False: the charge stays `processing` until POST /_emulator/payment_intents/{id}/settle


# Stripe's test PaymentMethod tokens. Each use of a token creates a fresh `pm_...` with that card.
TEST_CARDS: dict[str, Card] = {
    "pm_card_visa": Card("visa", "4242"),
    "pm_card_mastercard": Card("mastercard", "4444"),
    "pm_card_amex": Card("amex", "8431"),
    "pm_card_chargeDeclined": Card("visa", "0002", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": Card("visa", "9995", "insufficient_funds"),
    "pm_card_chargeCustomerFail": Card("visa", "0341", "generic_decline"),
    # Emulator-only: a card payment Stripe confirms later (it happens, e.g. on some networks): the
    # intent is `processing`; the settle helper decides whether it succeeds or fails, asynchronously.
    "pm_card_processing": Card("visa", "1881", settles=False),
}


@dataclass(frozen=True)
class BankAccount:
    """A US bank account for ACH Direct Debit (routing 110000000, Stripe's test bank)."""

    last4: str
    failure_code: str | None = None  # None: the debit settles
    dispute: bool = False  # settles, then the customer's bank disputes it
    settles: bool = True  # False: stays `processing` until the test helper settles it


# Stripe's ACH test PaymentMethod tokens (and the account numbers they stand for).
TEST_BANK_ACCOUNTS: dict[str, BankAccount] = {
    "pm_usBankAccount_success": BankAccount("6789"),
    "pm_usBankAccount_accountClosed": BankAccount("1113", "account_closed"),
    "pm_usBankAccount_noAccount": BankAccount("1116", "no_account"),
    "pm_usBankAccount_insufficientFunds": BankAccount("2227", "insufficient_funds"),
    "pm_usBankAccount_debitNotAuthorized": BankAccount("3335", "debit_not_authorized"),
    "pm_usBankAccount_invalidCurrency": BankAccount("4440", "invalid_currency"),
    "pm_usBankAccount_dispute": BankAccount("5559", dispute=True),
    "pm_usBankAccount_processing": BankAccount("0009", settles=False),
}
TEST_ROUTING_NUMBER = "110000000"
TEST_ACCOUNT_NUMBERS: dict[str, str] = {
    "000123456789": "pm_usBankAccount_success",
    "000111111113": "pm_usBankAccount_accountClosed",
    "000111111116": "pm_usBankAccount_noAccount",
    "000222222227": "pm_usBankAccount_insufficientFunds",
    "000333333335": "pm_usBankAccount_debitNotAuthorized",
    "000444444440": "pm_usBankAccount_invalidCurrency",
    "000555555559": "pm_usBankAccount_dispute",
    "000000000009": "pm_usBankAccount_processing",
}
BANK_FAILURE_MESSAGES = {
    "account_closed": "The customer's bank account has been closed.",
    "no_account": "The customer's bank account could not be located.",
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "debit_not_authorized": "The customer has notified their bank that this payment was unauthorized.",
    "invalid_currency": "The bank was unable to process this payment because of its currency.",
}

_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


class Payments(Core):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cards: dict[str, Card] = {}
        self.banks: dict[str, BankAccount] = {}
        # PaymentIntents created with `allowed_payment_method_types` (the PM type is checked against it).
        self.explicit_pm_types: set[str] = set()

    # ============================================================ customers
    def create_customer(self, params: Obj) -> Obj:
        clock_id = get_str(params, "test_clock")
        if clock_id:
            self.get("test_helpers.test_clock", clock_id, param="test_clock")
        customer = fixtures.base(
            "customer",
            id=fixtures.new_id("cus_", 14),
            balance=0,
            currency=None,
            discount=None,
            email=get_str(params, "email"),
            name=get_str(params, "name"),
            phone=get_str(params, "phone"),
            description=get_str(params, "description"),
            metadata=merge_metadata({}, params.get("metadata")),
            invoice_prefix=secrets.token_hex(4).upper(),
            next_invoice_sequence=1,
            test_clock=clock_id,
            shipping=None,
        )
        customer["created"] = self.objects[clock_id]["frozen_time"] if clock_id else self.now()
        self.add(customer)
        self._apply_invoice_settings(customer, params)
        self.emit("customer.created", customer)
        balance = get_int(params, "balance")
        if balance:
            self._balance_transaction(customer, balance, "initial", description=None, metadata={})
        return customer

    def _apply_invoice_settings(self, customer: Obj, params: Obj) -> None:
        settings = get_dict(params, "invoice_settings")
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id:
                pm = self.resolve_payment_method(pm_id, customer=customer["id"], param="default_payment_method")
                pm_id = pm["id"]
            customer["invoice_settings"]["default_payment_method"] = pm_id

    def update_customer(self, params: Obj, customer_id: str) -> Obj:
        customer = self.get("customer", customer_id)
        before = self.render(customer)
        for field in ("email", "name", "phone", "description"):
            if field in params:
                customer[field] = params[field] or None
        customer["metadata"] = merge_metadata(customer["metadata"], params.get("metadata"))
        self._apply_invoice_settings(customer, params)
        balance = get_int(params, "balance")
        if balance is not None and balance != customer["balance"]:
            self._balance_transaction(customer, balance - customer["balance"], "adjustment", None, {}, emit=False)
        self.emit("customer.updated", customer, self.diff(before, self.render(customer)))
        return customer

    def delete_customer(self, params: Obj, customer_id: str) -> Obj:
        customer = self.get("customer", customer_id)
        customer["deleted"] = True
        self.emit("customer.deleted", customer)
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_customers(self, params: Obj) -> Obj:
        items = self.all("customer")
        email = get_str(params, "email")
        if email:
            items = [c for c in items if c["email"] == email]
        clock = get_str(params, "test_clock")
        if clock:
            items = [c for c in items if c["test_clock"] == clock]
        return self.paginate([c for c in items if not c.get("deleted")], "/v1/customers", params)

    # ---------------------------------------------- customer balance ledger
    def _balance_transaction(
        self,
        customer: Obj,
        amount: int,
        kind: str,
        description: str | None,
        metadata: dict[str, str],
        *,
        invoice: str | None = None,
        currency: str | None = None,
        emit: bool = True,
    ) -> Obj:
        """Move `customer.balance` by `amount` (negative = credit the customer) and record why."""
        before = self.render(customer)
        customer["balance"] += amount
        if customer["currency"] is None:
            customer["currency"] = currency or "usd"
        txn = fixtures.base(
            "customer_balance_transaction",
            id=fixtures.new_id("cbtxn_"),
            amount=amount,
            created=self.now(customer["id"]),
            currency=currency or customer["currency"],
            customer=customer["id"],
            description=description,
            ending_balance=customer["balance"],
            invoice=invoice,
            metadata=metadata,
            type=kind,
        )
        self.add(txn)
        if emit:
            self.emit("customer.updated", customer, self.diff(before, self.render(customer)))
        return txn

    def create_balance_transaction(self, params: Obj, customer_id: str) -> Obj:
        customer = self.get("customer", customer_id)
        amount = req_int(params, "amount")
        currency = req_str(params, "currency").lower()
        if customer["currency"] and currency != customer["currency"]:
            raise invalid(
                f"The currency {currency} does not match the customer's currency {customer['currency']}.",
                param="currency",
            )
        return self._balance_transaction(
            customer,
            amount,
            "adjustment",
            get_str(params, "description"),
            merge_metadata({}, params.get("metadata")),
            currency=currency,
        )

    def list_balance_transactions(self, params: Obj, customer_id: str) -> Obj:
        self.get("customer", customer_id)
        items = [t for t in self.all("customer_balance_transaction") if t["customer"] == customer_id]
        return self.paginate(items, f"/v1/customers/{customer_id}/balance_transactions", params)

    def retrieve_balance_transaction(self, params: Obj, customer_id: str, txn_id: str) -> Obj:
        txn = self.get("customer_balance_transaction", txn_id)
        if txn["customer"] != customer_id:
            raise missing("customer balance transaction", txn_id)
        return txn

    # ============================================================= catalog
    def create_product(self, params: Obj) -> Obj:
        now = self.now()
        product = fixtures.base(
            "product",
            id=get_str(params, "id") or fixtures.new_id("prod_", 14),
            name=req_str(params, "name"),
            active=get_bool(params, "active", True),
            description=get_str(params, "description"),
            metadata=merge_metadata({}, params.get("metadata")),
            created=now,
            updated=now,
            default_price=None,
            package_dimensions=None,
            unit_label=get_str(params, "unit_label"),
            statement_descriptor=None,
        )
        if product["id"] in self.objects:
            raise invalid(f"Product already exists with ID {product['id']}", param="id", code="resource_already_exists")
        self.add(product)
        self.emit("product.created", product)
        return product

    def update_product(self, params: Obj, product_id: str) -> Obj:
        product = self.get("product", product_id)
        before = self.render(product)
        for field in ("name", "description"):
            if field in params:
                product[field] = params[field] or None
        active = get_bool(params, "active")
        if active is not None:
            product["active"] = active
        if "default_price" in params:
            product["default_price"] = params["default_price"] or None
        product["metadata"] = merge_metadata(product["metadata"], params.get("metadata"))
        product["updated"] = self.now()
        self.emit("product.updated", product, self.diff(before, self.render(product)))
        return product

    def list_products(self, params: Obj) -> Obj:
        items = self.all("product")
        active = get_bool(params, "active")
        if active is not None:
            items = [p for p in items if p["active"] == active]
        ids = get_list(params, "ids")
        if ids:
            items = [p for p in items if p["id"] in ids]
        return self.paginate(items, "/v1/products", params)

    def create_price(self, params: Obj) -> Obj:
        currency = req_str(params, "currency").lower()
        product_id = get_str(params, "product")
        product_data = get_dict(params, "product_data")
        if product_id:
            self.get("product", product_id, param="product")
        elif product_data:
            product_id = self.create_product({"name": product_data.get("name", ""), **product_data})["id"]
        else:
            raise param_missing("product")
        return self._new_price(params, currency, product_id)

    def _new_price(self, params: Obj, currency: str, product_id: str) -> Obj:
        unit_amount = get_int(params, "unit_amount")
        unit_decimal = get_decimal(params, "unit_amount_decimal")
        if unit_amount is None and unit_decimal is None:
            raise param_missing("unit_amount")
        if unit_decimal is None:
            unit_decimal = Decimal(unit_amount or 0)
        elif unit_decimal == unit_decimal.to_integral_value():
            unit_amount = int(unit_decimal)
        recurring_params = get_dict(params, "recurring")
        recurring = None
        if recurring_params:
            usage_type = get_enum(recurring_params, "usage_type", ("licensed", "metered"), "licensed")
            meter = get_str(recurring_params, "meter")
            if usage_type == "metered" and not meter:
                raise param_missing("recurring[meter]")
            if meter:
                self.get("billing.meter", meter, param="recurring[meter]")
            recurring = {
                "interval": get_enum(recurring_params, "interval", ("day", "week", "month", "year")),
                "interval_count": get_int(recurring_params, "interval_count", 1),
                "meter": meter,
                "usage_type": usage_type,
                "trial_period_days": None,
            }
            if recurring["interval"] is None:
                raise param_missing("recurring[interval]")
        lookup_key = get_str(params, "lookup_key")
        if lookup_key:
            holders = [p for p in self.all("price") if p["lookup_key"] == lookup_key]
            if holders and not get_bool(params, "transfer_lookup_key", False):
                raise invalid(
                    f"A price (`{holders[0]['id']}`) already uses that lookup key.",
                    param="lookup_key",
                    code="lookup_key_already_exists",
                )
            for holder in holders:
                holder["lookup_key"] = None
        price = fixtures.base(
            "price",
            id=fixtures.new_id("price_"),
            active=get_bool(params, "active", True),
            created=self.now(),
            currency=currency,
            custom_unit_amount=None,
            lookup_key=lookup_key,
            metadata=merge_metadata({}, params.get("metadata")),
            nickname=get_str(params, "nickname"),
            product=product_id,
            recurring=recurring,
            transform_quantity=None,
            type="recurring" if recurring else "one_time",
            unit_amount=unit_amount if unit_decimal == unit_decimal.to_integral_value() else None,
            unit_amount_decimal=f"{unit_decimal.normalize():f}",
        )
        self.add(price)
        self.emit("price.created", price)
        return price

    def update_price(self, params: Obj, price_id: str) -> Obj:
        price = self.get("price", price_id)
        before = self.render(price)
        active = get_bool(params, "active")
        if active is not None:
            price["active"] = active
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        if "lookup_key" in params:
            key = params["lookup_key"] or None
            holders = [p for p in self.all("price") if key and p["lookup_key"] == key and p is not price]
            if holders and not get_bool(params, "transfer_lookup_key", False):
                raise invalid("A price already uses that lookup key.", param="lookup_key")
            for holder in holders:
                holder["lookup_key"] = None
            price["lookup_key"] = key
        price["metadata"] = merge_metadata(price["metadata"], params.get("metadata"))
        self.emit("price.updated", price, self.diff(before, self.render(price)))
        return price

    def list_prices(self, params: Obj) -> Obj:
        items = self.all("price")
        active = get_bool(params, "active")
        if active is not None:
            items = [p for p in items if p["active"] == active]
        for field in ("product", "currency", "type"):
            value = get_str(params, field)
            if value:
                items = [p for p in items if p[field] == value]
        keys = get_list(params, "lookup_keys")
        if keys:
            items = [p for p in items if p["lookup_key"] in keys]
        return self.paginate(items, "/v1/prices", params)

    # ====================================================== payment methods
    def resolve_payment_method(self, pm_id: str, *, customer: str | None = None, param: str = "payment_method") -> Obj:
        """A stored `pm_...`, or a test token (`pm_card_visa`...) turned into a fresh PM (attached to
        `customer` when given, so it can be used as a default)."""
        if pm_id in TEST_CARDS or pm_id in TEST_BANK_ACCOUNTS:
            if pm_id in TEST_CARDS:
                pm = self._new_payment_method(TEST_CARDS[pm_id], customer)
            else:
                pm = self._new_bank_payment_method(TEST_BANK_ACCOUNTS[pm_id], customer)
            if customer:
                self.emit("payment_method.attached", pm)
            return pm
        stored = self.objects.get(pm_id)
        if stored is None or stored.get("object") != "payment_method":
            raise missing("PaymentMethod", pm_id, param)
        pm = stored
        if customer and pm["customer"] is None:
            self._attach(pm, customer)
        return pm

    def _new_payment_method(self, card: Card, customer: str | None) -> Obj:
        pm = fixtures.base(
            "payment_method",
            id=fixtures.new_id("pm_"),
            created=self.now(customer),
            customer=customer,
            metadata={},
            billing_details={
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
        )
        pm["card"].update(
            brand=card.brand,
            display_brand=card.brand,
            last4=card.last4,
            fingerprint=fixtures.new_id("", 16),
            networks={"available": [card.brand], "preferred": None},
            wallet=None,
            generated_from=None,
        )
        self.cards[pm["id"]] = card
        return self.add(pm)

    def _new_bank_payment_method(
        self, bank: BankAccount, customer: str | None, billing_details: Obj | None = None
    ) -> Obj:
        pm = self._new_payment_method(TEST_CARDS["pm_card_visa"], customer)
        del self.cards[pm["id"]]
        pm.pop("card", None)
        pm["type"] = "us_bank_account"
        pm["us_bank_account"] = {
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "financial_connections_account": None,
            "fingerprint": fixtures.new_id("", 16),
            "last4": bank.last4,
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": TEST_ROUTING_NUMBER,
            "status_details": {},
        }
        for key, value in (billing_details or {}).items():
            if key in pm["billing_details"] and isinstance(value, str):
                pm["billing_details"][key] = value
        self.banks[pm["id"]] = bank
        return pm

    def _new_customer_balance_payment_method(self, customer: str | None) -> Obj:
        pm = self._new_payment_method(TEST_CARDS["pm_card_visa"], customer)
        del self.cards[pm["id"]]
        pm.pop("card", None)
        pm.update(type="customer_balance", customer_balance={})
        return pm

    def payment_method_from_data(self, data: Obj, *, param: str = "payment_method_data") -> Obj:
        """`payment_method_data` (or POST /v1/payment_methods): a new, unattached PM of a non-card type."""

        def where(name: str) -> str:
            return f"{param}[{name}]" if param else name

        kind = get_str(data, "type")
        if kind == "customer_balance":
            return self._new_customer_balance_payment_method(None)
        if kind == "us_bank_account":
            bank = get_dict(data, "us_bank_account")
            number = get_str(bank, "account_number")
            routing = get_str(bank, "routing_number")
            if not number or not routing:
                raise param_missing(where(f"us_bank_account][{'routing_number' if number else 'account_number'}"))
            token = TEST_ACCOUNT_NUMBERS.get(number)
            if routing != TEST_ROUTING_NUMBER or token is None:
                raise invalid(
                    f"Only Stripe's test bank accounts are emulated (routing {TEST_ROUTING_NUMBER}, account "
                    f"{', '.join(TEST_ACCOUNT_NUMBERS)}).",
                    param=where("us_bank_account][account_number"),
                )
            pm = self._new_bank_payment_method(TEST_BANK_ACCOUNTS[token], None, get_dict(data, "billing_details"))
            holder = get_enum(bank, "account_holder_type", ("individual", "company"))
            if holder:
                pm["us_bank_account"]["account_holder_type"] = holder
            account_type = get_enum(bank, "account_type", ("checking", "savings"))
            if account_type:
                pm["us_bank_account"]["account_type"] = account_type
            return pm
        if kind is None:
            raise param_missing(where("type"))
        raise invalid(
            f"Only payment_method_data[type]=us_bank_account|customer_balance is emulated, not {kind}.",
            param=where("type"),
        )

    def _attach(self, pm: Obj, customer_id: str) -> None:
        pm["customer"] = customer_id
        self.emit("payment_method.attached", pm)

    def create_payment_method(self, params: Obj) -> Obj:
        if req_str(params, "type") != "card":
            pm = self.payment_method_from_data(params, param="")
            pm["metadata"] = merge_metadata({}, params.get("metadata"))
            return pm
        card = get_dict(params, "card")
        token = card.get("token", "tok_visa")
        mapped = {"tok_visa": "pm_card_visa", "tok_chargeDeclined": "pm_card_chargeDeclined"}.get(token)
        if mapped is None:
            raise invalid("Only card[token]=tok_visa|tok_chargeDeclined is emulated.", param="card[token]")
        pm = self._new_payment_method(TEST_CARDS[mapped], None)
        pm["metadata"] = merge_metadata({}, params.get("metadata"))
        return pm

    def attach_payment_method(self, params: Obj, pm_id: str) -> Obj:
        customer_id = req_str(params, "customer")
        self.get("customer", customer_id, param="customer")
        if pm_id in TEST_CARDS or pm_id in TEST_BANK_ACCOUNTS:
            return self.resolve_payment_method(pm_id, customer=customer_id)
        pm = self.get("payment_method", pm_id)
        if pm["customer"] and pm["customer"] != customer_id:
            raise invalid(
                "The payment method you provided has already been attached to a customer.",
                code="payment_method_unexpected_state",
            )
        if pm["customer"] is None:
            self._attach(pm, customer_id)
        return pm

    def detach_payment_method(self, params: Obj, pm_id: str) -> Obj:
        pm = self.get("payment_method", pm_id)
        if pm["customer"] is None:
            raise invalid(
                "The payment method you provided is not attached to a customer so detachment is impossible.",
                code="payment_method_unexpected_state",
            )
        customer = self.objects[pm["customer"]]
        if customer["invoice_settings"]["default_payment_method"] == pm_id:
            customer["invoice_settings"]["default_payment_method"] = None
        previous = {"customer": pm["customer"]}
        pm["customer"] = None
        self.emit("payment_method.detached", pm, previous)
        return pm

    def retrieve_payment_method(self, params: Obj, pm_id: str) -> Obj:
        return self.get("payment_method", pm_id)

    def list_payment_methods(self, params: Obj) -> Obj:
        customer_id = get_str(params, "customer")
        return self._list_customer_pms(params, customer_id, "/v1/payment_methods")

    def list_customer_payment_methods(self, params: Obj, customer_id: str) -> Obj:
        self.get("customer", customer_id)
        return self._list_customer_pms(params, customer_id, f"/v1/customers/{customer_id}/payment_methods")

    def _list_customer_pms(self, params: Obj, customer_id: str | None, url: str) -> Obj:
        kind = get_str(params, "type")
        items = [
            pm
            for pm in self.all("payment_method")
            if pm["customer"] is not None
            and (customer_id is None or pm["customer"] == customer_id)
            and (kind is None or pm["type"] == kind)
        ]
        return self.paginate(items, url, params)

    # ===================================================== payment intents
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
            created=self.now(customer),
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
        self.add(pi)
        self.emit("payment_intent.created", pi)
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
        card = self.cards.get(pm["id"], TEST_CARDS["pm_card_visa"])
        pi["payment_method"] = pm["id"]
        charge = self._new_charge(pi, pm, card)
        pi["latest_charge"] = charge["id"]
        if card.decline_code is None and not card.settles:
            charge.update(status="pending", paid=False, captured=False)
            pi.update(status="processing", last_payment_error=None)
            self.emit("charge.pending", charge)
            self.emit("payment_intent.processing", pi)
        elif card.decline_code is None:
            pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", pi)
            if pi["setup_future_usage"] and pi["customer"] and pm["customer"] is None:
                self._attach(pm, pi["customer"])
        else:
            error = self.card_error(card, charge["id"], pm)
            pi.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
            self.emit("charge.failed", charge)
            self.emit("payment_intent.payment_failed", pi)
        return charge

    def card_error(self, card: Card, charge_id: str | None, pm: Obj) -> Obj:
        decline = card.decline_code or "generic_decline"
        return {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline,
            "message": _DECLINE_MESSAGES.get(decline, "Your card was declined."),
            "charge": charge_id,
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "payment_method": self.render(pm),
        }

    def raise_card_error(self, pi: Obj | None, error: Obj) -> None:
        extra = {k: v for k, v in error.items() if k not in ("type", "code", "message")}
        if pi is not None:
            extra["payment_intent"] = self.render(pi)
        raise ApiError(402, error["message"], type="card_error", code="card_declined", extra=extra)

    def declines(self, pm_id: str) -> Card | None:
        """The card of a PM (or test token) if charging it would be declined."""
        card = TEST_CARDS.get(pm_id) or self.cards.get(pm_id)
        return card if card is not None and card.decline_code else None

    def _new_charge(self, pi: Obj, pm: Obj, card: Card) -> Obj:
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
            created=self.now(pi["customer"]),
            currency=pi["currency"],
            customer=pi["customer"],
            description=pi["description"],
            failure_code=None if ok else "card_declined",
            failure_message=None if ok else _DECLINE_MESSAGES.get(card.decline_code or "", "Your card was declined."),
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
            receipt_url=f"{self.base_url}/receipts/{charge_id}",
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
        return self.add(charge)

    def _render_charge(self, out: Obj) -> None:
        refunds = [self.render(r) for r in reversed(self.all("refund")) if r["charge"] == out["id"]]
        out["refunds"] = self.list_object(refunds, f"/v1/charges/{out['id']}/refunds")

    def create_payment_intent(self, params: Obj) -> Obj:
        amount = req_int(params, "amount")
        currency = req_str(params, "currency").lower()
        customer_id = get_str(params, "customer")
        if customer_id:
            self.get("customer", customer_id, param="customer")
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
            self.check_confirmable(pm, customer_id, options)
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
            return self.payment_method_from_data(data)
        return self.resolve_payment_method(pm_id, param="payment_method") if pm_id else None

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
            self.confirm_delayed(pi, pm, params)
            return
        charge = self.confirm(pi, pm, off_session=bool(get_bool(params, "off_session", False)))
        if pi["status"] not in ("succeeded", "processing"):
            self.raise_card_error(pi, dict(pi["last_payment_error"], charge=charge["id"]))

    def check_confirmable(self, pm: Obj, customer: str | None, options: Obj) -> None:
        """Refuse a confirmation with `pm` before anything is created (parameter errors, not payment failures)."""

    def confirm_delayed(self, pi: Obj, pm: Obj, params: Obj) -> None:
        """Confirm with a delayed-notification payment method (us_bank_account, customer_balance)."""
        raise invalid(f"Payment method type {pm['type']} is not emulated.", param="payment_method")

    def confirm_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        pi = self.get("payment_intent", pi_id)
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
            pm = self.resolve_payment_method(pm_id, param="payment_method") if pm_id else None
        if pm is not None:
            types = pi["payment_method_types"] if pi["id"] in self.explicit_pm_types else []
            self.check_payment_method_type(pm, types, pi["currency"])
        options = {**pi["payment_method_options"], **self.payment_method_options(params, [])}
        for type_ in [*pi["payment_method_types"], *([pm["type"]] if pm else [])]:
            if type_ not in options:
                options.update(self.payment_method_options({}, [type_]))
        if pm is not None:
            self.check_confirmable(pm, pi["customer"], options)
            if pm["type"] not in pi["payment_method_types"]:
                pi["payment_method_types"] = [*pi["payment_method_types"], pm["type"]]
        pi["payment_method_options"] = options
        self._confirm_or_raise(pi, pm, params)
        return pi

    def cancel_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        pi = self.get("payment_intent", pi_id)
        if pi["status"] in ("succeeded", "canceled"):
            raise invalid(
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        pi.update(
            status="canceled",
            canceled_at=self.now(pi["customer"]),
            cancellation_reason=get_str(params, "cancellation_reason"),
        )
        self.emit("payment_intent.canceled", pi)
        return pi

    def list_payment_intents(self, params: Obj) -> Obj:
        items = self.all("payment_intent")
        customer = get_str(params, "customer")
        if customer:
            items = [p for p in items if p["customer"] == customer]
        return self.paginate(items, "/v1/payment_intents", params)

    def list_charges(self, params: Obj) -> Obj:
        items = self.all("charge")
        for field in ("customer", "payment_intent"):
            value = get_str(params, field)
            if value:
                items = [c for c in items if c[field] == value]
        return self.paginate(items, "/v1/charges", params)

    # ============================================================= refunds
    def create_refund(self, params: Obj) -> Obj:
        charge_id = get_str(params, "charge")
        pi_id = get_str(params, "payment_intent")
        if charge_id:
            charge = self.get("charge", charge_id, param="charge")
        elif pi_id:
            pi = self.get("payment_intent", pi_id, param="payment_intent")
            if not pi["latest_charge"] or self.objects[pi["latest_charge"]]["status"] != "succeeded":
                raise invalid(
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="charge_not_refundable",
                )
            charge = self.objects[pi["latest_charge"]]
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
            created=self.now(charge["customer"]),
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
        self.add(refund)
        before = self.render(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge, self.diff(before, self.render(charge)))
        return refund

    def list_refunds(self, params: Obj) -> Obj:
        items = self.all("refund")
        for field in ("charge", "payment_intent"):
            value = get_str(params, field)
            if value:
                items = [r for r in items if r[field] == value]
        return self.paginate(items, "/v1/refunds", params)

    # ============================================================ disputes
    def create_dispute(self, params: Obj, charge_id: str) -> Obj:
        """Test helper: the cardholder disputes a charge."""
        charge = self.get("charge", charge_id)
        amount = get_int(params, "amount", charge["amount"] - charge["amount_refunded"])
        now = self.now(charge["customer"])
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
        self.add(dispute)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute)
        return dispute
