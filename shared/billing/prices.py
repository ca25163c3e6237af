"""Our catalog mapped to Stripe prices by lookup key: `layers:<catalog>:<plan>:<currency>:<kind>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.catalog import Plan, PlanCatalog
from shared.stripe_gateway import StripeGateway

PriceKind = Literal["base", "seat"]


@dataclass(frozen=True)
class PriceRef:
    catalog_version: str
    plan_id: str
    currency: str
    kind: PriceKind

    @property
    def lookup_key(self) -> str:
        return f"layers:{self.catalog_version}:{self.plan_id}:{self.currency}:{self.kind}"

    @classmethod
    def parse(cls, lookup_key: str | None) -> PriceRef | None:
        parts = (lookup_key or "").split(":")
        if len(parts) != 5 or parts[0] != "layers" or parts[4] not in ("base", "seat"):
            return None
        kind: PriceKind = "base" if parts[4] == "base" else "seat"
        return cls(parts[1], parts[2], parts[3], kind)


class StripePrices:
    def __init__(self, gateway: StripeGateway, plans: PlanCatalog):
        self._gateway = gateway
        self._plans = plans

    def price_id(self, plan: Plan, currency: str, kind: PriceKind) -> str:
        """The Stripe price for a plan's base fee or extra seat (created once, found by lookup key)."""
        book = plan.price_book(currency)
        amount = book.base_minor if kind == "base" else book.extra_seat_minor
        if amount is None:
            raise ValueError(f"{plan.plan_id} sells no {kind} in {currency}")
        ref = PriceRef(self._plans.catalog_version, plan.plan_id, currency, kind)
        name = f"Layers {plan.name}" + (" - extra seat" if kind == "seat" else "")
        return self._gateway.price_id(
            ref.lookup_key,
            product_name=name,
            unit_amount_minor=amount,
            currency=currency,
            metadata={"plan_id": plan.plan_id, "kind": kind},
        )
