"""Checkout Sessions (+ the completion test helper), the setup intents they create, and billing portal sessions."""

from __future__ import annotations

import secrets
from decimal import Decimal

from .. import fixtures
from ..errors import ApiError, invalid, param_missing
from ..params import (
    ANY,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from ..routes import ID, Route, helper, stripe
from ..store import Obj, Store
from .customers import Customers
from .payment_intents import PaymentIntents
from .payment_methods import PaymentMethods
from .products_prices import Catalog
from .subscriptions import Subscriptions

_DAY = 86_400


class Checkout:
    def __init__(
        self,
        store: Store,
        customers: Customers,
        catalog: Catalog,
        payment_methods: PaymentMethods,
        payment_intents: PaymentIntents,
        subscriptions: Subscriptions,
    ) -> None:
        self.store = store
        self.customers = customers
        self.catalog = catalog
        self.payment_methods = payment_methods
        self.payment_intents = payment_intents
        self.subscriptions = subscriptions
        self.checkout_items: dict[str, list[Obj]] = {}  # session -> its line items
        store.renderers["checkout.session"] = self._render_checkout_session
        store.includable[("checkout.session", "line_items")] = self._session_line_items

    def create_checkout_session(self, params: Obj) -> Obj:
        mode = get_enum(params, "mode", ("payment", "setup", "subscription"))
        if mode is None:
            raise param_missing("mode")
        customer_id = get_str(params, "customer")
        if customer_id:
            self.store.get("customer", customer_id, param="customer")
        items = self._checkout_items(params, mode)
        currency = get_str(params, "currency")
        if items:
            currency = items[0]["currency"]
        elif mode != "setup":
            raise param_missing("line_items")
        elif currency is None:
            raise param_missing("currency")
        now = self.store.now(customer_id)
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
            url=f"{self.store.base_url}/checkout/{session_id}",
            managed_payments=None,
        )
        self.checkout_items[session_id] = items
        # Kept for completion; Stripe stores these too (they are not echoed on the session object).
        session["_subscription_data"] = get_dict(params, "subscription_data")
        session["_payment_intent_data"] = get_dict(params, "payment_intent_data")
        session["_setup_intent_data"] = get_dict(params, "setup_intent_data")
        self.store.add(session)
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
                price = self.store.get("price", str(raw["price"]), param=f"{where}[price]")
            elif raw.get("price_data"):
                data = get_dict(raw, "price_data")
                product_data = get_dict(data, "product_data")
                if "product" in data:
                    product_id = str(data["product"])
                elif product_data:
                    product_id = self.catalog.create_product(product_data)["id"]
                else:
                    raise param_missing(f"{where}[price_data][product_data]")
                price = self.catalog.new_price(
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
            amount = int(Decimal(price["unit_amount_decimal"]) * quantity)
            items.append(
                fixtures.base(
                    "item",
                    id=fixtures.new_id("li_"),
                    amount_discount=0,
                    amount_subtotal=amount,
                    amount_tax=0,
                    amount_total=amount,
                    currency=price["currency"],
                    description=self.catalog.product_name(price),
                    price=price["id"],
                    quantity=quantity,
                )
            )
        return items

    def _session_line_items(self, session: Obj) -> Obj:
        items = []
        for item in self.checkout_items.get(session["id"], []):
            rendered = dict(item)
            rendered["price"] = self.store.render(self.store.objects[item["price"]])
            items.append(rendered)
        return self.store.list_object(items, f"/v1/checkout/sessions/{session['id']}/line_items")

    def list_checkout_line_items(self, params: Obj, session_id: str) -> Obj:
        session = self.store.get("checkout.session", session_id)
        return self._session_line_items(session)

    def list_checkout_sessions(self, params: Obj) -> Obj:
        items = self.store.all("checkout.session")
        for name in ("customer", "subscription", "payment_intent", "status"):
            value = get_str(params, name)
            if value:
                items = [s for s in items if s[name] == value]
        return self.store.paginate(items, "/v1/checkout/sessions", params)

    def expire_checkout_session(self, params: Obj, session_id: str) -> Obj:
        session = self.store.get("checkout.session", session_id)
        if session["status"] != "open":
            raise invalid(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a '
                f'status of "{session["status"]}".',
                code="checkout_session_not_open",
            )
        session["status"] = "expired"
        self.store.emit("checkout.session.expired", session)
        return session

    def complete_checkout_session(self, params: Obj, session_id: str) -> Obj:
        """Test helper: the customer pays on the hosted page with `payment_method` (default pm_card_visa)."""
        session = self.store.get("checkout.session", session_id)
        if session["status"] != "open":
            raise invalid(f"This Checkout Session is {session['status']}; only open sessions can be completed.")
        token = get_str(params, "payment_method", "pm_card_visa") or "pm_card_visa"
        card = self.payment_methods.declines(token)
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
            customer_id = self.customers.create_customer({"email": email})["id"]
            session["customer"] = customer_id
        customer = self.store.objects[customer_id]
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
            sub = self.subscriptions.start_subscription(
                customer,
                [{"price": i["price"], "quantity": str(i["quantity"] or "")} for i in self.checkout_items[session_id]],
                default_payment_method=pm["id"],
                metadata=merge_metadata({}, sub_data.get("metadata")),
                payment_behavior="allow_incomplete",
                billing_mode=self.subscriptions.parse_billing_mode(
                    sub_data, "subscription_data[billing_mode]", self.store.now(customer_id)
                ),
            )
            invoice = self.store.objects[sub["latest_invoice"]]
            session.update(
                subscription=sub["id"],
                invoice=invoice["id"],
                payment_status="paid" if invoice["amount_paid"] > 0 else "no_payment_required",
            )
        elif session["mode"] == "payment":
            pm = self.payment_methods.resolve(token)
            pi_data = session["_payment_intent_data"]
            pi = self.payment_intents.new_payment_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                customer=customer_id,
                description=get_str(pi_data, "description"),
                metadata=merge_metadata({}, pi_data.get("metadata")),
                payment_method=pm["id"],
                setup_future_usage=get_str(pi_data, "setup_future_usage"),
            )
            self.payment_intents.confirm(pi, pm)
            session.update(payment_intent=pi["id"], payment_status="paid")
        else:
            pm = self._attach_as_default(customer, token)
            seti = self._succeeded_setup_intent(customer_id, pm, session["_setup_intent_data"])
            session["setup_intent"] = seti["id"]
        session["status"] = "complete"
        self.store.emit("checkout.session.completed", session)
        return session

    def _attach_as_default(self, customer: Obj, token: str) -> Obj:
        pm = self.payment_methods.resolve(token, customer=customer["id"])
        before = self.store.render(customer)
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
        self.store.emit("customer.updated", customer, self.store.diff(before, self.store.render(customer)))
        return pm

    def _succeeded_setup_intent(self, customer_id: str, pm: Obj, data: Obj) -> Obj:
        seti_id = fixtures.new_id("seti_")
        seti = fixtures.base(
            "setup_intent",
            id=seti_id,
            automatic_payment_methods=None,
            client_secret=f"{seti_id}_secret_{fixtures.new_id('', 32)}",
            created=self.store.now(customer_id),
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
        self.store.add(seti)
        self.store.emit("setup_intent.created", seti)
        self.store.emit("setup_intent.succeeded", seti)
        return seti

    def create_portal_session(self, params: Obj) -> Obj:
        customer_id = req_str(params, "customer")
        self.store.get("customer", customer_id, param="customer")
        session_id = fixtures.new_id("bps_")
        session = fixtures.base(
            "billing_portal.session",
            id=session_id,
            configuration=fixtures.new_id("bpc_"),
            created=self.store.now(customer_id),
            customer=customer_id,
            flow=None,
            return_url=get_str(params, "return_url"),
            url=f"{self.store.base_url}/billing_portal/{session_id}",
        )
        self.store.add(session)
        self.store.emit("billing_portal.session.created", session)
        return session

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/checkout/sessions", self.create_checkout_session),
            stripe("GET", "/v1/checkout/sessions", self.list_checkout_sessions),
            stripe("GET", f"/v1/checkout/sessions/{ID}", lambda p, i: self.store.get("checkout.session", i)),
            stripe("GET", f"/v1/checkout/sessions/{ID}/line_items", self.list_checkout_line_items),
            stripe("POST", f"/v1/checkout/sessions/{ID}/expire", self.expire_checkout_session),
            helper(
                "POST",
                f"/_emulator/checkout/sessions/{ID}/complete",
                {"payment_method": ANY},
                self.complete_checkout_session,
            ),
            stripe("GET", f"/v1/setup_intents/{ID}", lambda p, i: self.store.get("setup_intent", i)),
            stripe("POST", "/v1/billing_portal/sessions", self.create_portal_session),
        ]
