"""Subscriptions, invoices, invoice items, prorations, previews, renewals (test clocks) and billing meters.

Invoices are built from `LineSpec`s computed by pure functions, so a preview and the real invoice come from
the same arithmetic. Rules (see README.md): prorations are per changed item, credit of the old price and
charge of the new one over (period_end - t) / (period_end - period_start), Decimal, rounded half-even per line.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import fixtures
from .core import Obj
from .delayed import Delayed
from .errors import ApiError, invalid, missing, param_missing
from .money import add_interval, format_date, format_quantity, format_unit, minimum_charge, prorate, usage_amount
from .params import (
    get_bool,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)

PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
PAYMENT_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
TIMES = "\u00d7"  # Stripe writes "2 <multiplication sign> Pro"
# Stripe leaves an automatic (renewal) invoice in draft about an hour before finalizing and charging it.
DRAFT_WINDOW = 3600
_LIVE_STATUSES = ("active", "past_due", "trialing", "incomplete", "unpaid")
_CANCELED_ON_REQUEST = {"comment": None, "feedback": None, "feedback_option": None, "reason": "cancellation_requested"}
BILLING_MODES = ("classic", "flexible")
# Stripe prorates `flexible` subscriptions differently (credits from what was actually debited, split per earlier
# debit); the emulator models `classic` only and says so rather than answering with classic's numbers.
_FLEXIBLE_PRORATIONS = (
    "Stripe emulator: this subscription has billing_mode.type=flexible (the default at this API version), whose "
    "prorations the emulator does not model. Create it with billing_mode[type]=classic (Checkout: "
    "subscription_data[billing_mode][type]=classic), or update with proration_behavior=none."
)
_NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. "
    "Please consider adding a default payment method."
)


@dataclass
class ItemPlan:
    """One subscription item before/after a change. `new_price` None means the item is deleted."""

    item_id: str | None
    old_price: Obj | None
    old_quantity: int
    new_price: Obj | None
    new_quantity: int
    metadata: Any = None

    @property
    def changed(self) -> bool:
        old = (self.old_price["id"] if self.old_price else None, self.old_quantity)
        new = (self.new_price["id"] if self.new_price else None, self.new_quantity)
        return old != new


@dataclass
class LineSpec:
    """One invoice line before it is stored (shared by real invoices and previews)."""

    amount: int
    currency: str
    description: str
    period_start: int
    period_end: int
    quantity: Decimal
    price: Obj | None
    proration: bool = False
    subscription: str | None = None
    subscription_item: str | None = None
    invoice_item: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    plan: ItemPlan | None = None  # the item change a proration line comes from


def _metered(price: Obj | None) -> bool:
    return bool(price and price["recurring"] and price["recurring"]["usage_type"] == "metered")


def _unit(price: Obj) -> Decimal:
    return Decimal(price["unit_amount_decimal"])


class Billing(Delayed):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.invoice_lines: dict[str, list[Obj]] = {}
        self.subscription_items: dict[str, list[str]] = {}
        self.period_index: dict[str, int] = {}
        self.meter_events: list[Obj] = []
        self.meter_identifiers: dict[str, int] = {}
        # Renewal drafts waiting for their one-hour window to end: invoice id -> scheduled finalization time.
        self.auto_finalize: dict[str, int] = {}
        # How long a clock advance lets webhook handlers run before it finalizes a draft (then finalizes anyway).
        self.draft_webhook_timeout = 30.0
        self.includable[("invoice", "payments")] = self._invoice_payments

    # ============================================================ helpers
    def product_name(self, price: Obj) -> str:
        product = self.objects.get(price["product"])
        return str(product["name"]) if product else str(price["product"])

    def _price(self, price_id: Any, param: str) -> Obj:
        if not isinstance(price_id, str) or not price_id:
            raise param_missing(param)
        price = self.get("price", price_id, param=param)
        if not price["recurring"]:
            raise invalid(
                f"The price specified is set to `type=one_time` but this field only accepts prices with "
                f"`type=recurring`: {price_id}",
                param=param,
            )
        return price

    def _render_subscription(self, out: Obj) -> None:
        items = [self.render(self.objects[i]) for i in self.subscription_items.get(out["id"], [])]
        out["items"] = self.list_object(items, f"/v1/subscription_items?subscription={out['id']}")

    def _render_invoice(self, out: Obj) -> None:
        if out["id"] not in self.invoice_lines:  # a preview carries its own lines
            return
        lines = self.invoice_lines[out["id"]]
        url = f"/v1/invoices/{out['id']}/lines"
        out["lines"] = self.list_object([dict(x) for x in lines[:10]], url, has_more=len(lines) > 10)

    def _invoice_payments(self, invoice: Obj) -> Obj:
        payments = [self.render(p) for p in reversed(self.all("invoice_payment")) if p["invoice"] == invoice["id"]]
        return self.list_object(payments, f"/v1/invoice_payments?invoice={invoice['id']}")

    # ===================================================== line building
    def spec_for_item(
        self, price: Obj, quantity: int, start: int, end: int, *, subscription: str | None, item: str | None
    ) -> LineSpec:
        """A licensed item billed in advance for [start, end)."""
        unit = _unit(price)
        interval = price["recurring"]["interval"]
        return LineSpec(
            amount=usage_amount(unit, Decimal(quantity)),
            currency=price["currency"],
            description=(
                f"{quantity} {TIMES} {self.product_name(price)} "
                f"(at {format_unit(price['currency'], unit)} / {interval})"
            ),
            period_start=start,
            period_end=end,
            quantity=Decimal(quantity),
            price=price,
            subscription=subscription,
            subscription_item=item,
        )

    def spec_for_usage(
        self, price: Obj, customer: str, start: int, end: int, *, subscription: str | None, item: str | None
    ) -> LineSpec:
        """A metered item billed in arrears: the meter's usage in [start, end) x unit amount, half-even."""
        usage = max(self.usage(price["recurring"]["meter"], customer, start, end), Decimal(0))
        unit = _unit(price)
        interval = price["recurring"]["interval"]
        return LineSpec(
            amount=usage_amount(unit, usage),
            currency=price["currency"],
            description=(
                f"{format_quantity(usage)} {TIMES} {self.product_name(price)} "
                f"(at {format_unit(price['currency'], unit)} / {interval})"
            ),
            period_start=start,
            period_end=end,
            quantity=usage,
            price=price,
            subscription=subscription,
            subscription_item=item,
        )

    def proration_specs(self, sub: Obj, plans: list[ItemPlan], at: int) -> list[LineSpec]:
        """Credit the old price and charge the new one for the rest of the period, per changed licensed item."""
        start, end = sub["current_period_start"], sub["current_period_end"]
        remaining, period = end - at, end - start
        specs: list[LineSpec] = []
        if remaining <= 0 or period <= 0:
            return specs
        if sub.get("billing_mode", {}).get("type") == "flexible" and any(
            p.changed and not _metered(p.old_price) and not _metered(p.new_price) for p in plans
        ):
            raise ApiError(400, _FLEXIBLE_PRORATIONS, code="emulator_flexible_prorations_unsupported")
        when = format_date(at)
        for plan in plans:
            if not plan.changed or _metered(plan.old_price) or _metered(plan.new_price):
                continue
            if plan.old_price is not None and plan.item_id is not None:
                price, qty = plan.old_price, plan.old_quantity
                specs.append(
                    LineSpec(
                        amount=-prorate(_unit(price), qty, remaining, period),
                        currency=price["currency"],
                        description=f"Unused time on {qty} {TIMES} {self.product_name(price)} after {when}",
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
                        amount=prorate(_unit(price), qty, remaining, period),
                        currency=price["currency"],
                        description=f"Remaining time on {qty} {TIMES} {self.product_name(price)} after {when}",
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

    def cycle_specs(
        self, sub: Obj, plans: list[ItemPlan], closed: tuple[int, int], upcoming: tuple[int, int]
    ) -> list[LineSpec]:
        """A renewal: metered usage of the closed period (arrears) and licensed items of the next (advance)."""
        specs: list[LineSpec] = []
        for plan in plans:
            if plan.new_price is None:
                continue
            if _metered(plan.new_price):
                specs.append(
                    self.spec_for_usage(
                        plan.new_price, sub["customer"], *closed, subscription=sub["id"], item=plan.item_id
                    )
                )
            else:
                specs.append(
                    self.spec_for_item(
                        plan.new_price, plan.new_quantity, *upcoming, subscription=sub["id"], item=plan.item_id
                    )
                )
        return specs

    def spec_from_invoiceitem(self, ii: Obj) -> LineSpec:
        price_id = ((ii["pricing"] or {}).get("price_details") or {}).get("price")
        parent = ii["parent"] or {}
        details = parent.get("subscription_details") or {}
        return LineSpec(
            amount=ii["amount"],
            currency=ii["currency"],
            description=ii["description"] or "",
            period_start=ii["period"]["start"],
            period_end=ii["period"]["end"],
            quantity=Decimal(ii["quantity"]),
            price=self.objects.get(price_id) if price_id else None,
            proration=ii["proration"],
            subscription=details.get("subscription"),
            subscription_item=details.get("subscription_item"),
            invoice_item=ii["id"],
            metadata=dict(ii["metadata"]),
        )

    def line_from_spec(self, spec: LineSpec, invoice_id: str | None, line_id: str) -> Obj:
        if spec.subscription and (spec.invoice_item is None or spec.proration):
            # Subscription lines, and the prorations a subscription change created.
            parent: Obj = {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "invoice_item": spec.invoice_item,
                    "proration": spec.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": spec.subscription,
                    "subscription_item": spec.subscription_item,
                },
                "invoice_item_details": None,
            }
        else:
            parent = {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": spec.invoice_item,
                    "proration": spec.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": spec.subscription,
                },
                "subscription_item_details": None,
            }
        quantity = int(spec.quantity) if spec.quantity == spec.quantity.to_integral_value() else None
        return fixtures.base(
            "line_item",
            id=line_id,
            amount=spec.amount,
            currency=spec.currency,
            description=spec.description,
            invoice=invoice_id,
            metadata=dict(spec.metadata),
            period={"start": spec.period_start, "end": spec.period_end},
            quantity=quantity,
            quantity_decimal=format_quantity(spec.quantity),
            subscription=spec.subscription,
            pretax_credit_amounts=[],
            taxes=[],
            parent=parent,
            pricing={  # no price (an amount): no `price_details` (never null in this version)
                "type": "price_details",
                **(
                    {"price_details": {"price": spec.price["id"], "product": spec.price["product"]}}
                    if spec.price
                    else {}
                ),
                "unit_amount_decimal": spec.price["unit_amount_decimal"] if spec.price else None,
            },
            subtotal=spec.amount,
        )

    # ========================================================== invoices
    def _invoice_shell(
        self,
        customer: Obj,
        *,
        invoice_id: str,
        subscription: Obj | None,
        billing_reason: str,
        period: tuple[int, int],
        collection_method: str = "charge_automatically",
        auto_advance: bool = True,
        currency: str = "usd",
    ) -> Obj:
        now = self.now(customer["id"])
        invoice = fixtures.base(
            "invoice",
            id=invoice_id,
            account_name="Layers Billing (Stripe emulator)",
            amount_overpaid=0,
            amount_paid=0,
            attempt_count=0,
            attempted=False,
            auto_advance=auto_advance,
            automatically_finalizes_at=None,
            billing_reason=billing_reason,
            collection_method=collection_method,
            created=now,
            currency=currency,
            customer=customer["id"],
            customer_address=None,
            customer_email=customer["email"],
            customer_name=customer["name"],
            customer_shipping=None,
            default_payment_method=None,
            due_date=None,
            effective_at=None,
            ending_balance=None,
            from_invoice=None,
            last_finalization_error=None,
            metadata={},
            next_payment_attempt=None,
            number=None,
            parent={
                "type": "subscription_details",
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
                "quote_details": None,
            }
            if subscription
            else None,
            period_start=period[0],
            period_end=period[1],
            shipping_cost=None,
            shipping_details=None,
            status="draft",
            status_transitions={
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            subscription=subscription["id"] if subscription else None,
            test_clock=customer["test_clock"],
            total_pretax_credit_amounts=[],
            total_taxes=[],
            webhooks_delivered_at=None,
        )
        return invoice

    @staticmethod
    def apply_totals(invoice: Obj, lines: list[Obj], starting_balance: int) -> None:
        """Totals and the customer balance: net = total + balance; amount_due = max(net, 0); what is left
        below zero stays as credit (`ending_balance`, set only at finalization)."""
        total = sum(line["amount"] for line in lines)
        net = total + starting_balance
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            starting_balance=starting_balance,
            amount_due=max(net, 0),
            amount_remaining=max(net, 0) - invoice["amount_paid"],
        )
        if lines and invoice["currency"] != lines[0]["currency"]:
            invoice["currency"] = lines[0]["currency"]

    def pending_items(
        self, customer_id: str, subscription_id: str | None, *, only_subscription: bool = False
    ) -> list[Obj]:
        """Pending invoice items a new invoice pulls in: the customer's without a subscription, and this one's."""
        result = []
        for ii in self.all("invoiceitem"):
            if ii.get("deleted") or ii["invoice"] is not None or ii["customer"] != customer_id:
                continue
            owner = ((ii["parent"] or {}).get("subscription_details") or {}).get("subscription")
            if owner == subscription_id or (owner is None and not only_subscription):
                result.append(ii)
        return result

    def create_invoice_from(
        self,
        customer: Obj,
        *,
        subscription: Obj | None,
        billing_reason: str,
        specs: list[LineSpec],
        pending: list[Obj],
        period: tuple[int, int],
        collection_method: str = "charge_automatically",
        auto_advance: bool = True,
        metadata: dict[str, str] | None = None,
        description: str | None = None,
        finalizes_at: int | None = None,
    ) -> Obj:
        """A draft invoice with `pending` items and `specs` lines; `finalizes_at` schedules its automatic
        finalization (a renewal's draft window) - the caller finalizes otherwise."""
        invoice_id = fixtures.new_id("in_")
        currency = (specs[0].currency if specs else None) or (pending[0]["currency"] if pending else None)
        invoice = self._invoice_shell(
            customer,
            invoice_id=invoice_id,
            subscription=subscription,
            billing_reason=billing_reason,
            period=period,
            collection_method=collection_method,
            auto_advance=auto_advance,
            currency=currency or customer["currency"] or "usd",
        )
        invoice["metadata"] = metadata or {}
        invoice["description"] = description
        all_specs = [self.spec_from_invoiceitem(ii) for ii in pending] + specs
        for ii in pending:
            ii["invoice"] = invoice_id
        lines = [self.line_from_spec(s, invoice_id, fixtures.new_id("il_")) for s in all_specs]
        self.invoice_lines[invoice_id] = lines
        self.apply_totals(invoice, lines, customer["balance"])
        if finalizes_at is not None:
            self.auto_finalize[invoice_id] = finalizes_at
            invoice.update(automatically_finalizes_at=finalizes_at, next_payment_attempt=finalizes_at)
        self.add(invoice)
        self.emit("invoice.created", invoice)
        return invoice

    def finalize(self, invoice: Obj) -> None:
        if invoice["status"] != "draft":
            raise invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        customer = self.objects[invoice["customer"]]
        now = self.now(customer["id"])
        self.auto_finalize.pop(invoice["id"], None)
        invoice.update(automatically_finalizes_at=None, next_payment_attempt=None)
        starting = customer["balance"]
        self.apply_totals(invoice, self.invoice_lines[invoice["id"]], starting)
        net = invoice["total"] + starting
        ending = min(net, 0)
        if self._below_minimum_charge(invoice, customer, net):
            # Not charged: paid at once, and what it asked for becomes a debit on the customer balance that the
            # next invoice collects (Stripe's docs: invoice balance; `amount_due` "may be 0").
            ending = net
            invoice.update(amount_due=0, amount_remaining=0)
        invoice["ending_balance"] = ending
        if ending != starting:
            self._balance_transaction(
                customer,
                ending - starting,
                "applied_to_invoice",
                None,
                {},
                invoice=invoice["id"],
                currency=invoice["currency"],
            )
        sequence = customer["next_invoice_sequence"]
        customer["next_invoice_sequence"] = sequence + 1
        invoice.update(
            number=f"{customer['invoice_prefix']}-{sequence:04d}",
            status="open",
            effective_at=now,
            hosted_invoice_url=f"{self.base_url}/invoice/{invoice['id']}",
            invoice_pdf=f"{self.base_url}/invoice/{invoice['id']}/pdf",
            webhooks_delivered_at=now,
        )
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + 30 * 86_400
        elif invoice["amount_due"] > 0:
            invoice["next_payment_attempt"] = now
        self.emit("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self.mark_paid(invoice, 0)

    def _below_minimum_charge(self, invoice: Obj, customer: Obj, net: int) -> bool:
        """An automatically collected invoice asking for less than Stripe's minimum charge in its currency, of
        a customer without a cash balance (Stripe's condition)."""
        return (
            invoice["collection_method"] == "charge_automatically"
            and 0 < net < minimum_charge(invoice["currency"])
            and customer["id"] not in self.cash
        )

    def mark_paid(self, invoice: Obj, amount: int) -> None:
        now = self.now(invoice["customer"])
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_paid"] + amount,
            amount_remaining=0,
            next_payment_attempt=None,
            attempted=True,
        )
        invoice["status_transitions"]["paid_at"] = now
        self.emit("invoice.paid", invoice)
        self.emit("invoice.payment_succeeded", invoice)
        if invoice["subscription"]:
            self._reactivate(self.objects[invoice["subscription"]])

    def _reactivate(self, sub: Obj) -> None:
        """An incomplete/past_due subscription becomes active once none of its invoices is left open."""
        if sub["status"] not in ("incomplete", "past_due", "unpaid"):
            return
        open_invoices = [i for i in self.all("invoice") if i["subscription"] == sub["id"] and i["status"] == "open"]
        if open_invoices:
            return
        before = self.render(sub)
        sub["status"] = "active"
        self.emit("customer.subscription.updated", sub, self.diff(before, self.render(sub)))

    def invoice_payment_method(self, invoice: Obj, override: str | None) -> Obj | None:
        customer = self.objects[invoice["customer"]]
        sub = self.objects.get(invoice["subscription"] or "")
        candidates = [
            override,
            invoice["default_payment_method"],
            sub["default_payment_method"] if sub else None,
            customer["invoice_settings"]["default_payment_method"],
        ]
        for pm_id in candidates:
            if pm_id:
                return self.resolve_payment_method(pm_id, customer=customer["id"])
        return None

    def _invoice_intent(self, invoice: Obj) -> Obj:
        """The invoice's PaymentIntent (reused across attempts), linked through an invoice_payment."""
        for payment in self.all("invoice_payment"):
            if payment["invoice"] == invoice["id"] and payment["status"] == "open":
                pi: Obj = self.objects[payment["payment"]["payment_intent"]]
                return pi
        reason = invoice["billing_reason"]
        description = {
            "subscription_create": "Subscription creation",
            "subscription_cycle": "Subscription cycle",
            "subscription_update": "Subscription update",
        }.get(reason, f"Invoice {invoice['number']}")
        pi = self.new_payment_intent(
            amount=invoice["amount_remaining"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=description,
        )
        payment = fixtures.base(
            "invoice_payment",
            id=fixtures.new_id("inpay_"),
            amount_paid=None,
            amount_requested=invoice["amount_remaining"],
            created=self.now(invoice["customer"]),
            currency=invoice["currency"],
            invoice=invoice["id"],
            is_default=True,
            payment={"type": "payment_intent", "payment_intent": pi["id"]},
            status="open",
        )
        self.add(payment)
        return pi

    def collect(self, invoice: Obj, *, payment_method: str | None = None, raise_on_decline: bool = False) -> bool:
        """Charge an open invoice. A decline leaves it open, emits invoice.payment_failed and makes an active
        subscription past_due; with `raise_on_decline` the card error is returned to the caller (402)."""
        if invoice["status"] != "open":
            raise invalid(f"Invoice is {invoice['status']}; only open invoices can be paid.", code="invoice_not_open")
        if invoice["amount_remaining"] == 0:
            self.mark_paid(invoice, 0)
            return True
        pm = self.invoice_payment_method(invoice, payment_method)
        if pm is None:
            if raise_on_decline:
                raise invalid(_NO_PAYMENT_METHOD, code="invoice_no_payment_method")
            self._payment_failed(invoice)
            return False
        pi = self._invoice_intent(invoice)
        before = self.render(invoice)
        self.confirm(pi, pm, off_session=True)
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        if pi["status"] == "succeeded":
            for payment in self.all("invoice_payment"):
                if payment["payment"]["payment_intent"] == pi["id"]:
                    payment.update(status="paid", amount_paid=pi["amount"])
                    payment["status_transitions"]["paid_at"] = self.now(invoice["customer"])
            self.mark_paid(invoice, pi["amount"])
            return True
        self._payment_failed(invoice, before)
        if raise_on_decline:
            self.raise_card_error(pi, pi["last_payment_error"])
        return False

    def _payment_failed(self, invoice: Obj, before: Obj | None = None) -> None:
        before = before or self.render(invoice)
        invoice["next_payment_attempt"] = None  # no automatic retries in the emulator
        self.emit("invoice.payment_failed", invoice)
        self.emit("invoice.updated", invoice, self.diff(before, self.render(invoice)))
        sub = self.objects.get(invoice["subscription"] or "")
        if sub and sub["status"] == "active":
            before_sub = self.render(sub)
            sub["status"] = "past_due"
            self.emit("customer.subscription.updated", sub, self.diff(before_sub, self.render(sub)))

    # ---------------------------------------------------- invoice endpoints
    def create_invoice(self, params: Obj) -> Obj:
        customer = self.get("customer", req_str(params, "customer"), param="customer")
        sub_id = get_str(params, "subscription")
        sub = self.get("subscription", sub_id, param="subscription") if sub_id else None
        behavior = get_enum(params, "pending_invoice_items_behavior", ("include", "exclude"), "exclude")
        pending = self.pending_items(customer["id"], sub_id) if behavior == "include" else []
        now = self.now(customer["id"])
        invoice = self.create_invoice_from(
            customer,
            subscription=sub,
            billing_reason="manual",
            specs=[],
            pending=pending,
            period=(now, now),
            collection_method=get_enum(
                params, "collection_method", ("charge_automatically", "send_invoice"), "charge_automatically"
            )
            or "charge_automatically",
            auto_advance=bool(get_bool(params, "auto_advance", False)),
            metadata=merge_metadata({}, params.get("metadata")),
            description=get_str(params, "description"),
        )
        dpm = get_str(params, "default_payment_method")
        if dpm:
            invoice["default_payment_method"] = self.resolve_payment_method(dpm, customer=customer["id"])["id"]
        return invoice

    def update_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.get("invoice", invoice_id)
        before = self.render(invoice)
        invoice["metadata"] = merge_metadata(invoice["metadata"], params.get("metadata"))
        if "description" in params:
            invoice["description"] = params["description"] or None
        auto = get_bool(params, "auto_advance")
        if auto is not None:
            invoice["auto_advance"] = auto
            if invoice["id"] in self.auto_finalize:  # a renewal draft: auto_advance=false keeps it a draft
                at = self.auto_finalize[invoice["id"]] if auto else None
                invoice.update(automatically_finalizes_at=at, next_payment_attempt=at)
        dpm = get_str(params, "default_payment_method")
        if dpm:
            invoice["default_payment_method"] = self.resolve_payment_method(dpm, customer=invoice["customer"])["id"]
        self.emit("invoice.updated", invoice, self.diff(before, self.render(invoice)))
        return invoice

    def finalize_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.get("invoice", invoice_id)
        self.finalize(invoice)
        if (
            invoice["status"] == "open"
            and invoice["auto_advance"]
            and invoice["collection_method"] == "charge_automatically"
        ):
            self.collect(invoice)
        return invoice

    def pay_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] == "draft":
            self.finalize(invoice)
        if invoice["status"] == "paid":
            raise invalid("Invoice is already paid.", code="invoice_already_paid")
        if get_bool(params, "paid_out_of_band", False):
            if invoice["status"] != "open":
                raise invalid(f"Invoice is {invoice['status']}.")
            self.mark_paid(invoice, 0)
            return invoice
        self.collect(invoice, payment_method=get_str(params, "payment_method"), raise_on_decline=True)
        return invoice

    def void_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(f"You can only void open or uncollectible invoices (this one is {invoice['status']}).")
        before = self.render(invoice)
        invoice.update(status="void", amount_remaining=0, next_payment_attempt=None)
        invoice["status_transitions"]["voided_at"] = self.now(invoice["customer"])
        self.emit("invoice.voided", invoice, self.diff(before, self.render(invoice)))
        return invoice

    def mark_uncollectible(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] != "open":
            raise invalid(f"You can only mark open invoices uncollectible (this one is {invoice['status']}).")
        before = self.render(invoice)
        invoice.update(status="uncollectible", next_payment_attempt=None)
        invoice["status_transitions"]["marked_uncollectible_at"] = self.now(invoice["customer"])
        self.emit("invoice.marked_uncollectible", invoice, self.diff(before, self.render(invoice)))
        return invoice

    def list_invoices(self, params: Obj) -> Obj:
        items = self.all("invoice")
        for name in ("customer", "subscription", "status", "collection_method"):
            value = get_str(params, name)
            if value:
                items = [i for i in items if i[name] == value]
        return self.paginate(items, "/v1/invoices", params)

    def list_invoice_lines(self, params: Obj, invoice_id: str) -> Obj:
        self.get("invoice", invoice_id)
        lines = self.invoice_lines[invoice_id]
        # Lines are listed in invoice order (oldest first), not newest first: paginate the reversed list.
        return self.paginate(list(reversed(lines)), f"/v1/invoices/{invoice_id}/lines", params, render=False)

    def list_invoice_payments(self, params: Obj) -> Obj:
        items = self.all("invoice_payment")
        invoice = get_str(params, "invoice")
        if invoice:
            items = [p for p in items if p["invoice"] == invoice]
        return self.paginate(items, "/v1/invoice_payments", params)

    # ------------------------------------------------------ invoice items
    def create_invoice_item(self, params: Obj) -> Obj:
        customer = self.get("customer", req_str(params, "customer"), param="customer")
        price_id = get_str(get_dict(params, "pricing"), "price")  # `price` is gone from this version
        price = self.get("price", price_id, param="pricing[price]") if price_id else None
        quantity = get_int(params, "quantity", 1) or 1
        amount = get_int(params, "amount")
        if price is not None:
            amount = usage_amount(_unit(price), Decimal(quantity))
            currency = price["currency"]
        else:
            if amount is None:
                raise param_missing("amount")
            currency = req_str(params, "currency").lower()
        sub_id = get_str(params, "subscription")
        if sub_id:
            self.get("subscription", sub_id, param="subscription")
        invoice_id = get_str(params, "invoice")
        if invoice_id:
            invoice = self.get("invoice", invoice_id, param="invoice")
            if invoice["customer"] != customer["id"]:
                raise invalid(
                    f"The invoice {invoice_id} belongs to customer {invoice['customer']}, not {customer['id']}.",
                    param="invoice",
                )
            if invoice["status"] != "draft":
                raise invalid(
                    f"You can only add invoice items to draft invoices; invoice {invoice_id} is {invoice['status']}.",
                    param="invoice",
                    code="invoice_not_editable",
                )
        now = self.now(customer["id"])
        period = get_dict(params, "period")
        ii = self.new_invoice_item(
            customer["id"],
            amount=amount,
            currency=currency,
            description=get_str(params, "description") or (self.product_name(price) if price else None),
            period=(get_int(period, "start", now) or now, get_int(period, "end", now) or now),
            quantity=quantity,
            price=price,
            subscription=sub_id,
            metadata=merge_metadata({}, params.get("metadata")),
        )
        if invoice_id:
            self._add_to_draft(self.objects[invoice_id], ii)
        return ii

    def _add_to_draft(self, invoice: Obj, ii: Obj) -> None:
        ii["invoice"] = invoice["id"]
        line = self.line_from_spec(self.spec_from_invoiceitem(ii), invoice["id"], fixtures.new_id("il_"))
        self.invoice_lines[invoice["id"]].append(line)
        self.apply_totals(invoice, self.invoice_lines[invoice["id"]], self.objects[invoice["customer"]]["balance"])

    def new_invoice_item(
        self,
        customer_id: str,
        *,
        amount: int,
        currency: str,
        description: str | None,
        period: tuple[int, int],
        quantity: int | Decimal = 1,
        price: Obj | None = None,
        subscription: str | None = None,
        subscription_item: str | None = None,
        proration: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> Obj:
        customer = self.objects[customer_id]
        ii = fixtures.base(
            "invoiceitem",
            id=fixtures.new_id("ii_"),
            amount=amount,
            currency=currency,
            customer=customer_id,
            date=self.now(customer_id),
            description=description,
            invoice=None,
            metadata=metadata or {},
            period={"start": period[0], "end": period[1]},
            proration=proration,
            quantity=int(quantity),
            quantity_decimal=format_quantity(Decimal(quantity)),
            test_clock=customer["test_clock"],
            parent={  # `subscription_item` and `price_details` are left out (never null) when there is none
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": subscription,
                    **({"subscription_item": subscription_item} if subscription_item else {}),
                },
            }
            if subscription
            else None,
            pricing={
                "type": "price_details",
                **({"price_details": {"price": price["id"], "product": price["product"]}} if price else {}),
                "unit_amount_decimal": price["unit_amount_decimal"] if price else str(amount),
            },
            net_amount=amount,
        )
        self.add(ii)
        self.emit("invoiceitem.created", ii)
        return ii

    def list_invoice_items(self, params: Obj) -> Obj:
        items = [i for i in self.all("invoiceitem") if not i.get("deleted")]
        customer = get_str(params, "customer")
        if customer:
            items = [i for i in items if i["customer"] == customer]
        pending = get_bool(params, "pending")
        if pending is not None:
            items = [i for i in items if (i["invoice"] is None) == pending]
        invoice = get_str(params, "invoice")
        if invoice:
            items = [i for i in items if i["invoice"] == invoice]
        return self.paginate(items, "/v1/invoiceitems", params)

    def delete_invoice_item(self, params: Obj, ii_id: str) -> Obj:
        ii = self.get("invoiceitem", ii_id)
        if ii["invoice"] and self.objects[ii["invoice"]]["status"] != "draft":
            raise invalid("This invoice item is on a finalized invoice and can no longer be deleted.")
        if ii["invoice"]:
            lines = self.invoice_lines[ii["invoice"]]
            lines[:] = [
                x
                for x in lines
                if (
                    (x["parent"].get("invoice_item_details") or x["parent"].get("subscription_item_details") or {}).get(
                        "invoice_item"
                    )
                )
                != ii_id
            ]
            invoice = self.objects[ii["invoice"]]
            self.apply_totals(invoice, lines, self.objects[invoice["customer"]]["balance"])
        ii["deleted"] = True
        self.emit("invoiceitem.deleted", ii)
        return {"id": ii_id, "object": "invoiceitem", "deleted": True}

    # ===================================================== subscriptions
    def _new_item(self, sub: Obj, price: Obj, quantity: int, metadata: dict[str, str]) -> Obj:
        item = fixtures.base(
            "subscription_item",
            id=fixtures.new_id("si_", 14),
            created=self.now(sub["customer"]),
            metadata=metadata,
            subscription=sub["id"],
            billing_thresholds=None,
            current_period_start=sub["current_period_start"],
            current_period_end=sub["current_period_end"],
        )
        self._set_item_price(item, price, quantity)
        self.add(item)
        self.subscription_items.setdefault(sub["id"], []).append(item["id"])
        return item

    def _set_item_price(self, item: Obj, price: Obj, quantity: int) -> None:
        item["price"] = self.render(price)
        item["quantity"] = None if _metered(price) else quantity
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
            item = self.objects[item_id]
            price = self.objects[item["price"]["id"]]
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
                    if quantity is None and not _metered(plan.new_price):
                        quantity = plan.old_quantity or 1
                if quantity is not None:
                    plan.new_quantity = quantity
                if "metadata" in change:
                    plan.metadata = change["metadata"]
            else:
                price = self._price(change.get("price"), f"{where}[price]")
                plans.append(
                    ItemPlan(None, None, 0, price, 0 if _metered(price) else (quantity or 1), change.get("metadata"))
                )
        return plans

    def apply_plans(self, sub: Obj, plans: list[ItemPlan]) -> None:
        for plan in plans:
            if plan.item_id is None:
                assert plan.new_price is not None
                plan.item_id = self._new_item(
                    sub, plan.new_price, plan.new_quantity, merge_metadata({}, plan.metadata)
                )["id"]
                continue
            item = self.objects[plan.item_id]
            if plan.new_price is None:
                self.subscription_items[sub["id"]].remove(plan.item_id)
                item["deleted"] = True
                continue
            if plan.changed:
                self._set_item_price(item, plan.new_price, plan.new_quantity)
            if plan.metadata is not None:
                item["metadata"] = merge_metadata(item["metadata"], plan.metadata)

    def _interval(self, plans: list[ItemPlan]) -> tuple[str, int]:
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
            self.objects[item_id].update(current_period_start=start, current_period_end=end)

    def create_subscription(self, params: Obj) -> Obj:
        customer = self.get("customer", req_str(params, "customer"), param="customer")
        items = get_list(params, "items")
        if not items:
            raise param_missing("items")
        behavior = get_enum(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
        dpm = get_str(params, "default_payment_method")
        collection = get_enum(
            params, "collection_method", ("charge_automatically", "send_invoice"), "charge_automatically"
        )
        return self.start_subscription(
            customer,
            items,
            default_payment_method=dpm,
            metadata=merge_metadata({}, params.get("metadata")),
            payment_behavior=behavior or "allow_incomplete",
            collection_method=collection or "charge_automatically",
            billing_mode=self.parse_billing_mode(params, "billing_mode", self.now(customer["id"])),
        )

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
    ) -> Obj:
        now = self.now(customer["id"])
        shell: Obj = {"id": "", "customer": customer["id"], "current_period_start": now, "current_period_end": now}
        plans = self.plan_changes(shell, items, "items")
        interval, count = self._interval(plans)
        end = add_interval(now, interval, count)
        # What the first invoice will ask for, checked before anything is created (as Stripe refuses upfront).
        first = sum(
            usage_amount(_unit(p.new_price), Decimal(p.new_quantity))
            for p in plans
            if p.new_price is not None and not _metered(p.new_price)
        )
        pending_total = sum(ii["amount"] for ii in self.pending_items(customer["id"], None))
        due = max(first + pending_total + customer["balance"], 0)
        pm_id = default_payment_method or customer["invoice_settings"]["default_payment_method"]
        if due > 0 and collection_method == "charge_automatically" and payment_behavior != "default_incomplete":
            if pm_id is None:
                raise invalid(_NO_PAYMENT_METHOD, code="resource_missing")
            card = self.declines(pm_id)
            if card is not None and payment_behavior == "error_if_incomplete":
                pm = self.resolve_payment_method(pm_id, customer=customer["id"])
                self.raise_card_error(None, self.card_error(card, None, pm))
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
        )
        if default_payment_method:
            sub["default_payment_method"] = self.resolve_payment_method(
                default_payment_method, customer=customer["id"], param="default_payment_method"
            )["id"]
        self.add(sub)
        self.period_index[sub["id"]] = 0
        self.apply_plans(sub, plans)
        self.emit("customer.subscription.created", sub)
        specs = [
            self.spec_for_item(p.new_price, p.new_quantity, now, end, subscription=sub["id"], item=p.item_id)
            for p in plans
            if p.new_price is not None and not _metered(p.new_price)
        ]
        invoice = self.create_invoice_from(
            customer,
            subscription=sub,
            billing_reason="subscription_create",
            specs=specs,
            pending=self.pending_items(customer["id"], None),
            period=(now, now),
            collection_method=collection_method,
        )
        sub["latest_invoice"] = invoice["id"]
        self.finalize(invoice)
        if invoice["status"] == "open" and collection_method == "charge_automatically":
            if payment_behavior != "default_incomplete":
                self.collect(invoice)
        elif invoice["status"] == "open":
            self._reactivate_send_invoice(sub)
        return sub

    def _reactivate_send_invoice(self, sub: Obj) -> None:
        # send_invoice subscriptions are active right away; the invoice is paid later.
        before = self.render(sub)
        sub["status"] = "active"
        self.emit("customer.subscription.updated", sub, self.diff(before, self.render(sub)))

    def update_subscription(self, params: Obj, sub_id: str) -> Obj:
        sub = self.get("subscription", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        before = self.render(sub)
        changes = get_list(params, "items")
        behavior = get_enum(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
        payment_behavior = get_enum(params, "payment_behavior", PAYMENT_BEHAVIORS, "allow_incomplete")
        at = self._proration_time(sub, get_int(params, "proration_date"), "proration_date")
        sub["metadata"] = merge_metadata(sub["metadata"], params.get("metadata"))
        if "default_payment_method" in params:
            dpm = get_str(params, "default_payment_method")
            sub["default_payment_method"] = (
                self.resolve_payment_method(dpm, customer=sub["customer"], param="default_payment_method")["id"]
                if dpm
                else None
            )
        cancel = get_bool(params, "cancel_at_period_end")
        if cancel is not None:
            now = self.now(sub["customer"])
            sub.update(
                cancel_at_period_end=cancel,
                cancel_at=sub["current_period_end"] if cancel else None,
                canceled_at=now if cancel else None,
            )
        self._change_items(sub, changes, "items", behavior or "create_prorations", at, payment_behavior, before)
        return sub

    def _proration_time(self, sub: Obj, proration_date: int | None, param: str) -> int:
        now = self.now(sub["customer"])
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
            total = sum(s.amount for s in specs) + self.objects[sub["customer"]]["balance"]
            pm = self.invoice_payment_method(
                {"customer": sub["customer"], "subscription": sub["id"], "default_payment_method": None}, None
            )
            card = self.declines(pm["id"]) if pm else None
            if total > 0 and pm is not None and card is not None:
                self.raise_card_error(None, self.card_error(card, None, pm))
        self.apply_plans(sub, plans)
        for spec in specs:
            # New items only get their id in apply_plans.
            if spec.plan is not None:
                spec.subscription_item = spec.plan.item_id
            self.new_invoice_item(
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
        after = self.render(sub)
        previous = self.diff(before, after)
        if previous:
            self.emit("customer.subscription.updated", sub, previous)
        if behavior == "always_invoice" and specs:
            customer = self.objects[sub["customer"]]
            invoice = self.create_invoice_from(
                customer,
                subscription=sub,
                billing_reason="subscription_update",
                specs=[],
                pending=self.pending_items(customer["id"], sub["id"], only_subscription=True),
                period=(at, at),
            )
            sub["latest_invoice"] = invoice["id"]
            self.finalize(invoice)
            if invoice["status"] == "open" and sub["collection_method"] == "charge_automatically":
                self.collect(invoice)
        return plans

    def list_subscriptions(self, params: Obj) -> Obj:
        items = self.all("subscription")
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
                if any(self.objects[i]["price"]["id"] == price for i in self.subscription_items.get(s["id"], []))
            ]
        return self.paginate(items, "/v1/subscriptions", params)

    def cancel_subscription(self, params: Obj, sub_id: str) -> Obj:
        sub = self.get("subscription", sub_id)
        if sub["status"] == "canceled":
            raise invalid(f"No such subscription: '{sub_id}'", code="resource_missing", param="id")
        before = self.render(sub)
        now = self.now(sub["customer"])
        plans = self.current_plans(sub)
        if get_bool(params, "prorate", False):
            gone = [ItemPlan(p.item_id, p.old_price, p.old_quantity, None, 0) for p in plans]
            for spec in self.proration_specs(sub, gone, now):
                self.new_invoice_item(
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
        if get_bool(params, "invoice_now", False):
            usage = [
                self.spec_for_usage(
                    p.old_price, sub["customer"], sub["current_period_start"], now, subscription=sub_id, item=p.item_id
                )
                for p in plans
                if _metered(p.old_price) and p.old_price is not None
            ]
            pending = self.pending_items(sub["customer"], sub_id, only_subscription=True)
            if usage or pending:
                self._bill(sub, "subscription_update", usage, pending, (sub["current_period_start"], now))
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
        self.emit("customer.subscription.deleted", sub, self.diff(before, self.render(sub)))
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
        customer = self.objects[sub["customer"]]
        finalizes_at = self.now(customer["id"]) + DRAFT_WINDOW if draft_window and customer["test_clock"] else None
        invoice = self.create_invoice_from(
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
            self.finalize_and_collect(invoice)
        return invoice

    def finalize_and_collect(self, invoice: Obj) -> None:
        """Finalize a subscription's draft and attempt payment (paid / payment_failed + past_due)."""
        self.finalize(invoice)
        sub = self.objects.get(invoice["subscription"] or "")
        if invoice["status"] == "open" and sub is not None and sub["collection_method"] == "charge_automatically":
            self.collect(invoice)

    # -------------------------------------------------- subscription items
    def create_subscription_item(self, params: Obj) -> Obj:
        sub = self.get("subscription", req_str(params, "subscription"), param="subscription")
        change: Obj = {k: params[k] for k in ("price", "quantity", "metadata") if k in params}
        plans = self._item_change(sub, change, params)
        created = [p for p in plans if p.old_price is None and p.item_id]
        return self.objects[created[-1].item_id or ""]

    def update_subscription_item(self, params: Obj, item_id: str) -> Obj:
        item = self.get("subscription_item", item_id)
        sub = self.objects[item["subscription"]]
        change: Obj = {"id": item_id, **{k: params[k] for k in ("price", "quantity", "metadata") if k in params}}
        self._item_change(sub, change, params)
        return item

    def delete_subscription_item(self, params: Obj, item_id: str) -> Obj:
        item = self.get("subscription_item", item_id)
        sub = self.objects[item["subscription"]]
        self._item_change(sub, {"id": item_id, "deleted": "true"}, params)
        return {"id": item_id, "object": "subscription_item", "deleted": True}

    def _item_change(self, sub: Obj, change: Obj, params: Obj) -> list[ItemPlan]:
        before = self.render(sub)
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
        self.get("subscription", sub_id, param="subscription")
        items = [self.objects[i] for i in self.subscription_items.get(sub_id, [])]
        return self.paginate(items, "/v1/subscription_items", params)

    # ============================================================ previews
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
        sub = self.get("subscription", sub_id, param="subscription") if sub_id else None
        if sub is not None:
            customer_id = customer_id or sub["customer"]
        if not customer_id:
            raise param_missing("customer")
        customer = self.get("customer", customer_id, param="customer")
        now = self.now(customer_id)
        if sub is None:
            # Preview of a new subscription: its first invoice.
            shell: Obj = {"id": "", "customer": customer_id, "current_period_start": now, "current_period_end": now}
            plans = self.plan_changes(shell, items, items_label)
            if not plans:
                pending = self.pending_items(customer_id, None)
                return self._preview_object(customer, None, "manual", [], pending, (now, now))
            interval, count = self._interval(plans)
            end = add_interval(now, interval, count)
            specs = [
                self.spec_for_item(p.new_price, p.new_quantity, now, end, subscription=None, item=None)
                for p in plans
                if p.new_price is not None and not _metered(p.new_price)
            ]
            return self._preview_object(
                customer, None, "subscription_create", specs, self.pending_items(customer_id, None), (now, now)
            )
        at = self._proration_time(sub, proration_date, "subscription_details[proration_date]")
        plans = self.plan_changes(sub, items, items_label)
        prorations = self.proration_specs(sub, plans, at) if behavior != "none" else []
        start, end = sub["current_period_start"], sub["current_period_end"]
        if behavior == "always_invoice" and prorations:
            pending = self.pending_items(customer_id, sub["id"], only_subscription=True)
            return self._preview_object(customer, sub, "subscription_update", prorations, pending, (at, at))
        interval, count = self._interval(plans)
        next_end = add_interval(sub["billing_cycle_anchor"], interval, count * (self.period_index[sub["id"]] + 2))
        renewal: list[LineSpec] = []
        cancels = cancel_at_period_end if cancel_at_period_end is not None else sub["cancel_at_period_end"]
        for spec in self.cycle_specs(sub, plans, (start, end), (end, next_end)):
            if cancels and not _metered(spec.price):
                continue
            renewal.append(spec)
        pending = self.pending_items(customer_id, sub["id"])
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
        all_specs = [self.spec_from_invoiceitem(ii) for ii in pending] + specs
        currency = all_specs[0].currency if all_specs else (customer["currency"] or "usd")
        invoice = self._invoice_shell(
            customer,
            invoice_id="upcoming_in_" + secrets.token_hex(12),
            subscription=sub,
            billing_reason=reason,
            period=period,
            currency=currency,
        )
        invoice["id"] = invoice["id"]
        lines = [self.line_from_spec(s, None, fixtures.new_id("il_tmp_")) for s in all_specs]
        self.apply_totals(invoice, lines, customer["balance"])
        invoice["lines"] = self.list_object(lines, "/v1/invoices/create_preview/lines")
        if sub is not None and reason == "upcoming":
            invoice["next_payment_attempt"] = period[1]
            invoice["created"] = period[1]
        return invoice

    # ====================================================== test clocks
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
        self.emit("test_helpers.test_clock.advancing", clock, at=clock["frozen_time"])

    def advance_limit(self, clock: Obj) -> tuple[int, str]:
        """The furthest one advance may go, and the interval that sets it ("2 x 1 month", or "2 years")."""
        customers = {c["id"] for c in self.all("customer") if c["test_clock"] == clock["id"]}
        frozen = clock["frozen_time"]
        limits = []
        for sub in self.all("subscription"):
            if sub["customer"] in customers and sub["status"] not in ("canceled", "incomplete_expired"):
                interval, count = self._interval(self.current_plans(sub))
                limits.append((add_interval(frozen, interval, 2 * count), f"2 {TIMES} {count} {interval}"))
        return min(limits, default=(add_interval(frozen, "year", 2), "no subscription: 2 years"))

    def finish_advance(self, clock: Obj, frozen_time: int) -> None:
        """Processes, in time order, every renewal (at its period boundary, so objects and events carry that
        time) and every renewal draft's finalization (DRAFT_WINDOW after its creation) of the clock's customers;
        before a finalization, webhook handlers of the events so far run (lock released). Then `ready`; an
        emulator bug leaves it `internal_failure` (Stripe's status for a failed advance) and is raised."""
        customers = {c["id"] for c in self.all("customer") if c["test_clock"] == clock["id"]}
        request, self.request = self.request, None  # what the clock does is automatic: events have request null
        try:
            self._process_clock(clock, customers, frozen_time)
        except Exception:
            clock.update(status="internal_failure", status_details={})
            self.emit("test_helpers.test_clock.internal_failure", clock)
            raise
        else:
            clock.update(frozen_time=frozen_time, status="ready", status_details={})
            self.emit("test_helpers.test_clock.ready", clock, at=frozen_time)
        finally:
            self.request = request

    def _process_clock(self, clock: Obj, customers: set[str], frozen_time: int) -> None:
        waited: set[str] = set()
        while True:
            due = [
                s
                for s in self.all("subscription")
                if s["customer"] in customers
                and s["status"] in ("active", "past_due", "trialing", "unpaid")
                and s["current_period_end"] <= frozen_time
            ]
            drafts = [
                i
                for i in self.all("invoice")
                if i["customer"] in customers
                and i["status"] == "draft"
                and i["auto_advance"]
                and self.auto_finalize.get(i["id"], frozen_time + 1) <= frozen_time
            ]
            sub = min(due, key=lambda s: (s["current_period_end"], s["created"]), default=None)
            draft = min(drafts, key=lambda i: (self.auto_finalize[i["id"]], i["created"]), default=None)
            settlement = self.next_settlement(customers, frozen_time)
            if settlement is not None and all(
                settlement[0] <= at
                for at in (
                    self.auto_finalize[draft["id"]] if draft else None,
                    sub["current_period_end"] if sub else None,
                )
                if at is not None
            ):
                clock["frozen_time"] = settlement[0]
                self.settle_ach(settlement[1])
                continue
            if draft is not None and (sub is None or self.auto_finalize[draft["id"]] <= sub["current_period_end"]):
                if draft["id"] not in waited:
                    # Like Stripe's hour: the invoice.created handler may still add items. The state may change
                    # while the lock is released, so look again afterwards.
                    waited.add(draft["id"])
                    self.let_webhooks_run(self.draft_webhook_timeout)
                    continue
                clock["frozen_time"] = self.auto_finalize[draft["id"]]
                self.finalize_and_collect(draft)
            elif sub is not None:
                clock["frozen_time"] = sub["current_period_end"]
                self.renew(sub)
            else:
                break

    def renew(self, sub: Obj) -> None:
        """One period boundary: end the subscription (cancel_at_period_end) or start the next period and
        invoice it: pending items, the closed period's metered usage, the new period's licensed items."""
        closed = (sub["current_period_start"], sub["current_period_end"])
        plans = self.current_plans(sub)
        if sub["cancel_at_period_end"]:
            usage = self.cycle_specs(sub, [p for p in plans if _metered(p.new_price)], closed, closed)
            pending = self.pending_items(sub["customer"], sub["id"], only_subscription=True)
            if usage or pending:
                self._bill(sub, "subscription_cycle", usage, pending, closed, draft_window=True)
            before = self.render(sub)
            sub.update(status="canceled", ended_at=closed[1], cancel_at_period_end=False)
            sub["cancellation_details"] = dict(_CANCELED_ON_REQUEST)
            self.emit("customer.subscription.deleted", sub, self.diff(before, self.render(sub)))
            return
        before = self.render(sub)
        interval, count = self._interval(plans)
        index = self.period_index[sub["id"]] + 1
        self.period_index[sub["id"]] = index
        upcoming = (closed[1], add_interval(sub["billing_cycle_anchor"], interval, count * (index + 1)))
        self._set_period(sub, *upcoming)
        self.emit("customer.subscription.updated", sub, self.diff(before, self.render(sub)))
        specs = self.cycle_specs(sub, plans, closed, upcoming)
        pending = self.pending_items(sub["customer"], sub["id"])
        self._bill(sub, "subscription_cycle", specs, pending, closed, draft_window=True)

    # ============================================================== meters
    def usage(self, meter_id: str, customer_id: str, start: int, end: int) -> Decimal:
        """A meter's aggregated value for one customer over [start, end)."""
        meter = self.objects[meter_id]
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        events = [
            e
            for e in self.meter_events
            if e["event_name"] == meter["event_name"]
            and e["payload"].get(customer_key) == customer_id
            and start <= e["timestamp"] < end
        ]
        if meter["default_aggregation"]["formula"] == "count":
            return Decimal(len(events))
        if meter["default_aggregation"]["formula"] == "last":
            return Decimal(events[-1]["payload"].get(value_key, "0")) if events else Decimal(0)
        return sum((Decimal(e["payload"].get(value_key, "1")) for e in events), Decimal(0))
