"""Stripe reads for reconciliation, within Stripe's limits: list endpoints with `created` ranges and
pagination (`starting_after` / `has_more`), every request through one rate limiter, and the cursor of
each range list kept after every page (a run that stops resumes where it was)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shared.reconcile.checks import StripePayment
from shared.stripe_gateway import ChargeRefunds, Dispute, ListPage, PaymentIntent, PaymentMoved, Refund, StripeGateway

T = TypeVar("T")
# Stripe allows 100 read requests/s live and 25 in test mode, shared with every other function: the run
# takes a share under the test-mode limit, so the same setting is safe in both (template.yaml).
DEFAULT_READS_PER_S = 20.0
REMEMBER_S = 600.0  # a range's refunds and disputes, read once for every org of a run


class RateLimiter:
    """A token bucket: at most `rate` requests per second on average, bursts of at most `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._rate, self._burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()
        self.requests = 0

    def take(self) -> None:
        """Waits until a request may be sent."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            self._tokens -= 1
            self.requests += 1
        if wait > 0:
            self._sleep(wait)


class Checkpoint(Protocol):
    """Where the cursor of a range list is kept between pages (the run's state)."""

    def cursor(self, name: str) -> str | None: ...

    def save(self, name: str, after: str | None, seen: list[str]) -> None: ...


@dataclass
class MemoryCheckpoint:
    """For one org's on-demand run: nothing to resume."""

    cursors: dict[str, str | None]

    def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def save(self, name: str, after: str | None, seen: list[str]) -> None:
        self.cursors[name] = after


class StripeReads:
    def __init__(self, gateway: StripeGateway, limiter: RateLimiter, now: Callable[[], float] = time.monotonic):
        self._gateway = gateway
        self._limiter = limiter
        self._now = now
        self._memo: dict[tuple[object, ...], tuple[float, list[Any]]] = {}

    @property
    def requests(self) -> int:
        return self._limiter.requests

    def _pages(self, fetch: Callable[[str | None], ListPage[T]], after: str | None = None) -> Iterator[ListPage[T]]:
        while True:
            self._limiter.take()
            page = fetch(after)
            yield page
            if not page.has_more:
                return
            after = page.last_id

    def _all(self, fetch: Callable[[str | None], ListPage[T]]) -> list[T]:
        return [item for page in self._pages(fetch) for item in page.items]

    def wallet_intents_in(
        self, created: tuple[int, int], checkpoint: Checkpoint, customer_id: str | None = None
    ) -> Iterator[PaymentIntent]:
        """Wallet top-up intents created in the range, page by page, the cursor kept after each."""
        name = f"payment_intents:{customer_id or '*'}"

        def fetch(after: str | None) -> ListPage[PaymentIntent]:
            return self._gateway.payment_intents_page(created=created, customer_id=customer_id, after=after)

        for page in self._pages(fetch, checkpoint.cursor(name)):
            yield from (p for p in page.items if p.metadata.get("kind") == "wallet_topup")
            checkpoint.save(name, page.last_id if page.has_more else None, [])

    def refunds_in(self, created: tuple[int, int]) -> list[Refund]:
        """Every refund created in the range (read once per range for REMEMBER_S: a run's orgs share it)."""
        return self._remembered(("refunds", *created), lambda a: self._gateway.refunds_page(created=created, after=a))

    def disputes_in(self, created: tuple[int, int]) -> list[Dispute]:
        return self._remembered(("disputes", *created), lambda a: self._gateway.disputes_page(created=created, after=a))

    def payments_moved_in(self, created: tuple[int, int]) -> list[PaymentMoved]:
        """Payments that moved in the range whatever day they were created (an intent that succeeded after
        midnight, a bank transfer funded later, a dispute closed, a refund failed): from Stripe's events."""
        return self._remembered(
            ("moved", *created), lambda a: self._gateway.payments_moved_page(created=created, after=a)
        )

    def _remembered(self, key: tuple[object, ...], fetch: Callable[[str | None], ListPage[T]]) -> list[T]:
        now = self._now()
        kept = self._memo.get(key)
        if kept is None or now - kept[0] > REMEMBER_S:
            kept = (now, self._all(fetch))
            self._memo[key] = kept
        return list(kept[1])

    def payment(self, intent_id: str) -> tuple[PaymentIntent, StripePayment] | None:
        """The intent with every refund and dispute of it (3 requests and their pages); None if Stripe
        has no such intent."""
        from shared.errors import InvalidRequestError

        self._limiter.take()
        try:
            intent = self._gateway.get_payment_intent(intent_id)
        except InvalidRequestError:
            return None
        refunds = self._all(lambda after: self._gateway.refunds_page(payment_intent_id=intent_id, after=after))
        disputes = self._all(lambda after: self._gateway.disputes_page(payment_intent_id=intent_id, after=after))
        return intent, StripePayment(
            intent_id=intent.intent_id,
            status=intent.status,
            amount_minor=intent.amount_received_minor
            if intent.status == "succeeded" and intent.amount_received_minor
            else intent.amount_minor,
            currency=intent.currency,
            refunds={r.refund_id: (r.amount_minor, r.status) for r in refunds},
            disputes={d.dispute_id: (d.amount_minor or 0, d.status) for d in disputes},
        )

    def overage_items(self, customer_id: str, org_id: str) -> list[Any]:
        """The customer's invoice items of our overage (`billing_key` overage:<org>:...)."""
        items = self._all(lambda after: self._gateway.invoice_items_page(customer_id=customer_id, after=after))
        return [i for i in items if i.metadata.get("billing_key", "").startswith(f"overage:{org_id}:")]

    def charge_refunds(self, charge_id: str) -> ChargeRefunds:
        self._limiter.take()
        return self._gateway.charge_refunds(charge_id)

    def invoice_total(self, invoice_id: str) -> int:
        """The Stripe invoice's total; 0 if Stripe has no such invoice (what our invoice says was charged
        through it then disagrees: invoice_stripe_total, not a crash)."""
        from shared.errors import InvalidRequestError

        self._limiter.take()
        try:
            return self._gateway.get_invoice(invoice_id).total_minor
        except InvalidRequestError:
            return 0
