"""Test clocks: creating, advancing (asynchronously, at most two intervals at a time) and what an advance does to
the clock's customers in time order: renewals, renewal drafts' finalization, ACH settlements."""

from __future__ import annotations

import threading
import traceback

from .. import fixtures
from ..errors import invalid
from ..money import add_interval
from ..params import (
    get_str,
    req_int,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store
from .bank_payments import BankPayments
from .invoices import Invoices
from .lines import TIMES
from .subscriptions import Subscriptions

_DAY = 86_400


class Clocks:
    def __init__(
        self, store: Store, subscriptions: Subscriptions, invoices: Invoices, bank_payments: BankPayments
    ) -> None:
        self.store = store
        self.subscriptions = subscriptions
        self.invoices = invoices
        self.bank_payments = bank_payments
        # How long a clock advance lets webhook handlers run before it finalizes a draft (then finalizes anyway).
        self.draft_webhook_timeout = 30.0

    def create_test_clock(self, params: Obj) -> Obj:
        frozen = req_int(params, "frozen_time")
        clock = fixtures.base(
            "test_helpers.test_clock",
            id=fixtures.new_id("clock_"),
            created=frozen,
            deletes_after=frozen + 30 * _DAY,
            frozen_time=frozen,
            name=get_str(params, "name"),
            status="ready",
            status_details={},
        )
        return self.store.add(clock)

    def advance_test_clock(self, params: Obj, clock_id: str) -> Obj:
        """Answers the clock `advancing` (at its old frozen time, as Stripe does) and advances it right after,
        in a thread that waits for this request to let go of the lock: poll the clock (or wait for
        `test_helpers.test_clock.ready`) before reading what the advance did."""
        clock = self.store.get("test_helpers.test_clock", clock_id)
        frozen_time = req_int(params, "frozen_time")
        self.start_advance(clock, frozen_time)
        answer = self.store.render(clock)
        threading.Thread(
            target=self._advance_in_background, args=(clock, frozen_time), name=f"advance-{clock_id}", daemon=True
        ).start()
        return answer

    def _advance_in_background(self, clock: Obj, frozen_time: int) -> None:
        with self.store.lock:
            try:
                self.finish_advance(clock, frozen_time)
            except Exception:  # an emulator bug: the clock says internal_failure; show why
                traceback.print_exc()

    def delete_test_clock(self, params: Obj, clock_id: str) -> Obj:
        clock = self.store.get("test_helpers.test_clock", clock_id)
        clock["deleted"] = True
        for customer in self.store.all("customer"):
            if customer["test_clock"] == clock_id:
                customer["deleted"] = True
        return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}

    def list_test_clocks(self, params: Obj) -> Obj:
        items = [c for c in self.store.all("test_helpers.test_clock") if not c.get("deleted")]
        return self.store.paginate(items, "/v1/test_helpers/test_clocks", params)

    def advance_clock(self, clock: Obj, frozen_time: int) -> None:
        """Move a clock forward at once (start_advance + finish_advance; the HTTP route finishes it after
        answering, as Stripe does asynchronously)."""
        self.start_advance(clock, frozen_time)
        self.finish_advance(clock, frozen_time)

    def start_advance(self, clock: Obj, frozen_time: int) -> None:
        """Checks the target (after the frozen time, within two intervals of the clock's shortest subscription,
        or two years without one), then the clock is `advancing` (`test_helpers.test_clock.advancing`)."""
        if clock["status"] == "advancing":
            raise invalid("The test clock is already advancing; wait for it to be ready.", param="test_clock")
        if frozen_time <= clock["frozen_time"]:
            raise invalid("The frozen time must be after the test clock's current frozen time.", param="frozen_time")
        limit, shortest = self.advance_limit(clock)
        if frozen_time > limit:
            raise invalid(
                f"Cannot advance the test clock to {frozen_time}: a test clock advances at most two intervals of "
                f"the shortest subscription on it ({shortest}) at a time, so at most to {limit}. Advance in steps.",
                param="frozen_time",
            )
        clock.update(status="advancing", status_details={"advancing": {"target_frozen_time": frozen_time}})
        self.store.emit("test_helpers.test_clock.advancing", clock, at=clock["frozen_time"])

    def advance_limit(self, clock: Obj) -> tuple[int, str]:
        """The furthest one advance may go, and the interval that sets it ("2 x 1 month", or "2 years")."""
        customers = {c["id"] for c in self.store.all("customer") if c["test_clock"] == clock["id"]}
        frozen = clock["frozen_time"]
        limits = []
        for sub in self.store.all("subscription"):
            if sub["customer"] in customers and sub["status"] not in ("canceled", "incomplete_expired"):
                interval, count = self.subscriptions.interval(self.subscriptions.current_plans(sub))
                limits.append((add_interval(frozen, interval, 2 * count), f"2 {TIMES} {count} {interval}"))
        return min(limits, default=(add_interval(frozen, "year", 2), "no subscription: 2 years"))

    def finish_advance(self, clock: Obj, frozen_time: int) -> None:
        """Processes, in time order, every renewal (at its period boundary, so objects and events carry that
        time) and every renewal draft's finalization (DRAFT_WINDOW after its creation) of the clock's customers;
        before a finalization, webhook handlers of the events so far run (lock released). Then `ready`; an
        emulator bug leaves it `internal_failure` (Stripe's status for a failed advance) and is raised."""
        customers = {c["id"] for c in self.store.all("customer") if c["test_clock"] == clock["id"]}
        request, self.store.request = (
            self.store.request,
            None,
        )  # what the clock does is automatic: events have request null
        try:
            self._process_clock(clock, customers, frozen_time)
        except Exception:
            clock.update(status="internal_failure", status_details={})
            self.store.emit("test_helpers.test_clock.internal_failure", clock)
            raise
        else:
            clock.update(frozen_time=frozen_time, status="ready", status_details={})
            self.store.emit("test_helpers.test_clock.ready", clock, at=frozen_time)
        finally:
            self.store.request = request

    def _process_clock(self, clock: Obj, customers: set[str], frozen_time: int) -> None:
        waited: set[str] = set()
        while True:
            due = [
                s
                for s in self.store.all("subscription")
                if s["customer"] in customers
                and s["status"] in ("active", "past_due", "trialing", "unpaid")
                and s["current_period_end"] <= frozen_time
            ]
            drafts = [
                i
                for i in self.store.all("invoice")
                if i["customer"] in customers
                and i["status"] == "draft"
                and i["auto_advance"]
                and self.invoices.auto_finalize.get(i["id"], frozen_time + 1) <= frozen_time
            ]
            sub = min(due, key=lambda s: (s["current_period_end"], s["created"]), default=None)
            draft = min(drafts, key=lambda i: (self.invoices.auto_finalize[i["id"]], i["created"]), default=None)
            settlement = self.bank_payments.next_settlement(customers, frozen_time)
            if settlement is not None and all(
                settlement[0] <= at
                for at in (
                    self.invoices.auto_finalize[draft["id"]] if draft else None,
                    sub["current_period_end"] if sub else None,
                )
                if at is not None
            ):
                clock["frozen_time"] = settlement[0]
                self.bank_payments.settle_ach(settlement[1])
                continue
            if draft is not None and (
                sub is None or self.invoices.auto_finalize[draft["id"]] <= sub["current_period_end"]
            ):
                if draft["id"] not in waited:
                    # Like Stripe's hour: the invoice.created handler may still add items. The state may change
                    # while the lock is released, so look again afterwards.
                    waited.add(draft["id"])
                    self.store.let_webhooks_run(self.draft_webhook_timeout)
                    continue
                clock["frozen_time"] = self.invoices.auto_finalize[draft["id"]]
                self.invoices.finalize_and_collect(draft)
            elif sub is not None:
                clock["frozen_time"] = sub["current_period_end"]
                self.subscriptions.renew(sub)
            else:
                break

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/test_helpers/test_clocks", self.create_test_clock),
            stripe("GET", "/v1/test_helpers/test_clocks", self.list_test_clocks),
            stripe(
                "GET", f"/v1/test_helpers/test_clocks/{ID}", lambda p, i: self.store.get("test_helpers.test_clock", i)
            ),
            stripe("DELETE", f"/v1/test_helpers/test_clocks/{ID}", self.delete_test_clock),
            stripe("POST", f"/v1/test_helpers/test_clocks/{ID}/advance", self.advance_test_clock),
        ]
