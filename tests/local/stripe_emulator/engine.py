"""The emulator's composition root: one `Store` and one object per Stripe resource, each given the store and
the resources it works with (README: *Structure*)."""

from __future__ import annotations

from collections.abc import Callable

from .contract import ContractGuard
from .resources.bank_payments import BankPayments
from .resources.charges_refunds_disputes import Charges
from .resources.checkout import Checkout
from .resources.clocks import Clocks
from .resources.customers import Customers
from .resources.events_webhooks import EventsAndWebhooks
from .resources.invoices import Invoices
from .resources.payment_intents import PaymentIntents
from .resources.payment_methods import PaymentMethods
from .resources.products_prices import Catalog
from .resources.subscriptions import Subscriptions
from .routes import Resource, Route, collect
from .store import Store
from .webhooks import WebhookSender


class Engine:
    def __init__(
        self, *, webhooks: WebhookSender, api_version: str, base_url: Callable[[], str], contract: ContractGuard
    ) -> None:
        self.store = store = Store(webhooks=webhooks, api_version=api_version, base_url=base_url, contract=contract)
        self.payment_methods = PaymentMethods(store)
        self.customers = Customers(store, self.payment_methods)
        self.catalog = Catalog(store)
        self.charges = Charges(store)
        self.bank_payments = BankPayments(store, self.customers, self.payment_methods, self.charges)
        self.payment_intents = PaymentIntents(store, self.payment_methods, self.charges, self.bank_payments)
        self.invoices = Invoices(store, self.customers, self.catalog, self.payment_methods, self.payment_intents)
        self.subscriptions = Subscriptions(store, self.catalog, self.payment_methods, self.invoices)
        self.clocks = Clocks(store, self.subscriptions, self.invoices, self.bank_payments)
        self.checkout = Checkout(
            store, self.customers, self.catalog, self.payment_methods, self.payment_intents, self.subscriptions
        )
        self.events = EventsAndWebhooks(store)

    def resources(self) -> list[Resource]:
        return [
            self.customers,
            self.catalog,
            self.payment_methods,
            self.payment_intents,
            self.bank_payments,
            self.charges,
            self.checkout,
            self.subscriptions,
            self.invoices,
            self.clocks,
            self.events,
        ]

    def routes(self) -> list[Route]:
        return collect(self.resources())
