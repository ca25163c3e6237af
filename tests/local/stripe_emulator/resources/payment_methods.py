"""Payment methods: Stripe's test tokens (cards, US bank accounts), `pm_...` objects, attach/detach, and the card
errors a declining card produces."""

from __future__ import annotations

from dataclasses import dataclass

from .. import fixtures
from ..errors import ApiError, invalid, missing, param_missing
from ..params import (
    get_dict,
    get_enum,
    get_str,
    merge_metadata,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store


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

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


class PaymentMethods:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.cards: dict[str, Card] = {}  # card payment method -> its test card
        self.banks: dict[str, BankAccount] = {}  # us_bank_account payment method -> its test account

    def resolve(self, pm_id: str, *, customer: str | None = None, param: str = "payment_method") -> Obj:
        """A stored `pm_...`, or a test token (`pm_card_visa`...) turned into a fresh PM (attached to
        `customer` when given, so it can be used as a default)."""
        if pm_id in TEST_CARDS or pm_id in TEST_BANK_ACCOUNTS:
            if pm_id in TEST_CARDS:
                pm = self._new_payment_method(TEST_CARDS[pm_id], customer)
            else:
                pm = self._new_bank_payment_method(TEST_BANK_ACCOUNTS[pm_id], customer)
            if customer:
                self.store.emit("payment_method.attached", pm)
            return pm
        stored = self.store.objects.get(pm_id)
        if stored is None or stored.get("object") != "payment_method":
            raise missing("PaymentMethod", pm_id, param)
        pm = stored
        if customer and pm["customer"] is None:
            self.attach(pm, customer)
        return pm

    def _new_payment_method(self, card: Card, customer: str | None) -> Obj:
        pm = fixtures.base(
            "payment_method",
            id=fixtures.new_id("pm_"),
            created=self.store.now(customer),
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
        return self.store.add(pm)

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

    def from_data(self, data: Obj, *, param: str = "payment_method_data") -> Obj:
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

    def attach(self, pm: Obj, customer_id: str) -> None:
        pm["customer"] = customer_id
        self.store.emit("payment_method.attached", pm)

    def create_payment_method(self, params: Obj) -> Obj:
        if req_str(params, "type") != "card":
            pm = self.from_data(params, param="")
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
        self.store.get("customer", customer_id, param="customer")
        if pm_id in TEST_CARDS or pm_id in TEST_BANK_ACCOUNTS:
            return self.resolve(pm_id, customer=customer_id)
        pm = self.store.get("payment_method", pm_id)
        if pm["customer"] and pm["customer"] != customer_id:
            raise invalid(
                "The payment method you provided has already been attached to a customer.",
                code="payment_method_unexpected_state",
            )
        if pm["customer"] is None:
            self.attach(pm, customer_id)
        return pm

    def detach_payment_method(self, params: Obj, pm_id: str) -> Obj:
        pm = self.store.get("payment_method", pm_id)
        if pm["customer"] is None:
            raise invalid(
                "The payment method you provided is not attached to a customer so detachment is impossible.",
                code="payment_method_unexpected_state",
            )
        customer = self.store.objects[pm["customer"]]
        if customer["invoice_settings"]["default_payment_method"] == pm_id:
            customer["invoice_settings"]["default_payment_method"] = None
        previous = {"customer": pm["customer"]}
        pm["customer"] = None
        self.store.emit("payment_method.detached", pm, previous)
        return pm

    def retrieve_payment_method(self, params: Obj, pm_id: str) -> Obj:
        return self.store.get("payment_method", pm_id)

    def list_payment_methods(self, params: Obj) -> Obj:
        customer_id = get_str(params, "customer")
        return self._list_customer_pms(params, customer_id, "/v1/payment_methods")

    def list_customer_payment_methods(self, params: Obj, customer_id: str) -> Obj:
        self.store.get("customer", customer_id)
        return self._list_customer_pms(params, customer_id, f"/v1/customers/{customer_id}/payment_methods")

    def _list_customer_pms(self, params: Obj, customer_id: str | None, url: str) -> Obj:
        kind = get_str(params, "type")
        items = [
            pm
            for pm in self.store.all("payment_method")
            if pm["customer"] is not None
            and (customer_id is None or pm["customer"] == customer_id)
            and (kind is None or pm["type"] == kind)
        ]
        return self.store.paginate(items, url, params)

    def card_error(self, card: Card, charge_id: str | None, pm: Obj) -> Obj:
        decline = card.decline_code or "generic_decline"
        return {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline,
            "message": DECLINE_MESSAGES.get(decline, "Your card was declined."),
            "charge": charge_id,
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "payment_method": self.store.render(pm),
        }

    def raise_card_error(self, pi: Obj | None, error: Obj) -> None:
        extra = {k: v for k, v in error.items() if k not in ("type", "code", "message")}
        if pi is not None:
            extra["payment_intent"] = self.store.render(pi)
        raise ApiError(402, error["message"], type="card_error", code="card_declined", extra=extra)

    def declines(self, pm_id: str) -> Card | None:
        """The card of a PM (or test token) if charging it would be declined."""
        card = TEST_CARDS.get(pm_id) or self.cards.get(pm_id)
        return card if card is not None and card.decline_code else None

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/payment_methods", self.create_payment_method),
            stripe("GET", "/v1/payment_methods", self.list_payment_methods),
            stripe("GET", f"/v1/payment_methods/{ID}", self.retrieve_payment_method),
            stripe("POST", f"/v1/payment_methods/{ID}/attach", self.attach_payment_method),
            stripe("POST", f"/v1/payment_methods/{ID}/detach", self.detach_payment_method),
            stripe("GET", f"/v1/customers/{ID}/payment_methods", self.list_customer_payment_methods),
        ]
