"""The plan and layer-template catalogs: versioned data files in this folder, validated on load."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import InvalidRequestError, NotFoundError

_HERE = Path(__file__).parent


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Allowances(_Frozen):
    workflow_runs: int = Field(ge=0)
    sdk_events: int = Field(ge=0)
    media_storage_gb: int = Field(ge=0)


class PriceBook(_Frozen):
    """A plan's prices in one currency. None = not sold (no extra seats / no overage: hard stop)."""

    base_minor: int = Field(ge=0)
    extra_seat_minor: int | None = Field(ge=0)
    credit_overage_unit_minor: Decimal | None = Field(ge=0)
    workflow_run_overage_unit_minor: Decimal | None = Field(ge=0)
    sdk_event_overage_unit_minor: Decimal | None = Field(ge=0)
    media_storage_gb_overage_unit_minor: Decimal | None = Field(ge=0)


class Plan(_Frozen):
    plan_id: str
    name: str
    public: bool
    custom: bool = False
    agency_mode_allowed: bool
    included_seats: int | None = Field(ge=1)  # None = unlimited
    max_active_projects: int | None = Field(ge=1)  # None = unlimited
    included_credits: int = Field(ge=0)
    allowances: Allowances
    prices: dict[str, PriceBook]
    platform_fee_bps: int | None = Field(ge=0, le=10_000)

    def price_book(self, currency: str) -> PriceBook:
        try:
            return self.prices[currency]
        except KeyError:
            raise InvalidRequestError(
                f"Plan {self.name} is not sold in {currency}.", code="unsupported_currency"
            ) from None

    def seat_limit(self) -> int | None:
        """Active members allowed, or None when seats are unlimited or extra seats are sold."""
        if self.included_seats is None or any(p.extra_seat_minor is not None for p in self.prices.values()):
            return None
        return self.included_seats


class CreditPack(_Frozen):
    pack_id: str
    name: str
    credits: int = Field(gt=0)
    prices: dict[str, int]  # minor units per currency


class Dunning(_Frozen):
    """What happens when a subscription payment fails. Stripe retries the payment (its retry schedule,
    set in the dashboard) while the subscription is `past_due`; the org keeps its paid plan for
    `grace_days` from the first failure, then the Free limits apply until it pays."""

    grace_days: int = Field(ge=0, le=60)


class PlanCatalog(_Frozen):
    catalog_version: str
    notes: str = ""
    dunning: Dunning = Dunning(grace_days=7)
    plans: tuple[Plan, ...]
    credit_packs: tuple[CreditPack, ...] = ()

    @property
    def free(self) -> Plan:
        """The plan every org has without a paying subscription."""
        return self.get("free")

    def pack(self, pack_id: str) -> CreditPack:
        for pack in self.credit_packs:
            if pack.pack_id == pack_id:
                return pack
        raise InvalidRequestError(f"There is no credit pack '{pack_id}'.", code="unknown_pack")

    def get(self, plan_id: str) -> Plan:
        for plan in self.plans:
            if plan.plan_id == plan_id:
                return plan
        raise InvalidRequestError(f"There is no plan '{plan_id}'.", code="unknown_plan")

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(c for plan in self.plans for c in plan.prices)


class LayerTemplate(_Frozen):
    template_id: str
    name: str
    overrides: dict[str, int]


class TemplateCatalog(_Frozen):
    catalog_version: str
    default_credit_costs: dict[str, int]
    templates: tuple[LayerTemplate, ...]

    def get(self, template_id: str) -> LayerTemplate:
        for template in self.templates:
            if template.template_id == template_id:
                return template
        raise NotFoundError(f"There is no layer template '{template_id}'.", code="template_not_found")

    def credit_costs(self, template: LayerTemplate) -> dict[str, int]:
        """Effective cost per generation type: the template's override wins over the default."""
        return {**self.default_credit_costs, **template.overrides}


@cache
def plan_catalog() -> PlanCatalog:
    return PlanCatalog.model_validate(json.loads((_HERE / "plans.json").read_text()))


@cache
def template_catalog() -> TemplateCatalog:
    return TemplateCatalog.model_validate(json.loads((_HERE / "templates.json").read_text()))
