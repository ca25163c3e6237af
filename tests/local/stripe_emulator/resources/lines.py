"""Invoice lines before they are stored (`LineSpec`) and subscription item changes (`ItemPlan`): shared
by invoices, subscriptions and previews, so a preview and the real invoice come from the same arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..store import Obj

TIMES = "\u00d7"  # Stripe writes "2 <multiplication sign> Pro"


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
    unit_amount_decimal: str | None = None  # an item's own unit price (no price): quantity x it = amount


def unit_decimal(price: Obj) -> Decimal:
    return Decimal(price["unit_amount_decimal"])
