"""The remaining resources: checkout sessions (+ the completion test helper), setup intents, billing portal,
billing meters, test clocks, events and webhook endpoints."""

from __future__ import annotations

import secrets
import threading
import traceback
from decimal import Decimal
from typing import Any

from . import fixtures
from .billing import Billing
from .core import Obj
from .errors import ApiError, invalid, param_missing
from .params import (
    get_decimal,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_int,
    req_str,
)

_DAY = 86_400


class Engine(Billing):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkout_items: dict[str, list[Obj]] = {}
        self.includable[("checkout.session", "line_items")] = self._session_line_items

    # ==================================================== checkout sessions
    def create_checkout_session(self, params: Obj) -> Obj:
        mode = get_enum(params, "mode", ("payment", "setup", "subscription"))
        if mode is None:
            raise param_missing("mode")
        customer_id = get_str(params, "customer")
        if customer_id:
            self.get("customer", customer_id, param="customer")
        items = self._checkout_items(params, mode)
        currency = get_str(params, "currency")
        if items:
            currency = items[0]["currency"]
        elif mode != "setup":
            raise param_missing("line_items")
        elif currency is None:
            raise param_missing("currency")
        now = self.now(customer_id)
        session_id = fixtures.new_id("cs_test_", 58)
        total = sum(i["amount_total"] for i in items)
        session = fixtures.base(
            "checkout.session",
            id=session_id,
            after_expiration=None,
            amount_subtotal=total if mode != "setup" else None,
            amount_total=total if mode != "setup" else None,
            cancel_url=get_str(params, "cancel_url"),
            client_reference_id=get_str(params, "client_reference_id"),
            collected_information=None,
            created=now,
            currency=currency.lower() if currency else None,
            currency_conversion=None,
            custom_text={
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            customer=customer_id,
            customer_creation="always" if not customer_id and mode != "payment" else None,
            customer_details=None,
            customer_email=get_str(params, "customer_email"),
            expires_at=now + _DAY,
            invoice=None,
            invoice_creation=None,
            metadata=merge_metadata({}, params.get("metadata")),
            mode=mode,
            payment_intent=None,
            payment_method_configuration_details=None,
            payment_status="no_payment_required" if mode == "setup" else "unpaid",
            shipping_address_collection=None,
            shipping_cost=None,
            status="open",
            subscription=None,
            success_url=get_str(params, "success_url"),
            total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            url=f"{self.base_url}/checkout/{session_id}",
            managed_payments=None,
        )
        self.checkout_items[session_id] = items
        # Kept for completion; Stripe stores these too (they are not echoed on the session object).
        session["_subscription_data"] = get_dict(params, "subscription_data")
        session["_payment_intent_data"] = get_dict(params, "payment_intent_data")
        session["_setup_intent_data"] = get_dict(params, "setup_intent_data")
        self.add(session)
        return session

    def _render_checkout_session(self, out: Obj) -> None:
        for key in [k for k in out if k.startswith("_")]:
            del out[key]

    def _checkout_items(self, params: Obj, mode: str) -> list[Obj]:
        items = []
        for index, raw in enumerate(get_list(params, "line_items")):
            where = f"line_items[{index}]"
            if not isinstance(raw, dict):
                raise invalid(f"Invalid object: {where}", param=where)
            quantity = get_int(raw, "quantity", 1, label=f"{where}[quantity]") or 1
            if raw.get("price"):
                price = self.get("price", str(raw["price"]), param=f"{where}[price]")
            elif raw.get("price_data"):
                data = get_dict(raw, "price_data")
                product_data = get_dict(data, "product_data")
                if "product" in data:
                    product_id = str(data["product"])
                elif product_data:
                    product_id = self.create_product(product_data)["id"]
                else:
                    raise param_missing(f"{where}[price_data][product_data]")
                price = self._new_price(
                    {k: v for k, v in data.items() if k in ("unit_amount", "unit_amount_decimal", "recurring")},
                    req_str(data, "currency", label=f"{where}[price_data][currency]").lower(),
                    product_id,
                )
            else:
                raise param_missing(f"{where}[price]")
            if mode == "subscription" and not price["recurring"]:
                raise invalid(
                    "You must specify at least one recurring price in `subscription` mode.", param=f"{where}[price]"
                )
            if mode == "payment" and price["recurring"]:
                raise invalid(
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                    "or use only one-time prices.",
                    param=f"{where}[price]",
                )
            metered = bool(price["recurring"] and price["recurring"]["usage_type"] == "metered")
            amount = 0 if metered else int(Decimal(price["unit_amount_decimal"]) * quantity)
            items.append(
                fixtures.base(
                    "item",
                    id=fixtures.new_id("li_"),
                    amount_discount=0,
                    amount_subtotal=amount,
                    amount_tax=0,
                    amount_total=amount,
                    currency=price["currency"],
                    description=self.product_name(price),
                    price=price["id"],
                    quantity=None if metered else quantity,
                )
            )
        return items

    def _session_line_items(self, session: Obj) -> Obj:
        items = []
        for item in self.checkout_items.get(session["id"], []):
            rendered = dict(item)
            rendered["price"] = self.render(self.objects[item["price"]])
            items.append(rendered)
        return self.list_object(items, f"/v1/checkout/sessions/{session['id']}/line_items")

    def list_checkout_line_items(self, params: Obj, session_id: str) -> Obj:
        session = self.get("checkout.session", session_id)
        return self._session_line_items(session)

    def list_checkout_sessions(self, params: Obj) -> Obj:
        items = self.all("checkout.session")
        for name in ("customer", "subscription", "payment_intent", "status"):
            value = get_str(params, name)
            if value:
                items = [s for s in items if s[name] == value]
        return self.paginate(items, "/v1/checkout/sessions", params)

    def expire_checkout_session(self, params: Obj, session_id: str) -> Obj:
        session = self.get("checkout.session", session_id)
        if session["status"] != "open":
            raise invalid(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a '
                f'status of "{session["status"]}".',
                code="checkout_session_not_open",
            )
        session["status"] = "expired"
        self.emit("checkout.session.expired", session)
        return session

    def complete_checkout_session(self, params: Obj, session_id: str) -> Obj:
        """Test helper: the customer pays on the hosted page with `payment_method` (default pm_card_visa)."""
        session = self.get("checkout.session", session_id)
        if session["status"] != "open":
            raise invalid(f"This Checkout Session is {session['status']}; only open sessions can be completed.")
        token = get_str(params, "payment_method", "pm_card_visa") or "pm_card_visa"
        card = self.declines(token)
        if card is not None and session["mode"] != "setup":
            # The hosted page refuses the card: nothing is created and the session stays open.
            raise ApiError(
                402,
                "Your card was declined.",
                type="card_error",
                code="card_declined",
                extra={"decline_code": card.decline_code},
            )
        customer_id = session["customer"]
        if customer_id is None:
            email = session["customer_email"] or f"customer-{secrets.token_hex(3)}@example.com"
            customer_id = self.create_customer({"email": email})["id"]
            session["customer"] = customer_id
        customer = self.objects[customer_id]
        session["customer_details"] = {
            "address": None,
            "email": customer["email"],
            "name": customer["name"],
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
            "business_name": None,
            "individual_name": None,
        }
        if session["mode"] == "subscription":
            pm = self._attach_as_default(customer, token)
            sub_data = session["_subscription_data"]
            sub = self.start_subscription(
                customer,
                [{"price": i["price"], "quantity": str(i["quantity"] or "")} for i in self.checkout_items[session_id]],
                default_payment_method=pm["id"],
                metadata=merge_metadata({}, sub_data.get("metadata")),
                payment_behavior="allow_incomplete",
                billing_mode=self.parse_billing_mode(
                    sub_data, "subscription_data[billing_mode]", self.now(customer_id)
                ),
            )
            invoice = self.objects[sub["latest_invoice"]]
            session.update(
                subscription=sub["id"],
                invoice=invoice["id"],
                payment_status="paid" if invoice["amount_paid"] > 0 else "no_payment_required",
            )
        elif session["mode"] == "payment":
            pm = self.resolve_payment_method(token)
            pi_data = session["_payment_intent_data"]
            pi = self.new_payment_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                customer=customer_id,
                description=get_str(pi_data, "description"),
                metadata=merge_metadata({}, pi_data.get("metadata")),
                payment_method=pm["id"],
                setup_future_usage=get_str(pi_data, "setup_future_usage"),
            )
            self.confirm(pi, pm)
            session.update(payment_intent=pi["id"], payment_status="paid")
        else:
            pm = self._attach_as_default(customer, token)
            seti = self._succeeded_setup_intent(customer_id, pm, session["_setup_intent_data"])
            session["setup_intent"] = seti["id"]
        session["status"] = "complete"
        self.emit("checkout.session.completed", session)
        return session

    def _attach_as_default(self, customer: Obj, token: str) -> Obj:
        pm = self.resolve_payment_method(token, customer=customer["id"])
        before = self.render(customer)
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
        self.emit("customer.updated", customer, self.diff(before, self.render(customer)))
        return pm

    def _succeeded_setup_intent(self, customer_id: str, pm: Obj, data: Obj) -> Obj:
        seti_id = fixtures.new_id("seti_")
        seti = fixtures.base(
            "setup_intent",
            id=seti_id,
            automatic_payment_methods=None,
            client_secret=f"{seti_id}_secret_{fixtures.new_id('', 32)}",
            created=self.now(customer_id),
            customer=customer_id,
            description=get_str(data, "description"),
            last_setup_error=None,
            metadata=merge_metadata({}, data.get("metadata")),
            next_action=None,
            payment_method=pm["id"],
            payment_method_configuration_details=None,
            status="succeeded",
            usage="off_session",
        )
        self.add(seti)
        self.emit("setup_intent.created", seti)
        self.emit("setup_intent.succeeded", seti)
        return seti

    # ======================================================= billing portal
    def create_portal_session(self, params: Obj) -> Obj:
        customer_id = req_str(params, "customer")
        self.get("customer", customer_id, param="customer")
        session_id = fixtures.new_id("bps_")
        session = fixtures.base(
            "billing_portal.session",
            id=session_id,
            configuration=fixtures.new_id("bpc_"),
            created=self.now(customer_id),
            customer=customer_id,
            flow=None,
            return_url=get_str(params, "return_url"),
            url=f"{self.base_url}/billing_portal/{session_id}",
        )
        self.add(session)
        self.emit("billing_portal.session.created", session)
        return session

    # =============================================================== meters
    def create_meter(self, params: Obj) -> Obj:
        event_name = req_str(params, "event_name")
        if any(m["event_name"] == event_name and m["status"] == "active" for m in self.all("billing.meter")):
            raise invalid(
                f"An active meter with event_name `{event_name}` already exists.",
                param="event_name",
                code="resource_already_exists",
            )
        aggregation = get_dict(params, "default_aggregation")
        formula = get_enum(aggregation, "formula", ("sum", "count", "last"))
        if formula is None:
            raise param_missing("default_aggregation[formula]")
        mapping = get_dict(params, "customer_mapping")
        values = get_dict(params, "value_settings")
        now = self.now()
        meter = fixtures.base(
            "billing.meter",
            id=fixtures.new_id("mtr_test_", 32),
            created=now,
            updated=now,
            customer_mapping={
                "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
                "type": mapping.get("type", "by_id"),
            },
            default_aggregation={"formula": formula},
            display_name=req_str(params, "display_name"),
            event_name=event_name,
            event_time_window=get_str(params, "event_time_window"),
            value_settings={"event_payload_key": values.get("event_payload_key", "value")},
        )
        return self.add(meter)

    def list_meters(self, params: Obj) -> Obj:
        items = self.all("billing.meter")
        status = get_str(params, "status")
        if status:
            items = [m for m in items if m["status"] == status]
        return self.paginate(items, "/v1/billing/meters", params)

    def create_meter_event(self, params: Obj) -> Obj:
        """Identifiers are unique for 24 h: a repeat is refused with 400 (see README: code chosen by us)."""
        event_name = req_str(params, "event_name")
        meters = [m for m in self.all("billing.meter") if m["event_name"] == event_name and m["status"] == "active"]
        if not meters:
            raise invalid(
                f"No active meter was found for event_name `{event_name}`.", param="event_name", code="resource_missing"
            )
        meter = meters[0]
        payload = get_dict(params, "payload")
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        customer_id = payload.get(customer_key)
        if not customer_id:
            raise param_missing(f"payload[{customer_key}]")
        self.get("customer", str(customer_id), param=f"payload[{customer_key}]")
        if meter["default_aggregation"]["formula"] != "count":
            value = get_decimal(payload, value_key, label=f"payload[{value_key}]")
            if value is None:
                raise param_missing(f"payload[{value_key}]")
        identifier = get_str(params, "identifier") or fixtures.new_id("", 32)
        wall = self.now()
        seen = self.meter_identifiers.get(identifier)
        if seen is not None and wall - seen < _DAY:
            raise invalid(
                f"An event with identifier `{identifier}` already exists.",
                param="identifier",
                code="resource_already_exists",
            )
        event = fixtures.base(
            "billing.meter_event",
            created=self.now(str(customer_id)),
            event_name=event_name,
            identifier=identifier,
            payload={str(k): str(v) for k, v in payload.items()},
            timestamp=get_int(params, "timestamp", self.now(str(customer_id))),
        )
        self.meter_identifiers[identifier] = wall
        self.meter_events.append(event)
        return event

    def meter_event_summaries(self, params: Obj, meter_id: str) -> Obj:
        meter = self.get("billing.meter", meter_id)
        customer_id = req_str(params, "customer")
        start, end = req_int(params, "start_time"), req_int(params, "end_time")
        if end <= start:
            raise invalid("end_time must be after start_time.", param="end_time")
        summary = fixtures.base(
            "billing.meter_event_summary",
            id=fixtures.new_id("mtrusg_"),
            aggregated_value=float(self.usage(meter_id, customer_id, start, end)),
            start_time=start,
            end_time=end,
            meter=meter["id"],
        )
        return self.list_object([summary], f"/v1/billing/meters/{meter_id}/event_summaries")

    # =========================================================== test clocks
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
        return self.add(clock)

    def advance_test_clock(self, params: Obj, clock_id: str) -> Obj:
        """Answers the clock `advancing` (at its old frozen time, as Stripe does) and advances it right after,
        in a thread that waits for this request to let go of the lock: poll the clock (or wait for
        `test_helpers.test_clock.ready`) before reading what the advance did."""
        clock = self.get("test_helpers.test_clock", clock_id)
        frozen_time = req_int(params, "frozen_time")
        self.start_advance(clock, frozen_time)
        answer = self.render(clock)
        threading.Thread(
            target=self._advance_in_background, args=(clock, frozen_time), name=f"advance-{clock_id}", daemon=True
        ).start()
        return answer

    def _advance_in_background(self, clock: Obj, frozen_time: int) -> None:
        with self.lock:
            try:
                self.finish_advance(clock, frozen_time)
            except Exception:  # an emulator bug: the clock says internal_failure; show why
                traceback.print_exc()

    def delete_test_clock(self, params: Obj, clock_id: str) -> Obj:
        clock = self.get("test_helpers.test_clock", clock_id)
        clock["deleted"] = True
        for customer in self.all("customer"):
            if customer["test_clock"] == clock_id:
                customer["deleted"] = True
        return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}

    def list_test_clocks(self, params: Obj) -> Obj:
        items = [c for c in self.all("test_helpers.test_clock") if not c.get("deleted")]
        return self.paginate(items, "/v1/test_helpers/test_clocks", params)

    # ================================================================ events
    def list_events(self, params: Obj) -> Obj:
        items = self.all("event")
        kind = get_str(params, "type")
        kinds = [str(k) for k in get_list(params, "types")]
        if kind and kinds:
            raise invalid("You cannot specify both `type` and `types`.", param="types")
        wanted = kinds or ([kind] if kind else [])
        if wanted:
            items = [e for e in items if any(_type_matches(e["type"], w) for w in wanted)]
        return self.paginate(items, "/v1/events", params, render=False)

    # ===================================================== webhook endpoints
    def create_webhook_endpoint(self, params: Obj) -> Obj:
        events = [str(e) for e in get_list(params, "enabled_events")]
        if not events:
            raise param_missing("enabled_events")
        endpoint = fixtures.base(
            "webhook_endpoint",
            id=fixtures.new_id("we_"),
            api_version=get_str(params, "api_version"),
            created=self.now(),
            description=get_str(params, "description"),
            enabled_events=events,
            metadata=merge_metadata({}, params.get("metadata")),
            url=req_str(params, "url"),
            secret="whsec_" + secrets.token_hex(16),
        )
        return self.add(endpoint)

    def list_webhook_endpoints(self, params: Obj) -> Obj:
        items = [e for e in self.all("webhook_endpoint") if not e.get("deleted")]
        rendered = self.paginate(items, "/v1/webhook_endpoints", params)
        for endpoint in rendered["data"]:
            endpoint.pop("secret", None)  # only returned on creation, as Stripe does
        return rendered


def _type_matches(event_type: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern
