"""The state every resource shares: objects by id, "now" (test clocks), events, rendering, `expand[]` and list
pagination.

Each Stripe resource is a class in `resources/` holding a reference to the one `Store` (and to the resources it
works with); one re-entrant lock around every API call keeps it simple and correct (the emulator is for tests,
not throughput).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import fixtures
from .contract import ContractGuard
from .errors import invalid, missing
from .params import get_dict, get_int
from .webhooks import WebhookSender

Obj = dict[str, Any]
_ATOMS = (str, int, float, bool, type(None))


def json_copy(value: Any) -> Any:
    """`copy.deepcopy` of a stored object, a few times faster: a JSON tree's dicts and lists made anew, its
    strings, numbers, booleans and nulls shared (as deepcopy shares them), anything else deep-copied. Unlike
    deepcopy, a list or dict met twice in one object (a payment intent's `payment_method_types` and
    `allowed_payment_method_types`) is copied twice: as JSON sends it; a rendered object is only sent, expanded
    or kept as an event's snapshot, never changed in one place for the other."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


# Human names used in "No such <name>" messages, per object type.
_NAMES = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "payment_intent": "payment_intent",
    "payment_method": "PaymentMethod",
    "charge": "charge",
    "refund": "refund",
    "checkout.session": "checkout.session",
    "test_helpers.test_clock": "test_clock",
    "event": "event",
    "setup_intent": "setupintent",
    "dispute": "dispute",
    "customer_balance_transaction": "customer balance transaction",
    "customer_cash_balance_transaction": "customer cash balance transaction",
    "mandate": "mandate",
    "invoice_payment": "invoice payment",
    "webhook_endpoint": "webhook endpoint",
}

# Fields the engine keeps on stored objects for its own bookkeeping that this API version's objects do not have
# (a subscription's period is on its items; an invoice's subscription under `parent.subscription_details`).
_INTERNAL: dict[str, tuple[str, ...]] = {
    "subscription": ("current_period_start", "current_period_end"),
    "invoice": ("subscription",),
}


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    idempotency_key: str | None


class Store:
    def __init__(
        self, *, webhooks: WebhookSender, api_version: str, base_url: Callable[[], str], contract: ContractGuard
    ) -> None:
        self.lock = threading.RLock()
        self.webhooks = webhooks
        self.api_version = api_version
        self._base_url = base_url
        self.webhook_url: str | None = None
        self.objects: dict[str, Obj] = {}
        self.order: dict[str, list[str]] = {}
        self.event_ids: list[str] = []
        self.request: RequestContext | None = None
        # A computed field that appears only when asked for with expand[] (Stripe calls them "includable").
        self.includable: dict[tuple[str, str], Callable[[Obj], Any]] = {}
        # What an object type adds to its rendered copy (computed sub-lists, hidden fields), per object type.
        self.renderers: dict[str, Callable[[Obj], None]] = {}
        # Requests checked against the pinned API version; objects too when strict (contract.py).
        self.contract = contract

    @property
    def base_url(self) -> str:
        return self._base_url()

    # ----------------------------------------------------------------- store
    def add(self, obj: Obj) -> Obj:
        self.objects[obj["id"]] = obj
        self.order.setdefault(obj["object"], []).append(obj["id"])
        return obj

    def get(self, object_type: str, object_id: str, *, param: str = "id") -> Obj:
        obj = self.objects.get(object_id)
        if obj is None or obj.get("object") != object_type or obj.get("deleted"):
            raise missing(_NAMES.get(object_type, object_type), object_id, param)
        return obj

    def all(self, object_type: str) -> list[Obj]:
        return [self.objects[i] for i in self.order.get(object_type, [])]

    # ------------------------------------------------------------------ time
    def now(self, customer_id: str | None = None) -> int:
        """A test-clock customer lives on its clock's frozen time; everything else on the wall clock."""
        clock = self.clock_of(customer_id)
        if clock is not None:
            frozen: int = clock["frozen_time"]
            return frozen
        return int(time.time())

    def clock_of(self, customer_id: str | None) -> Obj | None:
        if not customer_id:
            return None
        customer = self.objects.get(customer_id)
        if customer is None or not customer.get("test_clock"):
            return None
        return self.objects.get(customer["test_clock"])

    # ---------------------------------------------------------------- events
    def emit(self, event_type: str, obj: Obj, previous: Obj | None = None, *, at: int | None = None) -> Obj:
        """Record an event holding a snapshot of `obj` and queue it for webhook delivery."""
        data: Obj = {"object": self.render(obj)}
        if previous:
            data["previous_attributes"] = previous
        customer = obj.get("customer") if obj.get("object") != "customer" else obj["id"]
        created = at if at is not None else self.now(customer if isinstance(customer, str) else None)
        request = self.request
        event = fixtures.base(
            "event",
            id=fixtures.new_id("evt_"),
            api_version=self.api_version,
            created=created,
            data=data,
            type=event_type,
            pending_webhooks=1 if self.webhook_url else 0,
            request={
                "id": request.request_id if request else None,
                "idempotency_key": request.idempotency_key if request else None,
            },
        )
        self.contract.check_event(event)
        self.add(event)
        self.event_ids.append(event["id"])
        if self.webhook_url:
            self.webhooks.enqueue(event["id"], json.dumps(event, indent=2), self.webhook_url)
        return event

    def let_webhooks_run(self, timeout: float) -> bool:
        """Block until every event queued so far (and any queued meanwhile, e.g. by a webhook handler calling
        back into the API) was delivered or given up, with the emulator lock *released* so handlers can call
        the API. False on timeout. The caller's view of state may have changed when this returns."""
        deadline = time.monotonic() + timeout
        request = self.request
        waiter = threading.Condition(self.lock)  # wait() releases the re-entrant lock at every depth
        try:
            with self.lock:
                while True:
                    mark = self.webhooks.mark()
                    if self.webhooks.done_through(mark):
                        return True
                    while not self.webhooks.done_through(mark):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        waiter.wait(min(remaining, 0.01))
        finally:
            self.request = request  # other requests ran (and reset it) meanwhile

    @staticmethod
    def diff(before: Obj, after: Obj) -> Obj:
        """`previous_attributes`: the old value of every top-level field that changed."""
        return {k: v for k, v in before.items() if after.get(k) != v}

    # ------------------------------------------------------------- rendering
    def render(self, obj: Obj) -> Obj:
        """The object as the API returns it (a deep copy, with computed sub-lists filled in)."""
        out: Obj = json_copy(obj)
        kind = obj["object"]
        hook = self.renderers.get(kind)
        if hook is not None:
            hook(out)
        for name in _INTERNAL.get(kind, ()):
            out.pop(name, None)
        return out

    def list_object(self, data: list[Obj], url: str, *, has_more: bool = False) -> Obj:
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    def expand(self, value: Any, paths: list[str]) -> Any:
        for path in paths:
            value = self._expand_path(value, path.split("."), path)
        return value

    def _expand_path(self, node: Any, segments: list[str], full: str) -> Any:
        if not segments or node is None:
            return node
        if isinstance(node, str):
            stored = self.objects.get(node)
            if stored is None:
                return node
            node = self.render(stored)
        if not isinstance(node, dict):
            return node
        head, rest = segments[0], segments[1:]
        if node.get("object") == "list" and head == "data":
            node["data"] = [self._expand_path(self._expand_one(item), rest, full) for item in node["data"]]
            return node
        if head not in node:
            compute = self.includable.get((node.get("object", ""), head))
            if compute is None:
                raise invalid(f"This property cannot be expanded ({head}).", param="expand")
            node[head] = compute(node)
        node[head] = self._expand_path(self._expand_one(node[head]), rest, full)
        return node

    def _expand_one(self, value: Any) -> Any:
        if isinstance(value, str) and value in self.objects:
            return self.render(self.objects[value])
        return value

    # ----------------------------------------------------------------- lists
    def paginate(
        self,
        items: list[Obj],
        url: str,
        params: Obj,
        *,
        render: bool = True,
    ) -> Obj:
        """Newest first; `limit` (1..100, default 10), `starting_after`, `ending_before`, `created[...]`."""
        limit = get_int(params, "limit", 10) or 10
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", param="limit", code="parameter_invalid_integer")
        items = list(reversed(items))
        created = params.get("created")
        if created not in (None, ""):
            items = [o for o in items if _created_matches(o.get("created", 0), created)]
        ids = [o["id"] for o in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after:
            if after not in ids:
                raise missing(_NAMES.get(items[0]["object"] if items else "object", "object"), after, "starting_after")
            rest = items[ids.index(after) + 1 :]
            page, has_more = rest[:limit], len(rest) > limit
        elif before:
            if before not in ids:
                raise missing(_NAMES.get(items[0]["object"] if items else "object", "object"), before, "ending_before")
            rest = items[: ids.index(before)]
            page, has_more = rest[-limit:], len(rest) > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        data = [self.render(o) for o in page] if render else page
        return self.list_object(data, url, has_more=has_more)


def _created_matches(created: int, spec: Any) -> bool:
    if isinstance(spec, str):
        return created == int(spec)
    bounds = get_dict({"created": spec}, "created")
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, bound in bounds.items():
        if op not in checks:
            raise invalid(f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
        if not checks[op](created, int(bound)):
            return False
    return True
