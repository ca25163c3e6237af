"""The catalog: products and prices."""

from __future__ import annotations

from decimal import Decimal

from .. import fixtures
from ..errors import invalid, param_missing
from ..params import (
    get_bool,
    get_decimal,
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

# Production never bills through billing meters (usage becomes invoice items), so they are not emulated.
_NO_METERED_PRICES = (
    "Stripe emulator: metered prices (recurring[usage_type]=metered, billing meters) are not emulated; "
    "bill usage with invoice items."
)


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_product(self, params: Obj) -> Obj:
        now = self.store.now()
        product = fixtures.base(
            "product",
            id=get_str(params, "id") or fixtures.new_id("prod_", 14),
            name=req_str(params, "name"),
            active=get_bool(params, "active", True),
            description=get_str(params, "description"),
            metadata=merge_metadata({}, params.get("metadata")),
            created=now,
            updated=now,
            default_price=None,
            package_dimensions=None,
            unit_label=get_str(params, "unit_label"),
            statement_descriptor=None,
        )
        if product["id"] in self.store.objects:
            raise invalid(f"Product already exists with ID {product['id']}", param="id", code="resource_already_exists")
        self.store.add(product)
        self.store.emit("product.created", product)
        return product

    def update_product(self, params: Obj, product_id: str) -> Obj:
        product = self.store.get("product", product_id)
        before = self.store.render(product)
        for field in ("name", "description"):
            if field in params:
                product[field] = params[field] or None
        active = get_bool(params, "active")
        if active is not None:
            product["active"] = active
        if "default_price" in params:
            product["default_price"] = params["default_price"] or None
        product["metadata"] = merge_metadata(product["metadata"], params.get("metadata"))
        product["updated"] = self.store.now()
        self.store.emit("product.updated", product, self.store.diff(before, self.store.render(product)))
        return product

    def list_products(self, params: Obj) -> Obj:
        items = self.store.all("product")
        active = get_bool(params, "active")
        if active is not None:
            items = [p for p in items if p["active"] == active]
        ids = get_list(params, "ids")
        if ids:
            items = [p for p in items if p["id"] in ids]
        return self.store.paginate(items, "/v1/products", params)

    def create_price(self, params: Obj) -> Obj:
        currency = req_str(params, "currency").lower()
        product_id = get_str(params, "product")
        product_data = get_dict(params, "product_data")
        if product_id:
            self.store.get("product", product_id, param="product")
        elif product_data:
            product_id = self.create_product({"name": product_data.get("name", ""), **product_data})["id"]
        else:
            raise param_missing("product")
        return self.new_price(params, currency, product_id)

    def new_price(self, params: Obj, currency: str, product_id: str) -> Obj:
        unit_amount = get_int(params, "unit_amount")
        unit_decimal = get_decimal(params, "unit_amount_decimal")
        if unit_amount is None and unit_decimal is None:
            raise param_missing("unit_amount")
        if unit_decimal is None:
            unit_decimal = Decimal(unit_amount or 0)
        elif unit_decimal == unit_decimal.to_integral_value():
            unit_amount = int(unit_decimal)
        recurring_params = get_dict(params, "recurring")
        recurring = None
        if recurring_params:
            usage_type = get_enum(recurring_params, "usage_type", ("licensed", "metered"), "licensed")
            if usage_type == "metered" or recurring_params.get("meter"):
                raise invalid(_NO_METERED_PRICES, param="recurring[usage_type]")
            recurring = {
                "interval": get_enum(recurring_params, "interval", ("day", "week", "month", "year")),
                "interval_count": get_int(recurring_params, "interval_count", 1),
                "meter": None,
                "usage_type": "licensed",
                "trial_period_days": None,
            }
            if recurring["interval"] is None:
                raise param_missing("recurring[interval]")
        lookup_key = get_str(params, "lookup_key")
        if lookup_key:
            holders = [p for p in self.store.all("price") if p["lookup_key"] == lookup_key]
            if holders and not get_bool(params, "transfer_lookup_key", False):
                raise invalid(
                    f"A price (`{holders[0]['id']}`) already uses that lookup key.",
                    param="lookup_key",
                    code="lookup_key_already_exists",
                )
            for holder in holders:
                holder["lookup_key"] = None
        price = fixtures.base(
            "price",
            id=fixtures.new_id("price_"),
            active=get_bool(params, "active", True),
            created=self.store.now(),
            currency=currency,
            custom_unit_amount=None,
            lookup_key=lookup_key,
            metadata=merge_metadata({}, params.get("metadata")),
            nickname=get_str(params, "nickname"),
            product=product_id,
            recurring=recurring,
            transform_quantity=None,
            type="recurring" if recurring else "one_time",
            unit_amount=unit_amount if unit_decimal == unit_decimal.to_integral_value() else None,
            unit_amount_decimal=f"{unit_decimal.normalize():f}",
        )
        self.store.add(price)
        self.store.emit("price.created", price)
        return price

    def update_price(self, params: Obj, price_id: str) -> Obj:
        price = self.store.get("price", price_id)
        before = self.store.render(price)
        active = get_bool(params, "active")
        if active is not None:
            price["active"] = active
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        if "lookup_key" in params:
            key = params["lookup_key"] or None
            holders = [p for p in self.store.all("price") if key and p["lookup_key"] == key and p is not price]
            if holders and not get_bool(params, "transfer_lookup_key", False):
                raise invalid("A price already uses that lookup key.", param="lookup_key")
            for holder in holders:
                holder["lookup_key"] = None
            price["lookup_key"] = key
        price["metadata"] = merge_metadata(price["metadata"], params.get("metadata"))
        self.store.emit("price.updated", price, self.store.diff(before, self.store.render(price)))
        return price

    def list_prices(self, params: Obj) -> Obj:
        items = self.store.all("price")
        active = get_bool(params, "active")
        if active is not None:
            items = [p for p in items if p["active"] == active]
        for field in ("product", "currency", "type"):
            value = get_str(params, field)
            if value:
                items = [p for p in items if p[field] == value]
        keys = get_list(params, "lookup_keys")
        if keys:
            items = [p for p in items if p["lookup_key"] in keys]
        return self.store.paginate(items, "/v1/prices", params)

    def product_name(self, price: Obj) -> str:
        product = self.store.objects.get(price["product"])
        return str(product["name"]) if product else str(price["product"])

    def routes(self) -> list[Route]:
        return [
            stripe("POST", "/v1/products", self.create_product),
            stripe("GET", "/v1/products", self.list_products),
            stripe("GET", f"/v1/products/{ID}", lambda p, i: self.store.get("product", i)),
            stripe("POST", f"/v1/products/{ID}", self.update_product),
            stripe("POST", "/v1/prices", self.create_price),
            stripe("GET", "/v1/prices", self.list_prices),
            stripe("GET", f"/v1/prices/{ID}", lambda p, i: self.store.get("price", i)),
            stripe("POST", f"/v1/prices/{ID}", self.update_price),
        ]
