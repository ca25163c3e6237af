"""The agency ad-spend wallet: balance and runway, transactions, settings, top-ups, support refunds."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OrgId, RequiredKey, caller_of
from functions.api.schemas import BudgetOut, HttpUrl
from functions.limits import (
    ID_PATTERN,
    KEY_PATTERN,
    MAX_MINOR,
    TOP_UP_MAX_MINOR,
    TOP_UP_MIN_MINOR,
    Reason,
    StripeId,
)
from shared.wallet.models import AutoTopUp
from shared.wallet.platforms import PLATFORMS
from shared.wallet.runway import MAX_STAGE_DAYS, MAX_STAGES, RESTORE_DAYS, valid_stages
from shared.wallet.service import WalletSettings, WalletView

router = Router()
PlatformPath = Annotated[str, Path(pattern=ID_PATTERN)]
BillPath = Annotated[str, Path(pattern=KEY_PATTERN)]


class AutoTopUpOut(BaseModel):
    enabled: bool
    threshold_minor: int
    amount_minor: int
    daily_cap_minor: int
    in_flight: bool
    failures: int


class FundingSuggestionOut(BaseModel):
    amount_minor: int = Field(
        description="ceil(what 7 days spend - (balance - unbilled + pending)): 7 days of the background rate "
        "plus what each open hold spends in them (at most its remainder)"
    )
    method: Literal["ach", "card"] = Field(description="ach when the org has topped up by ACH (it takes days)")
    restores_days: int


class WalletOut(BaseModel):
    org_id: str
    currency: str
    balance_minor: int = Field(description="Posted money; below zero when bills exceeded it")
    pending_minor: int = Field(description="ACH / wire top-ups on their way")
    held_minor: int = Field(description="Reserved by active holds")
    floor_minor: int
    available_minor: int = Field(description="balance - held - floor: what new holds may take")
    status: str = Field(description="active | low | paused")
    low_threshold_minor: int
    runway_tenths: int | None = Field(
        description="Runway in tenths of a day (an int: runway is not money, and no float is shown), rounded "
        "down: when the funds (balance - unbilled spend + pending; held money counted once) are spent by the "
        "background rate (the last 7 complete days' bills and fees that drew on no hold) plus each open hold "
        "spending its remainder over the time it has left (at least a day); null when the money is never "
        "used up"
    )
    runway_days: int | None = Field(description="The runway in whole days (runway_tenths // 10)")
    unbilled_spend_minor: int = Field(
        description="Spend the ad platforms reported over the last 7 days that no bill covers yet"
    )
    avg_daily_spend_minor: int = Field(
        description="The background rate: the last 7 complete UTC days' bills and fees, less what bills took "
        "from holds, / 7, rounded up"
    )
    daily_rate_minor: int = Field(
        description="What is spent a day now: that rate plus what the open holds spend a day, rounded up"
    )
    runway_alert_days: list[int] = Field(description="The alert stages (days of runway), highest first")
    next_alert_days: int | None = Field(description="The stage that alerts next (null: all alerted)")
    funding_suggestion: FundingSuggestionOut | None = Field(
        description="The top-up that restores 7 days of runway (null: the runway is 7 days or more)"
    )
    auto_top_up: AutoTopUpOut
    project_budgets: list[BudgetOut] = Field(
        default_factory=list, description="The budgets of the projects that have one, this period"
    )


class WalletSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low_threshold_minor: int = Field(strict=True, ge=0, le=MAX_MINOR)
    floor_minor: int = Field(default=0, ge=0, le=MAX_MINOR, strict=True)
    auto_top_up_enabled: bool = False
    auto_top_up_threshold_minor: int = Field(default=0, ge=0, le=MAX_MINOR, strict=True)
    auto_top_up_amount_minor: int = Field(default=0, ge=0, le=MAX_MINOR, strict=True)
    auto_top_up_daily_cap_minor: int = Field(default=0, ge=0, le=MAX_MINOR, strict=True)
    runway_alert_days: list[Annotated[int, Field(strict=True)]] | None = Field(
        default=None,
        description=f"Days of runway to alert at: 1 to {MAX_STAGES} distinct days, 1 to {MAX_STAGE_DAYS} "
        "(default 14, 7, 3, 1); left out: unchanged",
    )

    @model_validator(mode="after")
    def _auto(self) -> WalletSettingsRequest:
        if self.auto_top_up_enabled and not (0 < self.auto_top_up_amount_minor <= self.auto_top_up_daily_cap_minor):
            raise ValueError("auto-top-up needs an amount > 0 and a daily cap of at least that amount")
        if self.runway_alert_days is not None:
            valid_stages(self.runway_alert_days)
        return self


class TopUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: int = Field(strict=True, ge=TOP_UP_MIN_MINOR, le=TOP_UP_MAX_MINOR)
    method: Literal["card", "ach", "wire"]
    payment_method_id: StripeId | None = Field(
        default=None, description="ACH: the saved bank account (us_bank_account payment method)"
    )
    return_url: HttpUrl | None = None


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: int = Field(strict=True, gt=0, le=MAX_MINOR)
    reason: Reason


class EntryOut(BaseModel):
    seq: int
    kind: str
    amount_minor: int
    balance_after_minor: int
    currency: str
    project_id: str | None
    platform: str | None
    ref: str | None
    actor: str | None
    created_at: str


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


def _wallet_out(view: WalletView) -> WalletOut:
    a, auto, reading = view.account, view.auto, view.runway
    runway, suggestion = reading.runway, reading.suggestion
    return WalletOut(
        org_id=view.org.org_id,
        currency=a.currency,
        balance_minor=a.balance,
        pending_minor=a.pending,
        held_minor=a.held,
        floor_minor=a.floor,
        available_minor=a.available,
        status=a.status.value,
        low_threshold_minor=a.low_threshold,
        runway_tenths=runway.tenths,
        runway_days=None if runway.tenths is None else runway.tenths // 10,
        unbilled_spend_minor=reading.unbilled_minor,
        avg_daily_spend_minor=math.ceil(runway.spend_rate),
        daily_rate_minor=runway.daily_rate_minor,
        runway_alert_days=list(reading.stages),
        next_alert_days=runway.next_stage,
        funding_suggestion=None
        if suggestion is None
        else FundingSuggestionOut(
            amount_minor=suggestion.amount_minor, method=suggestion.method, restores_days=RESTORE_DAYS
        ),
        auto_top_up=AutoTopUpOut(
            enabled=auto.enabled,
            threshold_minor=auto.threshold_minor,
            amount_minor=auto.amount_minor,
            daily_cap_minor=auto.daily_cap_minor,
            in_flight=bool(auto.in_flight),
            failures=auto.failures,
        ),
        project_budgets=[BudgetOut.of(b) for b in view.budgets],
    )


@router.get("/v1/orgs/<org_id>/wallet", tags=["wallet"], summary="Balance, pending, held, available, runway")
def get_wallet(org_id: OrgId) -> WalletOut:
    return _wallet_out(services().wallet.view(caller_of(router), org_id))


@router.get("/v1/orgs/<org_id>/wallet/transactions", tags=["wallet"], summary="Wallet ledger, newest first")
def wallet_transactions(
    org_id: OrgId,
    cursor: Cursor = None,
    limit: Limit = 50,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    project_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    platform: Annotated[str | None, Query(pattern="^(" + "|".join(PLATFORMS) + ")$")] = None,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="exclusive")] = None,
) -> EntryPage:
    filters = {
        "kind": kind,
        "project_id": project_id,
        "platform": platform,
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
    }
    page = services().wallet.transactions(caller_of(router), org_id, filters, cursor, limit)
    return EntryPage(
        items=[
            EntryOut(
                seq=e.seq,
                kind=e.kind,
                amount_minor=e.amount,
                balance_after_minor=e.balance_after,
                currency=e.fields["currency"],
                project_id=e.fields.get("project_id"),
                platform=e.fields.get("platform"),
                ref=e.fields.get("ref"),
                actor=e.fields.get("actor"),
                created_at=e.created_at,
            )
            for e in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.put("/v1/orgs/<org_id>/wallet/settings", tags=["wallet"], summary="Low-balance threshold, floor, auto-top-up")
def wallet_settings(org_id: OrgId, body: WalletSettingsRequest) -> WalletOut:
    auto = AutoTopUp(
        enabled=body.auto_top_up_enabled,
        threshold_minor=body.auto_top_up_threshold_minor,
        amount_minor=body.auto_top_up_amount_minor,
        daily_cap_minor=body.auto_top_up_daily_cap_minor,
    )
    stages = tuple(body.runway_alert_days) if body.runway_alert_days is not None else None
    settings = WalletSettings(body.low_threshold_minor, body.floor_minor, auto, stages)
    view = services().wallet.configure(caller_of(router), org_id, settings)
    return _wallet_out(view)


@router.post(
    "/v1/orgs/<org_id>/wallet/top-ups",
    tags=["wallet"],
    status_code=202,
    summary="Top up by card, ACH or wire (credited when the money arrives)",
)
def top_up(org_id: OrgId, body: TopUpRequest, idempotency_key: RequiredKey) -> dict[str, Any]:
    record = services().wallet.top_up(
        caller_of(router),
        org_id,
        amount_minor=body.amount_minor,
        method=body.method,
        idempotency_key=idempotency_key,
        return_url=body.return_url,
        payment_method=body.payment_method_id,
    )
    shown = ("topup_id", "method", "amount_minor", "currency", "status", "checkout_url", "payment_intent_id")
    out = {k: getattr(record, k) for k in shown if getattr(record, k) is not None}
    return out | ({"instructions": dict(record.instructions)} if record.instructions else {})


@router.post(
    "/v1/orgs/<org_id>/wallet/refunds",
    tags=["wallet"],
    status_code=201,
    summary="Support: refund wallet money to the original card payments",
)
def refund(org_id: OrgId, body: RefundRequest, idempotency_key: RequiredKey) -> dict[str, Any]:
    result = services().wallet.refund(
        caller_of(router), org_id, amount_minor=body.amount_minor, reason=body.reason, idempotency_key=idempotency_key
    )
    return {"amount_minor": result.amount_minor, "allocations": [asdict(a) for a in result.allocations]}


class BillReversalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class BillReversalOut(BaseModel):
    bill_id: str
    platform: str
    amount_minor: int  # what came back to the wallet, negative
    fee_minor: int
    replayed: bool


@router.post(
    "/v1/orgs/<org_id>/wallet/bills/<platform>/<bill_id>/reversal",
    tags=["wallet"],
    summary="Support: take back a recorded platform bill (its spend and fee return to the wallet), once",
)
def reverse_bill(
    org_id: OrgId, platform: PlatformPath, bill_id: BillPath, body: BillReversalRequest
) -> BillReversalOut:
    result = services().credit_notes.reverse_bill_for(caller_of(router), org_id, platform, bill_id, body.reason)
    return BillReversalOut(**asdict(result))
