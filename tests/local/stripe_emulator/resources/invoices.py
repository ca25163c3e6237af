"""Invoices (lines, totals, finalization with the minimum charge, payment), invoice payments and invoice items.

Rules: README.md (*Billing rules*)."""

from __future__ import annotations

from decimal import Decimal

from .. import fixtures
from ..errors import invalid, param_missing
from ..money import format_quantity, minimum_charge, usage_amount
from ..params import (
    get_bool,
    get_decimal,
    get_dict,
    get_enum,
    get_int,
    get_str,
    merge_metadata,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store
from .customers import Customers
from .lines import LineSpec, unit_decimal
from .payment_intents import PaymentIntents
from .payment_methods import PaymentMethods
from .products_prices import Catalog

# Stripe leaves an automatic (renewal) invoice in draft about an hour before finalizing and charging it.
DRAFT_WINDOW = 3600
NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. "
    "Please consider adding a default payment method."
)


class Invoices:
    def __init__(
        self,
        store: Store,
        customers: Customers,
        catalog: Catalog,
        payment_methods: PaymentMethods,
        payment_intents: PaymentIntents,
    ) -> None:
        self.store = store
        self.customers = customers
        self.catalog = catalog
        self.payment_methods = payment_methods
        self.payment_intents = payment_intents
        self.invoice_lines: dict[str, list[Obj]] = {}
        # Renewal drafts waiting for their one-hour window to end: invoice id -> scheduled finalization time.
        self.auto_finalize: dict[str, int] = {}
        store.renderers["invoice"] = self._render_invoice
        store.includable[("invoice", "payments")] = self._invoice_payments

    def _render_invoice(self, out: Obj) -> None:
        if out["id"] not in self.invoice_lines:  # a preview carries its own lines
            return
        lines = self.invoice_lines[out["id"]]
        url = f"/v1/invoices/{out['id']}/lines"
        out["lines"] = self.store.list_object([dict(x) for x in lines[:10]], url, has_more=len(lines) > 10)

    def _invoice_payments(self, invoice: Obj) -> Obj:
        payments = [
            self.store.render(p) for p in reversed(self.store.all("invoice_payment")) if p["invoice"] == invoice["id"]
        ]
        return self.store.list_object(payments, f"/v1/invoice_payments?invoice={invoice['id']}")

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
            price=self.store.objects.get(price_id) if price_id else None,
            proration=ii["proration"],
            subscription=details.get("subscription"),
            subscription_item=details.get("subscription_item"),
            invoice_item=ii["id"],
            metadata=dict(ii["metadata"]),
            unit_amount_decimal=None if price_id else ii["pricing"]["unit_amount_decimal"],
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
                "unit_amount_decimal": spec.price["unit_amount_decimal"] if spec.price else spec.unit_amount_decimal,
            },
            subtotal=spec.amount,
        )

    def shell(
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
        now = self.store.now(customer["id"])
        invoice = fixtures.base(
            "invoice",
            id=invoice_id,
            account_name="Layers Billing (Stripe emulator)",
            amount_overpaid=0,
            amount_paid=0,
            amount_paid_off_stripe=0,
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
        for ii in self.store.all("invoiceitem"):
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
        invoice = self.shell(
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
        self.store.add(invoice)
        self.store.emit("invoice.created", invoice)
        return invoice

    def finalize(self, invoice: Obj) -> None:
        if invoice["status"] != "draft":
            raise invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        customer = self.store.objects[invoice["customer"]]
        now = self.store.now(customer["id"])
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
            self.customers.balance_transaction(
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
            hosted_invoice_url=f"{self.store.base_url}/invoice/{invoice['id']}",
            invoice_pdf=f"{self.store.base_url}/invoice/{invoice['id']}/pdf",
            webhooks_delivered_at=now,
        )
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + self._days_until_due(invoice) * 86_400
        elif invoice["amount_due"] > 0:
            invoice["next_payment_attempt"] = now
        self.store.emit("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self.mark_paid(invoice, 0)

    def _days_until_due(self, invoice: Obj) -> int:
        """The subscription's payment terms for its invoices (30 days for one-off invoices here)."""
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        sub = self.store.objects.get(details.get("subscription") or "")
        return int(sub.get("days_until_due") or 30) if sub else 30

    def _below_minimum_charge(self, invoice: Obj, customer: Obj, net: int) -> bool:
        """An automatically collected invoice asking for less than Stripe's minimum charge in its currency, of
        a customer without a cash balance (Stripe's condition)."""
        return (
            invoice["collection_method"] == "charge_automatically"
            and 0 < net < minimum_charge(invoice["currency"])
            and customer["id"] not in self.customers.cash
        )

    def mark_paid(self, invoice: Obj, amount: int) -> None:
        now = self.store.now(invoice["customer"])
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_paid"] + amount,
            amount_remaining=0,
            next_payment_attempt=None,
            attempted=True,
        )
        invoice["status_transitions"]["paid_at"] = now
        self.store.emit("invoice.paid", invoice)
        self.store.emit("invoice.payment_succeeded", invoice)
        if invoice["subscription"]:
            self._reactivate(self.store.objects[invoice["subscription"]])

    def _reactivate(self, sub: Obj) -> None:
        """An incomplete/past_due subscription becomes active once none of its invoices is left open."""
        if sub["status"] not in ("incomplete", "past_due", "unpaid"):
            return
        open_invoices = [
            i for i in self.store.all("invoice") if i["subscription"] == sub["id"] and i["status"] == "open"
        ]
        if open_invoices:
            return
        before = self.store.render(sub)
        sub["status"] = "active"
        self.store.emit("customer.subscription.updated", sub, self.store.diff(before, self.store.render(sub)))

    def invoice_payment_method(self, invoice: Obj, override: str | None) -> Obj | None:
        customer = self.store.objects[invoice["customer"]]
        sub = self.store.objects.get(invoice["subscription"] or "")
        candidates = [
            override,
            invoice["default_payment_method"],
            sub["default_payment_method"] if sub else None,
            customer["invoice_settings"]["default_payment_method"],
        ]
        for pm_id in candidates:
            if pm_id:
                return self.payment_methods.resolve(pm_id, customer=customer["id"])
        return None

    def _invoice_intent(self, invoice: Obj) -> Obj:
        """The invoice's PaymentIntent (reused across attempts), linked through an invoice_payment."""
        for payment in self.store.all("invoice_payment"):
            if payment["invoice"] == invoice["id"] and payment["status"] == "open":
                pi: Obj = self.store.objects[payment["payment"]["payment_intent"]]
                return pi
        reason = invoice["billing_reason"]
        description = {
            "subscription_create": "Subscription creation",
            "subscription_cycle": "Subscription cycle",
            "subscription_update": "Subscription update",
        }.get(reason, f"Invoice {invoice['number']}")
        pi = self.payment_intents.new_payment_intent(
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
            created=self.store.now(invoice["customer"]),
            currency=invoice["currency"],
            invoice=invoice["id"],
            is_default=True,
            payment={"type": "payment_intent", "payment_intent": pi["id"]},
            status="open",
        )
        self.store.add(payment)
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
                raise invalid(NO_PAYMENT_METHOD, code="invoice_no_payment_method")
            self._payment_failed(invoice)
            return False
        pi = self._invoice_intent(invoice)
        before = self.store.render(invoice)
        self.payment_intents.confirm(pi, pm, off_session=True)
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        if pi["status"] == "succeeded":
            for payment in self.store.all("invoice_payment"):
                if payment["payment"]["payment_intent"] == pi["id"]:
                    payment.update(status="paid", amount_paid=pi["amount"])
                    payment["status_transitions"]["paid_at"] = self.store.now(invoice["customer"])
            self.mark_paid(invoice, pi["amount"])
            return True
        self._payment_failed(invoice, before)
        if raise_on_decline:
            self.payment_methods.raise_card_error(pi, pi["last_payment_error"])
        return False

    def _payment_failed(self, invoice: Obj, before: Obj | None = None) -> None:
        before = before or self.store.render(invoice)
        invoice["next_payment_attempt"] = None  # no automatic retries in the emulator
        self.store.emit("invoice.payment_failed", invoice)
        self.store.emit("invoice.updated", invoice, self.store.diff(before, self.store.render(invoice)))
        sub = self.store.objects.get(invoice["subscription"] or "")
        if sub and sub["status"] == "active":
            before_sub = self.store.render(sub)
            sub["status"] = "past_due"
            self.store.emit("customer.subscription.updated", sub, self.store.diff(before_sub, self.store.render(sub)))

    def finalize_and_collect(self, invoice: Obj) -> None:
        """Finalize a subscription's draft and attempt payment (paid / payment_failed + past_due)."""
        self.finalize(invoice)
        sub = self.store.objects.get(invoice["subscription"] or "")
        if invoice["status"] == "open" and sub is not None and sub["collection_method"] == "charge_automatically":
            self.collect(invoice)

    def create_invoice(self, params: Obj) -> Obj:
        customer = self.store.get("customer", req_str(params, "customer"), param="customer")
        sub_id = get_str(params, "subscription")
        sub = self.store.get("subscription", sub_id, param="subscription") if sub_id else None
        behavior = get_enum(params, "pending_invoice_items_behavior", ("include", "exclude"), "exclude")
        pending = self.pending_items(customer["id"], sub_id) if behavior == "include" else []
        now = self.store.now(customer["id"])
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
            invoice["default_payment_method"] = self.payment_methods.resolve(dpm, customer=customer["id"])["id"]
        return invoice

    def update_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.store.get("invoice", invoice_id)
        before = self.store.render(invoice)
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
            invoice["default_payment_method"] = self.payment_methods.resolve(dpm, customer=invoice["customer"])["id"]
        self.store.emit("invoice.updated", invoice, self.store.diff(before, self.store.render(invoice)))
        return invoice

    def finalize_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.store.get("invoice", invoice_id)
        self.finalize(invoice)
        if (
            invoice["status"] == "open"
            and invoice["auto_advance"]
            and invoice["collection_method"] == "charge_automatically"
        ):
            self.collect(invoice)
        return invoice

    def pay_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.store.get("invoice", invoice_id)
        if invoice["status"] == "draft":
            self.finalize(invoice)
        if invoice["status"] == "paid":
            raise invalid("Invoice is already paid.", code="invoice_already_paid")
        if get_bool(params, "paid_out_of_band", False):
            if invoice["status"] != "open":
                raise invalid(f"Invoice is {invoice['status']}.")
            invoice["amount_paid_off_stripe"] = invoice["amount_remaining"]  # a wire the integrator recorded
            self.mark_paid(invoice, 0)
            return invoice
        self.collect(invoice, payment_method=get_str(params, "payment_method"), raise_on_decline=True)
        return invoice

    def void_invoice(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.store.get("invoice", invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(f"You can only void open or uncollectible invoices (this one is {invoice['status']}).")
        before = self.store.render(invoice)
        invoice.update(status="void", amount_remaining=0, next_payment_attempt=None)
        invoice["status_transitions"]["voided_at"] = self.store.now(invoice["customer"])
        self.store.emit("invoice.voided", invoice, self.store.diff(before, self.store.render(invoice)))
        return invoice

    def mark_uncollectible(self, params: Obj, invoice_id: str) -> Obj:
        invoice = self.store.get("invoice", invoice_id)
        if invoice["status"] != "open":
            raise invalid(f"You can only mark open invoices uncollectible (this one is {invoice['status']}).")
        before = self.store.render(invoice)
        invoice.update(status="uncollectible", next_payment_attempt=None)
        invoice["status_transitions"]["marked_uncollectible_at"] = self.store.now(invoice["customer"])
        self.store.emit("invoice.marked_uncollectible", invoice, self.store.diff(before, self.store.render(invoice)))
        return invoice

    def list_invoices(self, params: Obj) -> Obj:
        items = self.store.all("invoice")
        for name in ("customer", "subscription", "status", "collection_method"):
            value = get_str(params, name)
            if value:
                items = [i for i in items if i[name] == value]
        return self.store.paginate(items, "/v1/invoices", params)

    def list_invoice_lines(self, params: Obj, invoice_id: str) -> Obj:
        self.store.get("invoice", invoice_id)
        lines = self.invoice_lines[invoice_id]
        # Lines are listed in invoice order (oldest first), not newest first: paginate the reversed list.
        return self.store.paginate(list(reversed(lines)), f"/v1/invoices/{invoice_id}/lines", params, render=False)

    def list_invoice_payments(self, params: Obj) -> Obj:
        items = self.store.all("invoice_payment")
        invoice = get_str(params, "invoice")
        if invoice:
            items = [p for p in items if p["invoice"] == invoice]
        return self.store.paginate(items, "/v1/invoice_payments", params)

    def create_invoice_item(self, params: Obj) -> Obj:
        customer = self.store.get("customer", req_str(params, "customer"), param="customer")
        price_id = get_str(get_dict(params, "pricing"), "price")  # `price` is gone from this version
        price = self.store.get("price", price_id, param="pricing[price]") if price_id else None
        quantity = get_int(params, "quantity", 1) or 1
        amount, unit = _item_amount(params, price, quantity)
        currency = price["currency"] if price is not None else req_str(params, "currency").lower()
        sub_id = get_str(params, "subscription")
        if sub_id:
            self.store.get("subscription", sub_id, param="subscription")
        invoice_id = get_str(params, "invoice")
        if invoice_id:
            invoice = self.store.get("invoice", invoice_id, param="invoice")
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
        now = self.store.now(customer["id"])
        period = get_dict(params, "period")
        ii = self.new_invoice_item(
            customer["id"],
            amount=amount,
            currency=currency,
            description=get_str(params, "description") or (self.catalog.product_name(price) if price else None),
            period=(get_int(period, "start", now) or now, get_int(period, "end", now) or now),
            quantity=quantity,
            price=price,
            unit_amount_decimal=unit,
            subscription=sub_id,
            metadata=merge_metadata({}, params.get("metadata")),
        )
        if invoice_id:
            self._add_to_draft(self.store.objects[invoice_id], ii)
        return ii

    def _add_to_draft(self, invoice: Obj, ii: Obj) -> None:
        ii["invoice"] = invoice["id"]
        line = self.line_from_spec(self.spec_from_invoiceitem(ii), invoice["id"], fixtures.new_id("il_"))
        self.invoice_lines[invoice["id"]].append(line)
        self.apply_totals(
            invoice, self.invoice_lines[invoice["id"]], self.store.objects[invoice["customer"]]["balance"]
        )

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
        unit_amount_decimal: Decimal | None = None,
    ) -> Obj:
        customer = self.store.objects[customer_id]
        ii = fixtures.base(
            "invoiceitem",
            id=fixtures.new_id("ii_"),
            amount=amount,
            currency=currency,
            customer=customer_id,
            date=self.store.now(customer_id),
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
                "unit_amount_decimal": price["unit_amount_decimal"]
                if price
                else format_quantity(unit_amount_decimal if unit_amount_decimal is not None else Decimal(amount)),
            },
            net_amount=amount,
        )
        self.store.add(ii)
        self.store.emit("invoiceitem.created", ii)
        return ii

    def list_invoice_items(self, params: Obj) -> Obj:
        items = [i for i in self.store.all("invoiceitem") if not i.get("deleted")]
        customer = get_str(params, "customer")
        if customer:
            items = [i for i in items if i["customer"] == customer]
        pending = get_bool(params, "pending")
        if pending is not None:
            items = [i for i in items if (i["invoice"] is None) == pending]
        invoice = get_str(params, "invoice")
        if invoice:
            items = [i for i in items if i["invoice"] == invoice]
        return self.store.paginate(items, "/v1/invoiceitems", params)

    def delete_invoice_item(self, params: Obj, ii_id: str) -> Obj:
        ii = self.store.get("invoiceitem", ii_id)
        if ii["invoice"] and self.store.objects[ii["invoice"]]["status"] != "draft":
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
            invoice = self.store.objects[ii["invoice"]]
            self.apply_totals(invoice, lines, self.store.objects[invoice["customer"]]["balance"])
        ii["deleted"] = True
        self.store.emit("invoiceitem.deleted", ii)
        return {"id": ii_id, "object": "invoiceitem", "deleted": True}

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/invoices", self.create_invoice),
            stripe("GET", "/v1/invoices", self.list_invoices),
            stripe("GET", f"/v1/invoices/{ID}", lambda p, i: self.store.get("invoice", i)),
            stripe("POST", f"/v1/invoices/{ID}", self.update_invoice),
            stripe("GET", f"/v1/invoices/{ID}/lines", self.list_invoice_lines),
            stripe("POST", f"/v1/invoices/{ID}/finalize", self.finalize_invoice),
            stripe("POST", f"/v1/invoices/{ID}/pay", self.pay_invoice),
            stripe("POST", f"/v1/invoices/{ID}/void", self.void_invoice),
            stripe("POST", f"/v1/invoices/{ID}/mark_uncollectible", self.mark_uncollectible),
            stripe("GET", "/v1/invoice_payments", self.list_invoice_payments),
            stripe("GET", f"/v1/invoice_payments/{ID}", lambda p, i: self.store.get("invoice_payment", i)),
            stripe("POST", "/v1/invoiceitems", self.create_invoice_item),
            stripe("GET", "/v1/invoiceitems", self.list_invoice_items),
            stripe("GET", f"/v1/invoiceitems/{ID}", lambda p, i: self.store.get("invoiceitem", i)),
            stripe("DELETE", f"/v1/invoiceitems/{ID}", self.delete_invoice_item),
        ]


_UNIT_PLACES = 12  # Stripe: "a decimal value in cents with at most 12 decimal places"


def _item_amount(params: Obj, price: Obj | None, quantity: int) -> tuple[int, Decimal | None]:
    """An invoice item's amount and its own unit price: a price's unit x quantity, an item's
    `unit_amount_decimal` x quantity (rounded half-even, as Stripe rounds), or a lump `amount` (quantity 1).
    Refused as Stripe refuses: both an amount and a unit price, none, a unit price with over 12 places."""
    amount = get_int(params, "amount")
    unit = get_decimal(params, "unit_amount_decimal")
    if price is not None:
        if amount is not None or unit is not None:
            raise invalid(
                "You may only specify one of these parameters: amount, pricing[price], unit_amount_decimal.",
                code="parameters_exclusive",
            )
        return usage_amount(unit_decimal(price), Decimal(quantity)), None
    if amount is not None and unit is not None:
        raise invalid(
            "You may only specify one of these parameters: amount, unit_amount_decimal.", code="parameters_exclusive"
        )
    if unit is not None:
        if not unit.is_finite() or -int(unit.as_tuple().exponent) > _UNIT_PLACES:
            raise invalid(
                f"Invalid decimal: {unit} (at most {_UNIT_PLACES} decimal places)",
                param="unit_amount_decimal",
                code="parameter_invalid_decimal",
            )
        return usage_amount(unit, Decimal(quantity)), unit
    if amount is None:
        raise param_missing("amount")
    return amount, None
