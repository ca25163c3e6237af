"""The Stripe gateway: the only module that imports `stripe`.

Every write carries an idempotency key derived from our own ids (the SDK reuses it on its own
retries of 429 / 5xx / network errors, with backoff). Stripe errors become domain errors. What
comes back is plain data (our models), so services never see Stripe objects. Requests are built as the
SDK's own parameter types (`stripe.params`), so mypy checks them against Stripe's API; the SDK is
imported for types only at module level (at run time on first use)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypedDict, TypeVar, cast

from shared.errors import (
    ConflictError,
    DomainError,
    InvalidRequestError,
    MalformedWebhookError,
    PaymentDeclinedError,
    StripeTimeoutError,
    ThrottledError,
    UpstreamError,
    WebhookSignatureError,
)

if TYPE_CHECKING:
    from stripe import RequestOptions, StripeClient
    from stripe.params import (
        ChargeListParams,
        CustomerBalanceTransactionCreateParams,
        CustomerCreateParams,
        CustomerRetrieveParams,
        DisputeListParams,
        EventListParams,
        InvoiceCreateParams,
        InvoiceCreatePreviewParams,
        InvoiceCreatePreviewParamsSubscriptionDetailsItem,
        InvoiceItemCreateParams,
        InvoiceItemListParams,
        InvoiceLineItemListParams,
        InvoiceListParams,
        PaymentIntentCreateParams,
        PaymentIntentListParams,
        PaymentMethodListParams,
        PriceCreateParams,
        PriceListParams,
        ProductCreateParams,
        RefundCreateParams,
        RefundListParams,
        SubscriptionCreateParams,
        SubscriptionUpdateParams,
        SubscriptionUpdateParamsItem,
    )
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams

T = TypeVar("T")

# An object of Stripe's API as JSON: a webhook's `data.object` as Stripe sent it, or what the SDK's
# `to_dict()` gives. Only the parsers below read one; they turn it into the dataclasses of this module.
StripeJson: TypeAlias = dict[str, Any]
ProrationBehavior: TypeAlias = Literal["always_invoice", "create_prorations", "none"]


@dataclass(frozen=True)
class SubscriptionItem:
    item_id: str
    price_id: str
    lookup_key: str | None
    quantity: int


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    customer_id: str
    status: str
    items: tuple[SubscriptionItem, ...]
    current_period_start: int
    current_period_end: int
    billing_cycle_anchor: int
    cancel_at_period_end: bool
    metadata: dict[str, str]
    latest_invoice_id: str | None
    ended_at: int | None = None  # when it ended (cancelled at once: the moment; at period end: that end)


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    amount_minor: int
    proration: bool
    price_id: str | None  # None: a line of an amount (our overage), not of a price
    quantity: int | None
    period_start: int
    period_end: int
    unit_amount_decimal: Decimal | None = None  # the unit price in minor units (a price's, or an item's own)
    metric: str | None = None  # our overage items' `metric` metadata


@dataclass(frozen=True)
class PricedQuantity:
    """An invoice item's quantity at a unit price in decimal minor units (1.8 = 1.8 cents)."""

    quantity: int
    unit_minor: Decimal
    currency: str


@dataclass(frozen=True)
class Invoice:
    invoice_id: str | None  # None for a preview
    customer_id: str
    subscription_id: str | None
    status: str | None
    billing_reason: str | None
    currency: str
    number: str | None
    subtotal_minor: int
    total_minor: int
    amount_due_minor: int
    amount_paid_minor: int
    starting_balance_minor: int
    ending_balance_minor: int | None
    period_start: int
    period_end: int
    lines: tuple[InvoiceLine, ...]
    metadata: dict[str, str]
    attempt_count: int | None = None  # payment attempts so far (Stripe counts them on failure)
    collection_method: str | None = None  # charge_automatically | send_invoice
    paid_at: int | None = None
    paid_off_stripe_minor: int = 0  # paid outside Stripe, marked paid out of band (a wire support recorded)
    due_date: int | None = None  # send_invoice: when it is due


@dataclass(frozen=True)
class Charge:
    charge_id: str
    amount_minor: int
    amount_refunded_minor: int
    currency: str
    created: int

    @property
    def refundable_minor(self) -> int:
        return self.amount_minor - self.amount_refunded_minor


@dataclass(frozen=True)
class CheckoutSession:
    session_id: str
    mode: str | None
    payment_status: str | None
    client_reference_id: str | None
    customer_id: str | None  # when Stripe sent the customer's id (not an expanded customer)
    subscription_id: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class SubscriptionChange:
    """The object of a `customer.subscription.*` event: which subscription, and whose."""

    subscription_id: str
    customer_id: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class PaymentIntent:
    intent_id: str
    status: str | None
    amount_minor: int
    amount_received_minor: int | None
    latest_charge_id: str | None
    metadata: dict[str, str]
    customer_id: str | None = None
    currency: str = ""


@dataclass(frozen=True)
class Refund:
    refund_id: str
    charge_id: str | None
    amount_minor: int
    currency: str
    status: str | None  # pending | requires_action | succeeded | failed | canceled
    metadata: dict[str, str]
    payment_intent_id: str | None = None
    created: int = 0


@dataclass(frozen=True)
class ChargeRefunds:
    """A charge as Stripe has it now, with every refund made on it (ours and the dashboard's)."""

    charge_id: str
    customer_id: str | None
    currency: str
    refunds: tuple[Refund, ...]


# Stripe's inquiries (statuses of a dispute that withdrew no funds): not money taken; one that escalates
# to a chargeback takes the funds then (the daily reconciliation takes it from the wallet if the
# webhook is lost).
DISPUTE_INQUIRIES = frozenset({"warning_needs_response", "warning_under_review", "warning_closed"})


@dataclass(frozen=True)
class Dispute:
    """A dispute has no customer: whose it is comes from its charge."""

    dispute_id: str
    charge_id: str | None
    amount_minor: int | None
    reason: str | None
    status: str | None = None  # won | lost | needs_response | under_review | ...
    payment_intent_id: str | None = None
    created: int = 0


@dataclass(frozen=True)
class PaymentMoved:
    """An event of a payment that moved money after the day it was created: the intent succeeded (a card
    confirmed after midnight, a bank transfer funded days later), a dispute closed, a refund failed."""

    event_id: str
    type: str
    payment_intent_id: str | None
    charge_id: str | None
    metadata: dict[str, str]  # the intent's (a dispute's or refund's own are not the top-up's)
    customer_id: str | None = None


# The events of PaymentMoved: listed by the day they happened, whatever day their payment was created.
PAYMENT_MOVED_EVENTS = (
    "payment_intent.succeeded",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
)


@dataclass(frozen=True)
class InvoiceItem:
    """An invoice item of ours (`billing_key` metadata): on an invoice, or pending for the next one."""

    item_id: str
    invoice_id: str | None
    amount_minor: int
    currency: str
    metadata: dict[str, str]


ListedT = TypeVar("ListedT")


@dataclass(frozen=True)
class ListPage(Generic[ListedT]):
    """One page of a Stripe list (newest first): resume after `last_id` while `has_more`."""

    items: tuple[ListedT, ...]
    has_more: bool
    last_id: str | None


class BankPaymentShown(TypedDict, total=False):
    """What the customer is shown to finish a bank payment: the intent's status and, for a wire, where
    to send the money."""

    status: str | None
    reference: str | None
    amount_remaining_minor: int | None
    financial_addresses: list[dict[str, object]] | None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event. Its object stays as Stripe sent it (the webhook function passes it
    through its idempotency layer as JSON); the methods below read it as what the event type says it is."""

    event_id: str
    type: str
    created: int
    object: StripeJson

    def checkout_session(self) -> CheckoutSession:
        obj = self.object
        customer = obj.get("customer")
        return CheckoutSession(
            session_id=str(obj["id"]),
            mode=obj.get("mode"),
            payment_status=obj.get("payment_status"),
            client_reference_id=obj.get("client_reference_id"),
            customer_id=customer if isinstance(customer, str) else None,
            subscription_id=_id_of(obj.get("subscription")),
            metadata=_metadata(obj),
        )

    def subscription_change(self) -> SubscriptionChange:
        obj = self.object
        return SubscriptionChange(str(obj["id"]), _id_of(obj.get("customer")), _metadata(obj))

    def invoice(self) -> Invoice:
        return _invoice(self.object)

    @property
    def object_id(self) -> str:
        return str(self.object["id"])

    def payment_intent(self) -> PaymentIntent:
        return _payment_intent(self.object)

    def refund(self) -> Refund:
        return _refund(self.object)

    def dispute(self) -> Dispute:
        return _dispute(self.object)


def _payment_intent(obj: StripeJson) -> PaymentIntent:
    return PaymentIntent(
        intent_id=str(obj["id"]),
        status=obj.get("status"),
        amount_minor=int(obj["amount"]),
        amount_received_minor=obj.get("amount_received"),
        latest_charge_id=_id_of(obj.get("latest_charge")),
        metadata=_metadata(obj),
        customer_id=_id_of(obj.get("customer")),
        currency=str(obj.get("currency") or "").upper(),
    )


def _refund(obj: StripeJson) -> Refund:
    return Refund(
        refund_id=str(obj["id"]),
        charge_id=_id_of(obj.get("charge")),
        amount_minor=int(obj["amount"]),
        currency=str(obj.get("currency") or "").upper(),
        status=obj.get("status"),
        metadata=_metadata(obj),
        payment_intent_id=_id_of(obj.get("payment_intent")),
        created=int(obj.get("created") or 0),
    )


def _dispute(obj: StripeJson) -> Dispute:
    return Dispute(
        dispute_id=str(obj["id"]),
        charge_id=_id_of(obj.get("charge")),
        amount_minor=obj.get("amount"),
        reason=obj.get("reason"),
        status=obj.get("status"),
        payment_intent_id=_id_of(obj.get("payment_intent")),
        created=int(obj.get("created") or 0),
    )


def _page(items: list[ListedT], has_more: bool) -> ListPage[ListedT]:
    last = getattr(items[-1], _ID_FIELDS[type(items[-1]).__name__]) if items else None
    return ListPage(tuple(items), has_more and bool(items), last)


_ID_FIELDS = {
    "PaymentMoved": "event_id",
    "PaymentIntent": "intent_id",
    "Refund": "refund_id",
    "Dispute": "dispute_id",
    "InvoiceItem": "item_id",
}


def _payment_moved(event: StripeJson) -> PaymentMoved:
    obj = dict((event.get("data") or {}).get("object") or {})
    intent = obj if obj.get("object") == "payment_intent" else {}
    return PaymentMoved(
        event_id=str(event["id"]),
        type=str(event.get("type") or ""),
        payment_intent_id=str(obj["id"]) if intent else _id_of(obj.get("payment_intent")),
        charge_id=_id_of(intent.get("latest_charge")) if intent else _id_of(obj.get("charge")),
        metadata=_metadata(intent),
        customer_id=_id_of(intent.get("customer")) if intent else None,
    )


def _id_of(field: str | StripeJson | None) -> str | None:
    """An expandable field's id: Stripe sends the id, or the object when expanded."""
    return field if isinstance(field, str) else (field or {}).get("id")


def _metadata(obj: StripeJson) -> dict[str, str]:
    return dict(obj.get("metadata") or {})


def _sub(obj: StripeJson) -> Subscription:
    items = tuple(
        SubscriptionItem(
            item_id=i["id"],
            price_id=i["price"]["id"],
            lookup_key=i["price"].get("lookup_key"),
            quantity=int(i.get("quantity") or 0),
        )
        for i in obj["items"]["data"]
    )
    # This API version keeps the billing period on each item (the subscription has none; its items share it).
    first = obj["items"]["data"][0] if obj["items"]["data"] else {}
    latest = obj.get("latest_invoice")
    return Subscription(
        subscription_id=obj["id"],
        customer_id=obj["customer"] if isinstance(obj["customer"], str) else obj["customer"]["id"],
        status=obj["status"],
        items=items,
        current_period_start=int(first.get("current_period_start") or 0),
        current_period_end=int(first.get("current_period_end") or 0),
        billing_cycle_anchor=int(obj["billing_cycle_anchor"]),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        metadata=dict(obj.get("metadata") or {}),
        latest_invoice_id=latest if isinstance(latest, str) or latest is None else latest["id"],
        ended_at=int(obj["ended_at"]) if obj.get("ended_at") else None,
    )


def _invoice(obj: StripeJson) -> Invoice:
    lines = []
    for line in obj["lines"]["data"]:
        # This API version: the price under `pricing.price_details`, proration under `parent.<kind>_details`.
        price_details = (line.get("pricing") or {}).get("price_details") or {}
        parent = line.get("parent") or {}
        details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
        lines.append(
            InvoiceLine(
                description=line.get("description") or "",
                amount_minor=int(line["amount"]),
                proration=bool(details.get("proration")),
                price_id=_id_of(price_details.get("price")),
                quantity=line.get("quantity"),
                period_start=int(line["period"]["start"]),
                period_end=int(line["period"]["end"]),
                unit_amount_decimal=_decimal_or_none((line.get("pricing") or {}).get("unit_amount_decimal")),
                metric=(line.get("metadata") or {}).get("metric"),
            )
        )
    sub = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")  # None: not a sub's
    customer = obj["customer"]
    return Invoice(
        invoice_id=obj.get("id"),
        customer_id=customer if isinstance(customer, str) else customer["id"],
        subscription_id=_id_of(sub),
        status=obj.get("status"),
        billing_reason=obj.get("billing_reason"),
        currency=str(obj["currency"]).upper(),
        number=obj.get("number"),
        subtotal_minor=int(obj["subtotal"]),
        total_minor=int(obj["total"]),
        amount_due_minor=int(obj["amount_due"]),
        amount_paid_minor=int(obj.get("amount_paid") or 0),
        starting_balance_minor=int(obj.get("starting_balance") or 0),
        ending_balance_minor=None if obj.get("ending_balance") is None else int(obj["ending_balance"]),
        period_start=int(obj.get("period_start") or 0),
        period_end=int(obj.get("period_end") or 0),
        lines=tuple(lines),
        metadata=dict(obj.get("metadata") or {}),
        attempt_count=obj.get("attempt_count"),
        collection_method=obj.get("collection_method"),
        paid_at=(obj.get("status_transitions") or {}).get("paid_at"),
        paid_off_stripe_minor=int(obj.get("amount_paid_off_stripe") or 0),
        due_date=obj.get("due_date"),
    )


def _billing_keys(items: list[StripeJson]) -> set[str]:
    """The `billing_key` metadata of our invoice items among `items` (ours carry one)."""
    metadata = [i.get("metadata") or {} for i in items]
    return {str(m["billing_key"]) for m in metadata if m.get("billing_key")}


def _decimal_or_none(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _plain(obj: Any) -> StripeJson:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# Time budget of one Stripe call: its attempts (the SDK's retries of 409 / 5xx / network errors with the
# same idempotency key, and ours of 429s) all end inside it, and inside the request's own deadline
# (shared/stripe_http.py). Stripe's SDK defaults (80 s per attempt, retried) cannot finish inside a Lambda
# function; the template's timeouts are tested against this (tests/unit/test_template.py).
NETWORK_RETRIES = 1
CALL_BUDGET_S = 20.0
RATE_LIMIT_BACKOFF_MAX_S = 1.0


def worst_case_call_seconds() -> float:
    """The longest one gateway call can take, whatever Stripe does."""
    return CALL_BUDGET_S


@dataclass(frozen=True)
class StripeKeys:
    api_key: str
    webhook_secret: str


class _Connection:
    """The SDK module and client, made on first use (so a function that never calls Stripe never reads
    its secret, and cold starts do not import the SDK)."""

    def __init__(self, keys: StripeKeys, api_base: str | None, network_retries: int) -> None:
        import stripe  # imported on first use, not at cold import: it costs ~140 ms

        from shared.observability import trace_stripe_http
        from shared.stripe_http import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DeadlineSession

        trace_stripe_http()
        self.stripe = stripe
        http = stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), session=DeadlineSession())
        addresses: Any = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(
            keys.api_key, base_addresses=addresses, max_network_retries=network_retries, http_client=http
        )
        self.webhook_secret = keys.webhook_secret


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        max_retries: int = NETWORK_RETRIES,
    ):
        self._keys: Callable[[], StripeKeys] = lambda: StripeKeys(api_key, webhook_secret)
        self._api_base = api_base
        self._max_retries = max_retries
        self._prices: dict[str, str] = {}

    @classmethod
    def from_keys(cls, keys: Callable[[], StripeKeys], api_base: str | None = None) -> StripeGateway:
        """A gateway whose keys are fetched (by `keys`) on its first Stripe call, not before."""
        gateway = cls("", "", api_base=api_base)
        gateway._keys = keys
        return gateway

    @cached_property
    def _connection(self) -> _Connection:
        return _Connection(self._keys(), self._api_base, self._max_retries)

    @property
    def _stripe(self) -> Any:
        return self._connection.stripe

    @property
    def _client(self) -> StripeClient:
        return self._connection.client

    # ------------------------------------------------------------------ plumbing
    def _call(
        self, fn: Callable[..., T], *args: str, params: Mapping[str, object] | None = None, key: str | None = None
    ) -> T:
        """`fn` (a method of the SDK's client) with `params` (the SDK's parameter type for it)."""
        from shared.deadline import MIN_ATTEMPT_S, deadline_in, seconds_left

        options: RequestOptions = {"idempotency_key": key} if key else {}
        with deadline_in(CALL_BUDGET_S):
            if (seconds_left() or 0.0) < MIN_ATTEMPT_S:
                raise StripeTimeoutError("Too little time was left in this request to call Stripe. Retry.")
            try:
                return self._with_rate_limit_retries(fn, args, params or {}, options)
            except self._stripe.StripeError as exc:
                raise self._domain_error(exc) from exc

    def _domain_error(self, exc: Any) -> DomainError:
        from shared.stripe_http import DeadlinePassed

        s = self._stripe
        if isinstance(exc, s.CardError):
            return PaymentDeclinedError(
                exc.user_message or "The card was declined.",
                details={"decline_code": getattr(exc.error, "decline_code", None)},
            )
        if isinstance(exc, s.RateLimitError):
            return ThrottledError("Stripe is rate limiting; retry shortly.")
        if isinstance(exc, s.IdempotencyError):  # our key again with other parameters: never retry it as is
            return ConflictError(
                "This request's Idempotency-Key was used for a different request; use a new key.",
                code="idempotency_key_reused",
            )
        if isinstance(exc, s.InvalidRequestError):
            code = f"stripe_{exc.code or 'invalid_request'}"
            return InvalidRequestError(exc.user_message or str(exc), code=code, details={"param": exc.param})
        if isinstance(exc, s.APIConnectionError) and isinstance(exc.__cause__, DeadlinePassed):
            return StripeTimeoutError("Stripe did not answer in the time this request had. Retry: it is safe.")
        return UpstreamError("Stripe could not be reached or failed. Retry: it is safe.")

    def _with_rate_limit_retries(
        self, fn: Callable[..., T], args: tuple[str, ...], params: Mapping[str, object], options: RequestOptions
    ) -> T:
        # The SDK retries 5xx, 409, network errors and 429s Stripe marks retryable (same idempotency key);
        # other 429s are retried here, while an attempt still fits before the deadline.
        from shared.deadline import MIN_ATTEMPT_S, seconds_left

        for attempt in range(self._max_retries + 1):
            try:
                return fn(*args, params=params, options=options)
            except self._stripe.RateLimitError:
                pause = min(RATE_LIMIT_BACKOFF_MAX_S, 0.25 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
                if attempt == self._max_retries or pause + MIN_ATTEMPT_S > (seconds_left() or 0.0):
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ catalog
    def price_id(
        self, lookup_key: str, *, product_name: str, unit_amount_minor: int, currency: str, metadata: dict[str, str]
    ) -> str:
        """The monthly price with this lookup key, created once if Stripe does not have it yet."""
        if lookup_key in self._prices:
            return self._prices[lookup_key]
        listed: PriceListParams = {"lookup_keys": [lookup_key], "active": True}
        found = self._call(self._client.v1.prices.list, params=listed)
        if found.data:
            price_id = str(found.data[0].id)
        else:
            product_params: ProductCreateParams = {"name": product_name, "metadata": metadata}
            product = self._call(self._client.v1.products.create, params=product_params, key=f"product:{lookup_key}")
            price_params: PriceCreateParams = {
                "product": product.id,
                "unit_amount": unit_amount_minor,
                "currency": currency.lower(),
                "recurring": {"interval": "month"},
                "lookup_key": lookup_key,
                "metadata": metadata,
            }
            price = self._call(self._client.v1.prices.create, params=price_params, key=f"price:{lookup_key}")
            price_id = str(price.id)
        self._prices[lookup_key] = price_id
        return price_id

    # ------------------------------------------------------------------ customers and checkout
    def create_customer(self, *, org_id: str, name: str, email: str | None) -> str:
        """One Stripe customer per org (the key makes a retry return the same customer)."""
        params: CustomerCreateParams = {"name": name, "metadata": {"org_id": org_id}}
        if email:
            params["email"] = email
        return str(self._call(self._client.v1.customers.create, params=params, key=f"customer:{org_id}").id)

    def customer_balance(self, customer_id: str) -> int:
        """The customer's Stripe balance in minor units (negative = credit they hold)."""
        return int(self._call(self._client.v1.customers.retrieve, customer_id).balance or 0)

    def now_for(self, customer_id: str) -> int:
        """Stripe's "now" for a customer: its test clock's frozen time (Stripe test mode), else the time."""
        expand: CustomerRetrieveParams = {"expand": ["test_clock"]}
        customer = _plain(self._call(self._client.v1.customers.retrieve, customer_id, params=expand))
        clock = customer.get("test_clock")
        if isinstance(clock, dict) and clock.get("frozen_time"):
            return int(clock["frozen_time"])
        return int(time.time())

    def create_subscription_checkout(
        self,
        *,
        customer_id: str,
        org_id: str,
        plan_id: str,
        items: list[tuple[str, int]],
        success_url: str,
        cancel_url: str,
        key: str,
    ) -> tuple[str, str]:
        """A Checkout Session (mode subscription); returns (session id, url).

        The subscription is pinned to `classic` billing mode: since 2025-09-30.clover new subscriptions default
        to `flexible`, which computes credit prorations from what was debited before. Our seat and plan
        changes (and their previews) are written and tested against classic's prorations."""
        params: CheckoutSessionCreateParams = {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": org_id,
            "line_items": [{"price": p, "quantity": q} for p, q in items],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"org_id": org_id, "plan_id": plan_id},
            "subscription_data": {
                "metadata": {"org_id": org_id, "plan_id": plan_id},
                "billing_mode": {"type": "classic"},
            },
        }
        session = self._call(self._client.v1.checkout.sessions.create, params=params, key=key)
        return str(session.id), str(session.url)

    def create_payment_checkout(
        self,
        *,
        customer_id: str,
        name: str,
        amount_minor: int,
        currency: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        key: str,
    ) -> tuple[str, str]:
        """A Checkout Session (mode payment) for a one-off purchase; returns (session id, url)."""
        params: CheckoutSessionCreateParams = {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": metadata.get("org_id", ""),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_minor,
                        "product_data": {"name": name},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        session = self._call(self._client.v1.checkout.sessions.create, params=params, key=key)
        return str(session.id), str(session.url)

    def default_card(self, customer_id: str) -> str | None:
        """The customer's saved card for off-session charges (invoice default, else the newest card)."""
        customer = _plain(self._call(self._client.v1.customers.retrieve, customer_id))
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if default:
            return str(default if isinstance(default, str) else default["id"])
        cards_of: PaymentMethodListParams = {"customer": customer_id, "type": "card"}
        cards = self._call(self._client.v1.payment_methods.list, params=cards_of)
        return str(cards.data[0].id) if cards.data else None

    def charge_card(
        self,
        *,
        customer_id: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        metadata: dict[str, str],
        key: str,
    ) -> str:
        """An off-session charge of a saved card; PaymentDeclinedError when declined. Returns the intent id;
        the money counts only when `payment_intent.succeeded` arrives."""
        params: PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": metadata,
        }
        intent = self._call(self._client.v1.payment_intents.create, key=key, params=params)
        return str(intent.id)

    def start_bank_payment(
        self,
        *,
        customer_id: str,
        method: str,
        amount_minor: int,
        currency: str,
        metadata: dict[str, str],
        key: str,
        payment_method: str | None = None,
    ) -> tuple[str, BankPaymentShown]:
        """ACH debit (a saved us_bank_account, `processing` for days) or a wire (bank transfer to the
        customer balance, `requires_action` with instructions). Returns (intent id, what to show)."""
        params: PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "customer": customer_id,
            "confirm": True,
            "metadata": metadata,
        }
        # This API version refuses `payment_method_types` (payment_method_types_no_longer_supported).
        if method == "ach":
            params["allowed_payment_method_types"] = ["us_bank_account"]
            if payment_method is not None:  # (the SDK leaves out a None parameter anyway)
                params["payment_method"] = payment_method
            params["mandate_data"] = {"customer_acceptance": {"type": "offline"}}
        else:
            params["allowed_payment_method_types"] = ["customer_balance"]
            params["payment_method_data"] = {"type": "customer_balance"}
            params["payment_method_options"] = {
                "customer_balance": {"funding_type": "bank_transfer", "bank_transfer": {"type": "us_bank_transfer"}}
            }
        intent = _plain(self._call(self._client.v1.payment_intents.create, params=params, key=key))
        return str(intent["id"]), _bank_payment_shown(intent)

    def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        session = self._call(self._client.v1.billing_portal.sessions.create, params=params)
        return str(session.url)

    # ------------------------------------------------------------------ subscriptions
    def get_subscription(self, subscription_id: str) -> Subscription:
        return _sub(_plain(self._call(self._client.v1.subscriptions.retrieve, subscription_id)))

    def update_subscription(
        self,
        subscription_id: str,
        *,
        items: list[dict[str, Any]],
        metadata: dict[str, str],
        proration_behavior: ProrationBehavior,
        proration_date: int | None,
        key: str,
        error_if_unpaid: bool = False,
    ) -> Subscription:
        """`error_if_unpaid`: a change whose invoice cannot be paid now is refused (402), nothing changed:
        an upgrade is only had by paying for it (never through the grace of a failed payment)."""
        params: SubscriptionUpdateParams = {
            "items": cast("list[SubscriptionUpdateParamsItem]", items),
            "metadata": metadata,
            "proration_behavior": proration_behavior,
        }
        if proration_date is not None:
            params["proration_date"] = proration_date
        if error_if_unpaid:
            params["payment_behavior"] = "error_if_incomplete"
        return _sub(_plain(self._call(self._client.v1.subscriptions.update, subscription_id, params=params, key=key)))

    def create_contract_subscription(
        self,
        *,
        customer_id: str,
        price_id: str,
        collection: Literal["send_invoice", "charge_automatically"],
        days_until_due: int,
        metadata: dict[str, str],
        key: str,
    ) -> Subscription:
        """A support-made subscription (an Enterprise contract): invoiced and sent to the customer, due
        `days_until_due` after issue, or charged to its card. Classic billing mode, as for Checkout."""
        params: SubscriptionCreateParams = {
            "customer": customer_id,
            "items": [{"price": price_id, "quantity": 1}],
            "collection_method": collection,
            "metadata": metadata,
            "billing_mode": {"type": "classic"},
        }
        if collection == "send_invoice":
            params["days_until_due"] = days_until_due
        return _sub(_plain(self._call(self._client.v1.subscriptions.create, params=params, key=key)))

    def cancel_at_period_end(self, subscription_id: str, *, key: str) -> Subscription:
        """Ends the subscription when its paid period ends (a downgrade to Free)."""
        params: SubscriptionUpdateParams = {"cancel_at_period_end": True}
        return _sub(_plain(self._call(self._client.v1.subscriptions.update, subscription_id, params=params, key=key)))

    def preview_subscription_change(
        self, *, customer_id: str, subscription_id: str, items: list[dict[str, Any]], proration_date: int
    ) -> Invoice:
        params: InvoiceCreatePreviewParams = {
            "customer": customer_id,
            "subscription": subscription_id,
            "subscription_details": {
                "items": cast("list[InvoiceCreatePreviewParamsSubscriptionDetailsItem]", items),
                "proration_date": proration_date,
                "proration_behavior": "always_invoice",
            },
        }
        return _invoice(_plain(self._call(self._client.v1.invoices.create_preview, params=params)))

    # ------------------------------------------------------------------ invoices, refunds, balance
    def get_invoice(self, invoice_id: str) -> Invoice:
        return _invoice(self._whole(_plain(self._call(self._client.v1.invoices.retrieve, invoice_id))))

    def list_invoices(self, *, customer_id: str, limit: int = 100) -> list[Invoice]:
        """Every invoice of the customer (paged through), each with every line."""
        invoices: list[Invoice] = []
        after: str | None = None
        while True:
            listed: InvoiceListParams = {"customer": customer_id, "limit": limit}
            if after:
                listed["starting_after"] = after
            found = self._call(self._client.v1.invoices.list, params=listed)
            invoices += [_invoice(self._whole(_plain(i))) for i in found.data]
            if not found.has_more or not found.data:
                return invoices
            after = str(found.data[-1].id)

    def _whole(self, obj: StripeJson) -> StripeJson:
        """The invoice with all its lines: Stripe embeds the first 10 (`lines.has_more` says there are more)."""
        lines = obj.get("lines") or {}
        if not lines.get("has_more") or not obj.get("id"):
            return obj
        data = list(lines["data"])
        while True:
            params: InvoiceLineItemListParams = {"limit": 100, "starting_after": str(data[-1]["id"])}
            page = self._call(self._client.v1.invoices.line_items.list, str(obj["id"]), params=params)
            data += [_plain(line) for line in page.data]
            if not page.has_more or not page.data:
                return {**obj, "lines": {**lines, "data": data, "has_more": False}}

    def list_charges(self, *, customer_id: str) -> list[Charge]:
        listed: ChargeListParams = {"customer": customer_id, "limit": 100}
        found = self._call(self._client.v1.charges.list, params=listed)
        return [
            Charge(str(c.id), int(c.amount), int(c.amount_refunded), str(c.currency).upper(), int(c.created))
            for c in found.data
            if c.status == "succeeded"
        ]

    def refund(self, *, charge_id: str, amount_minor: int, metadata: dict[str, str], key: str) -> str:
        params: RefundCreateParams = {"charge": charge_id, "amount": amount_minor, "metadata": metadata}
        refund = self._call(self._client.v1.refunds.create, params=params, key=key)
        return str(refund.id)

    def adjust_customer_balance(
        self, *, customer_id: str, amount_minor: int, currency: str, description: str, key: str
    ) -> int:
        """Adds to the customer's Stripe balance (positive = they owe more; negative = credit)."""
        params: CustomerBalanceTransactionCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "description": description,
        }
        txn = self._call(self._client.v1.customers.balance_transactions.create, customer_id, params=params, key=key)
        return int(txn.ending_balance)

    def add_invoice_item(
        self,
        *,
        customer_id: str,
        invoice_id: str | None,
        priced: PricedQuantity,
        description: str,
        period: tuple[int, int],
        metadata: dict[str, str],
        key: str,
    ) -> str:
        """A line on a draft invoice (our overage, in arrears); with no invoice, a pending item Stripe puts
        on the customer's next invoice. Quantity x unit price (decimal minor units, e.g. 1.8 for 1.8 cents):
        Stripe's invoice shows both, and its amount is their product rounded half-even to the minor unit."""
        params: InvoiceItemCreateParams = {
            "customer": customer_id,
            "quantity": priced.quantity,
            "unit_amount_decimal": priced.unit_minor,
            "currency": priced.currency.lower(),
            "description": description,
            "period": {"start": period[0], "end": period[1]},
            "metadata": metadata,
        }
        if invoice_id is not None:
            params["invoice"] = invoice_id
        item = self._call(self._client.v1.invoice_items.create, key=key, params=params)
        return str(item.id)

    def invoice_pending_items(self, *, customer_id: str, key: str) -> str | None:
        """Our pending invoice items of a customer (`billing_key` metadata) on an invoice of their own, now,
        finalized and charged: for items whose next invoice will never come (the subscription ended).
        Returns the invoice's id, None when there is nothing of ours pending."""
        pending = self._every_invoice_item({"customer": customer_id, "pending": True})
        ours = sorted(str(i["id"]) for i in pending if (i.get("metadata") or {}).get("billing_key"))
        if not ours:
            return None
        key = f"{key}:{hashlib.sha256(','.join(ours).encode()).hexdigest()[:16]}"  # one invoice per set of items
        params: InvoiceCreateParams = {
            "customer": customer_id,
            "pending_invoice_items_behavior": "include",
            "collection_method": "charge_automatically",
            "auto_advance": True,
        }
        invoice = self._call(self._client.v1.invoices.create, params=params, key=key)
        if invoice.status == "draft":
            self._call(self._client.v1.invoices.finalize_invoice, str(invoice.id), key=f"{key}:finalize")
        return str(invoice.id)

    def pending_item_keys(self, customer_id: str) -> set[str]:
        """The `billing_key` metadata of the customer's pending invoice items (what waits for their next invoice)."""
        return _billing_keys(self._every_invoice_item({"customer": customer_id, "pending": True}))

    def invoice_item_keys(self, invoice_id: str) -> set[str]:
        """The `billing_key` metadata of the invoice's items (what we already put on it)."""
        return _billing_keys(self._every_invoice_item({"invoice": invoice_id}))

    def _every_invoice_item(self, listed: InvoiceItemListParams) -> list[StripeJson]:
        """Every invoice item `listed` selects, paged through (Stripe gives at most 100 a page). Paged by
        hand, not with the SDK's `auto_paging_iter`, so that each page is a `_call` (deadline, errors)."""
        items: list[StripeJson] = []
        while True:
            params: InvoiceItemListParams = {**listed, "limit": 100}
            if items:
                params["starting_after"] = str(items[-1]["id"])
            found = self._call(self._client.v1.invoice_items.list, params=params)
            items += [_plain(i) for i in found.data]
            if not found.has_more or not found.data:
                return items

    # ------------------------------------------------------------------ objects re-read (webhooks act on these)
    def get_payment_intent(self, intent_id: str) -> PaymentIntent:
        return _payment_intent(_plain(self._call(self._client.v1.payment_intents.retrieve, intent_id)))

    def get_refund(self, refund_id: str) -> Refund:
        return _refund(_plain(self._call(self._client.v1.refunds.retrieve, refund_id)))

    def get_dispute(self, dispute_id: str) -> Dispute:
        return _dispute(_plain(self._call(self._client.v1.disputes.retrieve, dispute_id)))

    def charge_refunds(self, charge_id: str) -> ChargeRefunds:
        """The charge and all its refunds (every page)."""
        charge = _plain(self._call(self._client.v1.charges.retrieve, charge_id))
        refunds: list[Refund] = []
        listed: RefundListParams = {"charge": charge_id, "limit": 100}
        while True:
            page = self._call(self._client.v1.refunds.list, params=listed)
            refunds += [_refund(_plain(r)) for r in page.data]
            if not page.has_more or not page.data:
                break
            listed["starting_after"] = str(page.data[-1].id)
        return ChargeRefunds(
            charge_id=str(charge["id"]),
            customer_id=_id_of(charge.get("customer")),
            currency=str(charge.get("currency") or "").upper(),
            refunds=tuple(refunds),
        )

    # ------------------------------------------------------------------ lists (reconciliation reads)
    def payment_intents_page(
        self, *, created: tuple[int, int] | None = None, customer_id: str | None = None, after: str | None = None
    ) -> ListPage[PaymentIntent]:
        """One page of 100 payment intents, newest first: created in [start, end) and / or the customer's."""
        params: PaymentIntentListParams = {"limit": 100}
        if created:
            params["created"] = {"gte": created[0], "lt": created[1]}
        if customer_id:
            params["customer"] = customer_id
        if after:
            params["starting_after"] = after
        found = self._call(self._client.v1.payment_intents.list, params=params)
        return _page([_payment_intent(_plain(p)) for p in found.data], bool(found.has_more))

    def refunds_page(
        self, *, created: tuple[int, int] | None = None, payment_intent_id: str | None = None, after: str | None = None
    ) -> ListPage[Refund]:
        """One page of 100 refunds, newest first: created in [start, end) and / or of one payment intent."""
        params: RefundListParams = {"limit": 100}
        if created:
            params["created"] = {"gte": created[0], "lt": created[1]}
        if payment_intent_id:
            params["payment_intent"] = payment_intent_id
        if after:
            params["starting_after"] = after
        found = self._call(self._client.v1.refunds.list, params=params)
        return _page([_refund(_plain(r)) for r in found.data], bool(found.has_more))

    def disputes_page(
        self, *, created: tuple[int, int] | None = None, payment_intent_id: str | None = None, after: str | None = None
    ) -> ListPage[Dispute]:
        """One page of 100 disputes, newest first: created in [start, end) and / or of one payment intent."""
        params: DisputeListParams = {"limit": 100}
        if created:
            params["created"] = {"gte": created[0], "lt": created[1]}
        if payment_intent_id:
            params["payment_intent"] = payment_intent_id
        if after:
            params["starting_after"] = after
        found = self._call(self._client.v1.disputes.list, params=params)
        return _page([_dispute(_plain(d)) for d in found.data], bool(found.has_more))

    def payments_moved_page(self, *, created: tuple[int, int], after: str | None = None) -> ListPage[PaymentMoved]:
        """One page of 100 events of PAYMENT_MOVED_EVENTS created in [start, end), newest first (Stripe keeps
        events 30 days)."""
        params: EventListParams = {"limit": 100, "types": list(PAYMENT_MOVED_EVENTS)}
        params["created"] = {"gte": created[0], "lt": created[1]}
        if after:
            params["starting_after"] = after
        found = self._call(self._client.v1.events.list, params=params)
        return _page([_payment_moved(_plain(e)) for e in found.data], bool(found.has_more))

    def invoice_items_page(self, *, customer_id: str, after: str | None = None) -> ListPage[InvoiceItem]:
        """One page of 100 of the customer's invoice items (on invoices and pending), newest first."""
        params: InvoiceItemListParams = {"customer": customer_id, "limit": 100}
        if after:
            params["starting_after"] = after
        found = self._call(self._client.v1.invoice_items.list, params=params)
        items = [_plain(i) for i in found.data]
        return _page(
            [
                InvoiceItem(
                    item_id=str(i["id"]),
                    invoice_id=_id_of(i.get("invoice")),
                    amount_minor=int(i["amount"]),
                    currency=str(i.get("currency") or "").upper(),
                    metadata=_metadata(i),
                )
                for i in items
            ],
            bool(found.has_more),
        )

    # ------------------------------------------------------------------ webhooks
    def parse_webhook(self, payload: str, signature: str | None) -> WebhookEvent:
        """Verifies Stripe's signature (and its 300 s tolerance) on the raw body, then reads the event's
        envelope. (Not `construct_event`: it builds typed objects of every resource and raises on some of
        Stripe's own shapes, e.g. `balance_settings.updated`; we read only the envelope and the object.)"""
        secret = self._connection.webhook_secret
        try:
            self._stripe.WebhookSignature.verify_header(payload, signature or "", secret, WEBHOOK_TOLERANCE_S)
        except (self._stripe.SignatureVerificationError, ValueError, TypeError) as exc:
            # TypeError: a signature that is not ASCII (hmac.compare_digest refuses to compare it)
            raise WebhookSignatureError("The Stripe signature does not match this payload.") from exc
        return _webhook_event(payload)


WEBHOOK_TOLERANCE_S = 300  # Stripe's default: a signature older than this is refused (replays)


def _webhook_event(payload: str) -> WebhookEvent:
    """The event's envelope; MalformedWebhookError when the signed body is not a Stripe event."""
    try:
        data = json.loads(payload)
        obj = data["data"]["object"]
        if not isinstance(obj, dict):
            raise TypeError("data.object is not an object")
        return WebhookEvent(str(data["id"]), str(data["type"]), int(data["created"]), obj)
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedWebhookError("The signed body is not a Stripe event (id, type, created, data.object).") from exc


def _bank_payment_shown(intent: StripeJson) -> BankPaymentShown:
    instructions = (intent.get("next_action") or {}).get("display_bank_transfer_instructions") or {}
    shown: BankPaymentShown = {"status": intent.get("status")}
    if instructions:
        shown["reference"] = instructions.get("reference")
        shown["amount_remaining_minor"] = instructions.get("amount_remaining")
        shown["financial_addresses"] = instructions.get("financial_addresses")
    return shown
