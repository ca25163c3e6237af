"""Customers, their balance ledger (customer balance transactions) and their cash balance (bank transfers)."""

from __future__ import annotations

import secrets

from .. import fixtures
from ..errors import invalid, missing
from ..params import (
    get_dict,
    get_int,
    get_str,
    merge_metadata,
    req_int,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store
from .payment_methods import PaymentMethods


class Customers:
    def __init__(self, store: Store, payment_methods: PaymentMethods) -> None:
        self.store = store
        self.payment_methods = payment_methods
        self.cash: dict[str, dict[str, int]] = {}  # customer -> currency -> available cash balance

    def create_customer(self, params: Obj) -> Obj:
        clock_id = get_str(params, "test_clock")
        if clock_id:
            self.store.get("test_helpers.test_clock", clock_id, param="test_clock")
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
        customer["created"] = self.store.objects[clock_id]["frozen_time"] if clock_id else self.store.now()
        self.store.add(customer)
        self._apply_invoice_settings(customer, params)
        self.store.emit("customer.created", customer)
        balance = get_int(params, "balance")
        if balance:
            self.balance_transaction(customer, balance, "initial", description=None, metadata={})
        return customer

    def _apply_invoice_settings(self, customer: Obj, params: Obj) -> None:
        settings = get_dict(params, "invoice_settings")
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id:
                pm = self.payment_methods.resolve(pm_id, customer=customer["id"], param="default_payment_method")
                pm_id = pm["id"]
            customer["invoice_settings"]["default_payment_method"] = pm_id

    def update_customer(self, params: Obj, customer_id: str) -> Obj:
        customer = self.store.get("customer", customer_id)
        before = self.store.render(customer)
        for field in ("email", "name", "phone", "description"):
            if field in params:
                customer[field] = params[field] or None
        customer["metadata"] = merge_metadata(customer["metadata"], params.get("metadata"))
        self._apply_invoice_settings(customer, params)
        balance = get_int(params, "balance")
        if balance is not None and balance != customer["balance"]:
            self.balance_transaction(customer, balance - customer["balance"], "adjustment", None, {}, emit=False)
        self.store.emit("customer.updated", customer, self.store.diff(before, self.store.render(customer)))
        return customer

    def delete_customer(self, params: Obj, customer_id: str) -> Obj:
        customer = self.store.get("customer", customer_id)
        customer["deleted"] = True
        self.store.emit("customer.deleted", customer)
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_customers(self, params: Obj) -> Obj:
        items = self.store.all("customer")
        email = get_str(params, "email")
        if email:
            items = [c for c in items if c["email"] == email]
        clock = get_str(params, "test_clock")
        if clock:
            items = [c for c in items if c["test_clock"] == clock]
        return self.store.paginate([c for c in items if not c.get("deleted")], "/v1/customers", params)

    def balance_transaction(
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
        before = self.store.render(customer)
        customer["balance"] += amount
        if customer["currency"] is None:
            customer["currency"] = currency or "usd"
        txn = fixtures.base(
            "customer_balance_transaction",
            id=fixtures.new_id("cbtxn_"),
            amount=amount,
            created=self.store.now(customer["id"]),
            currency=currency or customer["currency"],
            customer=customer["id"],
            description=description,
            ending_balance=customer["balance"],
            invoice=invoice,
            metadata=metadata,
            type=kind,
        )
        self.store.add(txn)
        if emit:
            self.store.emit("customer.updated", customer, self.store.diff(before, self.store.render(customer)))
        return txn

    def create_balance_transaction(self, params: Obj, customer_id: str) -> Obj:
        customer = self.store.get("customer", customer_id)
        amount = req_int(params, "amount")
        currency = req_str(params, "currency").lower()
        if customer["currency"] and currency != customer["currency"]:
            raise invalid(
                f"The currency {currency} does not match the customer's currency {customer['currency']}.",
                param="currency",
            )
        return self.balance_transaction(
            customer,
            amount,
            "adjustment",
            get_str(params, "description"),
            merge_metadata({}, params.get("metadata")),
            currency=currency,
        )

    def list_balance_transactions(self, params: Obj, customer_id: str) -> Obj:
        self.store.get("customer", customer_id)
        items = [t for t in self.store.all("customer_balance_transaction") if t["customer"] == customer_id]
        return self.store.paginate(items, f"/v1/customers/{customer_id}/balance_transactions", params)

    def retrieve_balance_transaction(self, params: Obj, customer_id: str, txn_id: str) -> Obj:
        txn = self.store.get("customer_balance_transaction", txn_id)
        if txn["customer"] != customer_id:
            raise missing("customer balance transaction", txn_id)
        return txn

    def cash_transaction(self, customer: Obj, currency: str, amount: int, kind: str, details: Obj) -> Obj:
        balances = self.cash.setdefault(customer["id"], {})
        balances[currency] = balances.get(currency, 0) + amount
        txn = fixtures.base(
            "customer_cash_balance_transaction",
            id=fixtures.new_id("ccsbtxn_"),
            created=self.store.now(customer["id"]),
            currency=currency,
            customer=customer["id"],
            ending_balance=balances[currency],
            net_amount=amount,
            type=kind,
        )
        txn.pop("funded", None)
        txn[kind] = details
        self.store.add(txn)
        self.store.emit("customer_cash_balance_transaction.created", txn)
        return txn

    def cash_balance(self, customer_id: str) -> Obj:
        return {
            "object": "cash_balance",
            "available": {c: a for c, a in self.cash.get(customer_id, {}).items() if a},
            "customer": customer_id,
            "customer_account": None,
            "livemode": False,
            "settings": {"reconciliation_mode": "automatic", "using_merchant_default": True},
        }

    def retrieve_cash_balance(self, params: Obj, customer_id: str) -> Obj:
        self.store.get("customer", customer_id)
        return self.cash_balance(customer_id)

    def list_cash_balance_transactions(self, params: Obj, customer_id: str) -> Obj:
        self.store.get("customer", customer_id)
        items = [t for t in self.store.all("customer_cash_balance_transaction") if t["customer"] == customer_id]
        return self.store.paginate(items, f"/v1/customers/{customer_id}/cash_balance_transactions", params)

    def retrieve_cash_balance_transaction(self, params: Obj, customer_id: str, txn_id: str) -> Obj:
        txn = self.store.get("customer_cash_balance_transaction", txn_id)
        if txn["customer"] != customer_id:
            raise missing("customer cash balance transaction", txn_id)
        return txn

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/customers", self.create_customer),
            stripe("GET", "/v1/customers", self.list_customers),
            stripe("GET", f"/v1/customers/{ID}", lambda p, i: self.store.get("customer", i)),
            stripe("POST", f"/v1/customers/{ID}", self.update_customer),
            stripe("DELETE", f"/v1/customers/{ID}", self.delete_customer),
            stripe("POST", f"/v1/customers/{ID}/balance_transactions", self.create_balance_transaction),
            stripe("GET", f"/v1/customers/{ID}/balance_transactions", self.list_balance_transactions),
            stripe("GET", f"/v1/customers/{ID}/balance_transactions/{ID}", self.retrieve_balance_transaction),
            stripe("GET", f"/v1/customers/{ID}/cash_balance", self.retrieve_cash_balance),
            stripe("GET", f"/v1/customers/{ID}/cash_balance_transactions", self.list_cash_balance_transactions),
            stripe("GET", f"/v1/customers/{ID}/cash_balance_transactions/{ID}", self.retrieve_cash_balance_transaction),
        ]
