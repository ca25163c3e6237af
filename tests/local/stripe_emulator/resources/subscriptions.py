"""Subscriptions and their items: creation, changes with prorations, cancellation, renewals (test clocks), and
invoice previews (`create_preview`), built from the same line specs as the real invoices.

Rules (see README.md): prorations are per changed item, credit of the old price and charge of the new one over
(period_end - t) / (period_end - period_start), Decimal, rounded half-even per line."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from .. import fixtures
from ..errors import ApiError, invalid, missing, param_missing
from ..money import add_interval, format_date, format_unit, prorate, usage_amount
from ..params import (
    get_bool,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store
from .invoices import DRAFT_WINDOW, NO_PAYMENT_METHOD, Invoices
from .lines import TIMES, ItemPlan, LineSpec, unit_decimal
from .payment_methods import PaymentMethods
from .products_prices import Catalog

PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
PAYMENT_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
_CANCELED_ON_REQUEST = {"comment": None, "feedback": None, "feedback_option": None, "reason": "cancellation_requested"}
BILLING_MODES = ("classic", "flexible")
# Stripe prorates `flexible` subscriptions differently (credits from what was actually debited, split per earlier
# debit); the emulator models `classic` only and says so rather than answering with classic's numbers.
_FLEXIBLE_PRORATIONS = (
    "Stripe emulator: this subscription has billing_mode.type=flexible (the default at this API version), whose "
    "prorations the emulator does not model. Create it with billing_mode[type]=classic (Checkout: "
    "subscription_data[billing_mode][type]=classic), or update with proration_behavior=none."
)


class Subscriptions:
    def __init__(self, store: Store, catalog: Catalog, payment_methods: PaymentMethods, invoices: Invoices) -> None:
        self.store = store
        self.catalog = catalog
        self.payment_methods = payment_methods
        self.invoices = invoices
        self.subscription_items: dict[str, list[str]] = {}  # subscription -> its items, in order
        self.period_index: dict[str, int] = {}  # subscription -> which period since its anchor it is in
        store.renderers["subscription"] = self._render_subscription

    def _price(self, price_id: Any, param: str) -> Obj:
        if not isinstance(price_id, str) or not price_id:
            raise param_missing(param)
        price = self.store.get("price", price_id, param=param)
        if not price["recurring"]:
            raise invalid(
                f"The price specified is set to `type=one_time` but this field only accepts prices with "
                f"`type=recurring`: {price_id}",
                param=param,
            )
        return price

    def _render_subscription(self, out: Obj) -> None:
        items = [self.store.render(self.store.objects[i]) for i in self.subscription_items.get(out["id"], [])]
        out["items"] = self.store.list_object(items, f"/v1/subscription_items?subscription={out['id']}")

    def spec_for_item(
        self, price: Obj, quantity: int, start: int, end: int, *, subscription: str | None, item: str | None
    ) -> LineSpec:
        """A licensed item billed in advance for [start, end)."""
        unit = unit_decimal(price)
        interval = price["recurring"]["interval"]
        return LineSpec(
            amount=usage_amount(unit, Decimal(quantity)),
            currency=price["currency"],
            description=(
                f"{quantity} {TIMES} {self.catalog.product_name(price)} "
                f"(at {format_unit(price['currency'], unit)} / {interval})"
            ),
            period_start=start,
            period_end=end,
            quantity=Decimal(quantity),
            price=price,
            subscription=subscription,
            subscription_item=item,
        )

    def _proration_item(self, sub: Obj, spec: LineSpec) -> None:
        self.invoices.new_invoice_item(
            sub["customer"],
            amount=spec.amount,
            currency=spec.currency,
            description=spec.description,
            period=(spec.period_start, spec.period_end),
            quantity=spec.quantity,
            price=spec.price,
            subscription=sub["id"],
            subscription_item=spec.subscription_item,
            proration=True,
        )

    def proration_specs(self, sub: Obj, plans: list[ItemPlan], at: int) -> list[LineSpec]:
        """Credit the old price and charge the new one for the rest of the period, per changed licensed item."""
        start, end = sub["current_period_start"], sub["current_period_end"]
        remaining, period = end - at, end - start
        specs: list[LineSpec] = []
        if remaining <= 0 or period <= 0:
            return specs
        if sub.get("billing_mode", {}).get("type") == "flexible" and any(p.changed for p in plans):
            raise ApiError(400, _FLEXIBLE_PRORATIONS, code="emulator_flexible_prorations_unsupported")
        when = format_date(at)
        for plan in plans:
            if not plan.changed:
                continue
            if plan.old_price is not None and plan.item_id is not None:
                price, qty = plan.old_price, plan.old_quantity
                specs.append(
                    LineSpec(
                        amount=-prorate(unit_decimal(price), qty, remaining, period),
                        currency=price["currency"],
                        description=f"Unused time on {qty} {TIMES} {self.catalog.product_name(price)} after {when}",
                        period_start=at,
                        period_end=end,
                        quantity=Decimal(qty),
                        price=price,
                        proration=True,
                        subscription=sub["id"],
                        subscription_item=plan.item_id,
                        plan=plan,
                    )
                )
            if plan.new_price is not None:
                price, qty = plan.new_price, plan.new_quantity
                specs.append(
                    LineSpec(
                        amount=prorate(unit_decimal(price), qty, remaining, period),
                        currency=price["currency"],
                        description=f"Remaining time on {qty} {TIMES} {self.catalog.product_name(price)} after {when}",
                        period_start=at,
                        period_end=end,
                        quantity=Decimal(qty),
                        price=price,
                        proration=True,
                        subscription=sub["id"],
                        subscription_item=plan.item_id,
                        plan=plan,
                    )
                )
        return specs

    def cycle_specs(self, sub: Obj, plans: list[ItemPlan], upcoming: tuple[int, int]) -> list[LineSpec]:
        """A renewal: the items of the next period, billed in advance."""
        return [
            self.spec_for_item(plan.new_price, plan.new_quantity, *upcoming, subscription=sub["id"], item=plan.item_id)
            for plan in plans
            if plan.new_price is not None
        ]

    def _new_item(self, sub: Obj, price: Obj, quantity: int, metadata: dict[str, str]) -> Obj:
        item = fixtures.base(
            "subscription_item",
            id=fixtures.new_id("si_", 14),
            created=self.store.now(sub["customer"]),
            metadata=metadata,
            subscription=sub["id"],
            billing_thresholds=None,
            current_period_start=sub["current_period_start"],
            current_period_end=sub["current_period_end"],
        )
        self._set_item_price(item, price, quantity)
        self.store.add(item)
        self.subscription_items.setdefault(sub["id"], []).append(item["id"])
        return item

    def _set_item_price(self, item: Obj, price: Obj, quantity: int) -> None:
        item["price"] = self.store.render(price)
        item["quantity"] = quantity
        recurring = price["recurring"]
        item["plan"] = fixtures.base(
            "plan",
            id=price["id"],
            active=price["active"],
            amount=price["unit_amount"],
            amount_decimal=price["unit_amount_decimal"],
            billing_scheme="per_unit",
            created=price["created"],
            currency=price["currency"],
            interval=recurring["interval"],
            interval_count=recurring["interval_count"],
            meter=recurring["meter"],
            metadata=price["metadata"],
            nickname=price["nickname"],
            product=price["product"],
            transform_usage=None,
            usage_type=recurring["usage_type"],
        )

    def current_plans(self, sub: Obj) -> list[ItemPlan]:
        plans = []
        for item_id in self.subscription_items.get(sub["id"], []):
            item = self.store.objects[item_id]
            price = self.store.objects[item["price"]["id"]]
            qty = item["quantity"] or 0
            plans.append(ItemPlan(item_id, price, qty, price, qty))
        return plans

    def plan_changes(self, sub: Obj, changes: list[Any], label: str) -> list[ItemPlan]:
        """What `items[]` (id/price/quantity/deleted/metadata) would do to the subscription, without doing it."""
        plans = self.current_plans(sub)
        by_id = {p.item_id: p for p in plans}
        for index, change in enumerate(changes):
            where = f"{label}[{index}]"
            if not isinstance(change, dict):
                raise invalid(f"Invalid object: {where}", param=where)
            item_id = get_str(change, "id")
            quantity = get_int(change, "quantity", label=f"{where}[quantity]")
            if item_id:
                plan = by_id.get(item_id)
                if plan is None:
                    raise missing("subscription item", item_id, f"{where}[id]")
                if get_bool(change, "deleted", False):
                    plan.new_price, plan.new_quantity = None, 0
                    continue
                if change.get("price"):
                    plan.new_price = self._price(change["price"], f"{where}[price]")
                    if quantity is None:
                        quantity = plan.old_quantity or 1
                if quantity is not None:
                    plan.new_quantity = quantity
                if "metadata" in change:
                    plan.metadata = change["metadata"]
            else:
                price = self._price(change.get("price"), f"{where}[price]")
                plans.append(ItemPlan(None, None, 0, price, quantity or 1, change.get("metadata")))
        return plans

    def apply_plans(self, sub: Obj, plans: list[ItemPlan]) -> None:
        for plan in plans:
            if plan.item_id is None:
                assert plan.new_price is not None
                plan.item_id = self._new_item(
                    sub, plan.new_price, plan.new_quantity, merge_metadata({}, plan.metadata)
                )["id"]
                continue
            item = self.store.objects[plan.item_id]
            if plan.new_price is None:
                self.subscription_items[sub["id"]].remove(plan.item_id)
                item["deleted"] = True
                continue
            if plan.changed:
                self._set_item_price(item, plan.new_price, plan.new_quantity)
            if plan.metadata is not None:
                item["metadata"] = merge_metadata(item["metadata"], plan.metadata)

    def interval(self, plans: list[ItemPlan]) -> tuple[str, int]:
        for plan in plans:
            if plan.new_price is not None:
                recurring = plan.new_price["recurring"]
                return str(recurring["interval"]), int(recurring["interval_count"])
        raise param_missing("items")

    @staticmethod
    def parse_billing_mode(params: Obj, label: str, now: int) -> Obj:
        """The subscription's `billing_mode` from a `billing_mode[type]` parameter: `flexible` when not given
        (the default since 2025-09-30.clover). Only classic prorations are modelled (see proration_specs)."""
        given = get_dict(params, "billing_mode")
        kind = get_enum(given, "type", BILLING_MODES, "flexible")
        if given and kind is None:
            raise param_missing(f"{label}[type]")
        if kind == "classic":
            return {"type": "classic", "flexible": None, "updated_at": now}
        flexible = get_dict(given, "flexible")
        discounts = get_enum(flexible, "proration_discounts", ("included", "itemized"), "included")
        return {"type": "flexible", "flexible": {"proration_discounts": discounts}, "updated_at": now}

    def _set_period(self, sub: Obj, start: int, end: int) -> None:
        sub["current_period_start"], sub["current_period_end"] = start, end
        for item_id in self.subscription_items.get(sub["id"], []):
            self.store.objects[item_id].update(current_period_start=start, current_period_end=end)

    def create_subscription(self, params: Obj) -> Obj:
        customer = self.store.get("customer", req_str(params, "customer"), param="customer")
        items = get_list(params, "items")
        if not items:
            raise param_missing("items")
        behavior = get_enum(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
        dpm = get_str(params, "default_payment_method")
        collection = get_enum(
            params, "collection_method", ("charge_automatically", "send_invoice"), "charge_automatically"
        )
        days_until_due = get_int(params, "days_until_due")
        if collection == "send_invoice" and days_until_due is None:
            raise param_missing("days_until_due")
        if collection != "send_invoice" and days_until_due is not None:
            raise invalid(
                "You can only set `days_until_due` if `collection_method` is `send_invoice`.", param="days_until_due"
            )
        sub = self.start_subscription(
            customer,
            items,
            default_payment_method=dpm,
            metadata=merge_metadata({}, params.get("metadata")),
            payment_behavior=behavior or "allow_incomplete",
            collection_method=collection or "charge_automatically",
            billing_mode=self.parse_billing_mode(params, "billing_mode", self.store.now(customer["id"])),
            days_until_due=days_until_due,
        )
        return sub

    def start_subscription(
        self,
        customer: Obj,
        items: list[Any],
        *,
        default_payment_method: str | None,
        metadata: dict[str, str],
        payment_behavior: str,
        billing_mode: Obj,
        collection_method: str = "charge_automatically",
        days_until_due: int | None = None,
    ) -> Obj:
        now = self.store.now(customer["id"])
        shell: Obj = {"id": "", "customer": customer["id"], "current_period_start": now, "current_period_end": now}
        plans = self.plan_changes(shell, items, "items")
        interval, count = self.interval(plans)
        end = add_interval(now, interval, count)
        # What the first invoice will ask for, checked before anything is created (as Stripe refuses upfront).
        first = sum(
            usage_amount(unit_decimal(p.new_price), Decimal(p.new_quantity)) for p in plans if p.new_price is not None
        )
        pending_total = sum(ii["amount"] for ii in self.invoices.pending_items(customer["id"], None))
        due = max(first + pending_total + customer["balance"], 0)
        pm_id = default_payment_method or customer["invoice_settings"]["default_payment_method"]
        if due > 0 and collection_method == "charge_automatically" and payment_behavior != "default_incomplete":
            if pm_id is None:
                raise invalid(NO_PAYMENT_METHOD, code="resource_missing")
            card = self.payment_methods.declines(pm_id)
            if card is not None and payment_behavior == "error_if_incomplete":
                pm = self.payment_methods.resolve(pm_id, customer=customer["id"])
                self.payment_methods.raise_card_error(None, self.payment_methods.card_error(card, None, pm))
        sub = fixtures.base(
            "subscription",
            id=fixtures.new_id("sub_"),
            automatic_tax={"enabled": False, "liability": None, "disabled_reason": None},
            billing_cycle_anchor=now,
            billing_cycle_anchor_config=None,
            cancel_at=None,
            canceled_at=None,
            collection_method=collection_method,
            created=now,
            currency=plans[0].new_price["currency"] if plans[0].new_price else "usd",
            customer=customer["id"],
            default_payment_method=None,
            ended_at=None,
            latest_invoice=None,
            metadata=metadata,
            next_pending_invoice_item_invoice=None,
            pause_collection=None,
            pending_invoice_item_interval=None,
            pending_update=None,
            start_date=now,
            status="incomplete",
            test_clock=customer["test_clock"],
            transfer_data=None,
            trial_end=None,
            trial_start=None,
            cancel_at_period_end=False,
            billing_thresholds=None,
            billing_mode=billing_mode,
            managed_payments=None,
            billing_schedules=[],
            current_period_start=now,
            current_period_end=end,
            days_until_due=days_until_due,
        )
        if default_payment_method:
            sub["default_payment_method"] = self.payment_methods.resolve(
                default_payment_method, customer=customer["id"], param="default_payment_method"
            )["id"]
        self.store.add(sub)
        self.period_index[sub["id"]] = 0
        self.apply_plans(sub, plans)
        self.store.emit("customer.subscription.created", sub)
        specs = [
            self.spec_for_item(p.new_price, p.new_quantity, now, end, subscription=sub["id"], item=p.item_id)
            for p in plans
            if p.new_price is not None
        ]
        invoice = self.invoices.create_invoice_from(
            customer,
            subscription=sub,
            billing_reason="subscription_create",
            specs=specs,
            pending=self.invoices.pending_items(customer["id"], None),
            period=(now, now),
            collection_method=collection_method,
        )
        sub["latest_invoice"] = invoice["id"]
        self.invoices.finalize(invoice)
        if invoice["status"] == "open" and collection_method == "charge_automatically":
            if payment_behavior != "default_incomplete":
                self.invoices.collect(invoice)
        elif invoice["status"] == "open":
            self._reactivate_send_invoice(sub)
        return sub

    def _reactivate_send_invoice(self, sub: Obj) -> None:
        # send_invoice subscriptions are active right away; the invoice is paid later.
        before = self.store.render(sub)
        sub["status"] = "active"
        self.store.emit("customer.subscription.updated", sub, self.store.diff(before, self.store.render(sub)))

    def update_subscription(self, params: Obj, sub_id: str) -> Obj:
        sub = self.store.get("subscription", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        before = self.store.render(sub)
        changes = get_list(params, "items")
        behavior = get_enum(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
        payment_behavior = get_enum(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
        at = self._proration_time(sub, get_int(params, "proration_date"), "proration_date")
        sub["metadata"] = merge_metadata(sub["metadata"], params.get("metadata"))
        if "default_payment_method" in params:
            dpm = get_str(params, "default_payment_method")
            sub["default_payment_method"] = (
                self.payment_methods.resolve(dpm, customer=sub["customer"], param="default_payment_method")["id"]
                if dpm
                else None
            )
        cancel = get_bool(params, "cancel_at_period_end")
        if cancel is not None:
            now = self.store.now(sub["customer"])
            sub.update(
                cancel_at_period_end=cancel,
                cancel_at=sub["current_period_end"] if cancel else None,
                canceled_at=now if cancel else None,
            )
        self._change_items(sub, changes, "items", behavior or "create_prorations", at, payment_behavior, before)
        return sub

    def _proration_time(self, sub: Obj, proration_date: int | None, param: str) -> int:
        now = self.store.now(sub["customer"])
        at = proration_date if proration_date is not None else now
        if not sub["current_period_start"] <= at <= sub["current_period_end"]:
            raise invalid("The proration_date must be within the subscription's current billing period.", param=param)
        return at

    def _change_items(
        self,
        sub: Obj,
        changes: list[Any],
        label: str,
        behavior: str,
        at: int,
        payment_behavior: str | None,
        before: Obj,
    ) -> list[ItemPlan]:
        plans = self.plan_changes(sub, changes, label)
        specs = self.proration_specs(sub, plans, at) if behavior != "none" else []
        if behavior == "always_invoice" and payment_behavior == "error_if_incomplete":
            total = sum(s.amount for s in specs) + self.store.objects[sub["customer"]]["balance"]
            pm = self.invoices.invoice_payment_method(
                {"customer": sub["customer"], "subscription": sub["id"], "default_payment_method": None}, None
            )
            card = self.payment_methods.declines(pm["id"]) if pm else None
            if total > 0 and pm is not None and card is not None:
                self.payment_methods.raise_card_error(None, self.payment_methods.card_error(card, None, pm))
        self.apply_plans(sub, plans)
        for spec in specs:
            # New items only get their id in apply_plans.
            if spec.plan is not None:
                spec.subscription_item = spec.plan.item_id
            self._proration_item(sub, spec)
        after = self.store.render(sub)
        previous = self.store.diff(before, after)
        if previous:
            self.store.emit("customer.subscription.updated", sub, previous)
        if behavior == "always_invoice" and specs:
            customer = self.store.objects[sub["customer"]]
            invoice = self.invoices.create_invoice_from(
                customer,
                subscription=sub,
                billing_reason="subscription_update",
                specs=[],
                pending=self.invoices.pending_items(customer["id"], sub["id"], only_subscription=True),
                period=(at, at),
            )
            sub["latest_invoice"] = invoice["id"]
            self.invoices.finalize(invoice)
            if invoice["status"] == "open" and sub["collection_method"] == "charge_automatically":
                self.invoices.collect(invoice)
        return plans

    def list_subscriptions(self, params: Obj) -> Obj:
        items = self.store.all("subscription")
        status = get_str(params, "status")
        if status is None:
            items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
        elif status != "all":
            items = [s for s in items if s["status"] == status]
        for name in ("customer", "test_clock"):
            value = get_str(params, name)
            if value:
                items = [s for s in items if s[name] == value]
        price = get_str(params, "price")
        if price:
            items = [
                s
                for s in items
                if any(self.store.objects[i]["price"]["id"] == price for i in self.subscription_items.get(s["id"], []))
            ]
        return self.store.paginate(items, "/v1/subscriptions", params)

    def cancel_subscription(self, params: Obj, sub_id: str) -> Obj:
        sub = self.store.get("subscription", sub_id)
        if sub["status"] == "canceled":
            raise invalid(f"No such subscription: '{sub_id}'", code="resource_missing", param="id")
        before = self.store.render(sub)
        now = self.store.now(sub["customer"])
        plans = self.current_plans(sub)
        if get_bool(params, "prorate", False):
            gone = [ItemPlan(p.item_id, p.old_price, p.old_quantity, None, 0) for p in plans]
            for spec in self.proration_specs(sub, gone, now):
                self._proration_item(sub, spec)
        if get_bool(params, "invoice_now", False):
            pending = self.invoices.pending_items(sub["customer"], sub_id, only_subscription=True)
            if pending:
                self._bill(sub, "subscription_update", [], pending, (sub["current_period_start"], now))
        sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False, cancel_at=None)
        details = get_dict(params, "cancellation_details")
        if details:
            sub["cancellation_details"] = {
                "comment": details.get("comment"),
                "feedback": details.get("feedback"),
                "feedback_option": None,
                "reason": "cancellation_requested",
            }
        else:
            sub["cancellation_details"] = dict(_CANCELED_ON_REQUEST)
        self.store.emit("customer.subscription.deleted", sub, self.store.diff(before, self.store.render(sub)))
        return sub

    def _bill(
        self,
        sub: Obj,
        reason: str,
        specs: list[LineSpec],
        pending: list[Obj],
        period: tuple[int, int],
        *,
        draft_window: bool = False,
    ) -> Obj:
        """Invoice the subscription. With `draft_window` (renewals) a test-clock customer's invoice stays a draft
        for DRAFT_WINDOW seconds (finalized by the clock, see advance_clock); otherwise it is charged now."""
        customer = self.store.objects[sub["customer"]]
        finalizes_at = (
            self.store.now(customer["id"]) + DRAFT_WINDOW if draft_window and customer["test_clock"] else None
        )
        invoice = self.invoices.create_invoice_from(
            customer,
            subscription=sub,
            billing_reason=reason,
            specs=specs,
            pending=pending,
            period=period,
            finalizes_at=finalizes_at,
        )
        sub["latest_invoice"] = invoice["id"]
        if finalizes_at is None:
            self.invoices.finalize_and_collect(invoice)
        return invoice

    def renew(self, sub: Obj) -> None:
        """One period boundary: end the subscription (cancel_at_period_end) or start the next period and
        invoice it: pending items and the new period's items."""
        closed = (sub["current_period_start"], sub["current_period_end"])
        plans = self.current_plans(sub)
        if sub["cancel_at_period_end"]:
            pending = self.invoices.pending_items(sub["customer"], sub["id"], only_subscription=True)
            if pending:
                self._bill(sub, "subscription_cycle", [], pending, closed, draft_window=True)
            before = self.store.render(sub)
            sub.update(status="canceled", ended_at=closed[1], cancel_at_period_end=False)
            sub["cancellation_details"] = dict(_CANCELED_ON_REQUEST)
            self.store.emit("customer.subscription.deleted", sub, self.store.diff(before, self.store.render(sub)))
            return
        before = self.store.render(sub)
        interval, count = self.interval(plans)
        index = self.period_index[sub["id"]] + 1
        self.period_index[sub["id"]] = index
        upcoming = (closed[1], add_interval(sub["billing_cycle_anchor"], interval, count * (index + 1)))
        self._set_period(sub, *upcoming)
        self.store.emit("customer.subscription.updated", sub, self.store.diff(before, self.store.render(sub)))
        specs = self.cycle_specs(sub, plans, upcoming)
        pending = self.invoices.pending_items(sub["customer"], sub["id"])
        self._bill(sub, "subscription_cycle", specs, pending, closed, draft_window=True)

    def create_subscription_item(self, params: Obj) -> Obj:
        sub = self.store.get("subscription", req_str(params, "subscription"), param="subscription")
        change: Obj = {k: params[k] for k in ("price", "quantity", "metadata") if k in params}
        plans = self._item_change(sub, change, params)
        created = [p for p in plans if p.old_price is None and p.item_id]
        return self.store.objects[created[-1].item_id or ""]

    def update_subscription_item(self, params: Obj, item_id: str) -> Obj:
        item = self.store.get("subscription_item", item_id)
        sub = self.store.objects[item["subscription"]]
        change: Obj = {"id": item_id, **{k: params[k] for k in ("price", "quantity", "metadata") if k in params}}
        self._item_change(sub, change, params)
        return item

    def delete_subscription_item(self, params: Obj, item_id: str) -> Obj:
        item = self.store.get("subscription_item", item_id)
        sub = self.store.objects[item["subscription"]]
        self._item_change(sub, {"id": item_id, "deleted": "true"}, params)
        return {"id": item_id, "object": "subscription_item", "deleted": True}

    def _item_change(self, sub: Obj, change: Obj, params: Obj) -> list[ItemPlan]:
        before = self.store.render(sub)
        behavior = get_enum(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
        at = self._proration_time(sub, get_int(params, "proration_date"), "proration_date")
        payment_behavior = get_enum(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
        # Errors name the endpoint's own parameters (price, quantity), not items[0][...].
        try:
            return self._change_items(
                sub, [change], "items", behavior or "create_prorations", at, payment_behavior, before
            )
        except Exception as error:
            param = getattr(error, "param", None)
            if isinstance(param, str) and param.startswith("items[0]"):
                error.param = param[len("items[0]") :].strip("[]") or None  # type: ignore[attr-defined]
            raise

    def list_subscription_items(self, params: Obj) -> Obj:
        sub_id = req_str(params, "subscription")
        self.store.get("subscription", sub_id, param="subscription")
        items = [self.store.objects[i] for i in self.subscription_items.get(sub_id, [])]
        return self.store.paginate(items, "/v1/subscription_items", params)

    def preview_invoice(self, params: Obj) -> Obj:
        """`POST /v1/invoices/create_preview`: the invoice the described change (or the next renewal) would
        produce, computed with the same functions as the real thing and stored nowhere."""
        details = get_dict(params, "subscription_details")
        return self._preview(
            customer_id=get_str(params, "customer"),
            sub_id=get_str(params, "subscription"),
            items=get_list(details, "items"),
            items_label="subscription_details[items]",
            proration_date=get_int(details, "proration_date", label="subscription_details[proration_date]"),
            behavior=get_enum(details, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations"),
            cancel_at_period_end=get_bool(details, "cancel_at_period_end"),
        )

    def _preview(
        self,
        *,
        customer_id: str | None,
        sub_id: str | None,
        items: list[Any],
        items_label: str,
        proration_date: int | None,
        behavior: str | None,
        cancel_at_period_end: bool | None,
    ) -> Obj:
        sub = self.store.get("subscription", sub_id, param="subscription") if sub_id else None
        if sub is not None:
            customer_id = customer_id or sub["customer"]
        if not customer_id:
            raise param_missing("customer")
        customer = self.store.get("customer", customer_id, param="customer")
        now = self.store.now(customer_id)
        if sub is None:
            # Preview of a new subscription: its first invoice.
            shell: Obj = {"id": "", "customer": customer_id, "current_period_start": now, "current_period_end": now}
            plans = self.plan_changes(shell, items, items_label)
            if not plans:
                pending = self.invoices.pending_items(customer_id, None)
                return self._preview_object(customer, None, "manual", [], pending, (now, now))
            interval, count = self.interval(plans)
            end = add_interval(now, interval, count)
            specs = [
                self.spec_for_item(p.new_price, p.new_quantity, now, end, subscription=None, item=None)
                for p in plans
                if p.new_price is not None
            ]
            return self._preview_object(
                customer, None, "subscription_create", specs, self.invoices.pending_items(customer_id, None), (now, now)
            )
        at = self._proration_time(sub, proration_date, "subscription_details[proration_date]")
        plans = self.plan_changes(sub, items, items_label)
        prorations = self.proration_specs(sub, plans, at) if behavior != "none" else []
        start, end = sub["current_period_start"], sub["current_period_end"]
        if behavior == "always_invoice" and prorations:
            pending = self.invoices.pending_items(customer_id, sub["id"], only_subscription=True)
            return self._preview_object(customer, sub, "subscription_update", prorations, pending, (at, at))
        interval, count = self.interval(plans)
        next_end = add_interval(sub["billing_cycle_anchor"], interval, count * (self.period_index[sub["id"]] + 2))
        cancels = cancel_at_period_end if cancel_at_period_end is not None else sub["cancel_at_period_end"]
        renewal = [] if cancels else self.cycle_specs(sub, plans, (end, next_end))
        pending = self.invoices.pending_items(customer_id, sub["id"])
        return self._preview_object(customer, sub, "upcoming", prorations + renewal, pending, (start, end))

    def _preview_object(
        self,
        customer: Obj,
        sub: Obj | None,
        reason: str,
        specs: list[LineSpec],
        pending: list[Obj],
        period: tuple[int, int],
    ) -> Obj:
        all_specs = [self.invoices.spec_from_invoiceitem(ii) for ii in pending] + specs
        for spec in all_specs:  # an item the change would add has no id yet: the preview names one, as Stripe's does
            if spec.subscription is not None and spec.subscription_item is None:
                spec.subscription_item = fixtures.new_id("si_preview_")
        currency = all_specs[0].currency if all_specs else (customer["currency"] or "usd")
        invoice = self.invoices.shell(
            customer,
            invoice_id="upcoming_in_" + secrets.token_hex(12),
            subscription=sub,
            billing_reason=reason,
            period=period,
            currency=currency,
        )
        lines = [self.invoices.line_from_spec(s, None, fixtures.new_id("il_tmp_")) for s in all_specs]
        self.invoices.apply_totals(invoice, lines, customer["balance"])
        invoice["lines"] = self.store.list_object(lines, "/v1/invoices/create_preview/lines")
        if sub is not None and reason == "upcoming":
            invoice["next_payment_attempt"] = period[1]
            invoice["created"] = period[1]
        return invoice

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/subscriptions", self.create_subscription),
            stripe("GET", "/v1/subscriptions", self.list_subscriptions),
            stripe("GET", f"/v1/subscriptions/{ID}", lambda p, i: self.store.get("subscription", i)),
            stripe("POST", f"/v1/subscriptions/{ID}", self.update_subscription),
            stripe("DELETE", f"/v1/subscriptions/{ID}", self.cancel_subscription),
            stripe("POST", "/v1/subscription_items", self.create_subscription_item),
            stripe("GET", "/v1/subscription_items", self.list_subscription_items),
            stripe("GET", f"/v1/subscription_items/{ID}", lambda p, i: self.store.get("subscription_item", i)),
            stripe("POST", f"/v1/subscription_items/{ID}", self.update_subscription_item),
            stripe("DELETE", f"/v1/subscription_items/{ID}", self.delete_subscription_item),
            stripe("POST", "/v1/invoices/create_preview", self.preview_invoice),
        ]
