"""The org's Stripe subscription: checkout, status, plan changes with a proration preview, portal."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.container import org_service, subscription_service
from functions.api.routes.common import OptionalKey, OrgId, caller_of
from functions.api.schemas import (
    CheckoutOut,
    CheckoutRequest,
    PlanChangeOut,
    PlanChangePreviewOut,
    PlanChangeRequest,
    PlanPreviewRequest,
    PortalOut,
    PortalRequest,
    SubscriptionOut,
)

router = Router()


@router.get("/v1/orgs/<org_id>/subscription", tags=["subscription"], summary="Plan, status, seats, period")
def get_subscription(org_id: OrgId) -> SubscriptionOut:
    org = subscription_service().get(caller_of(router), org_id)
    return SubscriptionOut.of(org, org_service().entitlement_of(org))


@router.post(
    "/v1/orgs/<org_id>/subscription/checkout",
    tags=["subscription"],
    status_code=201,
    summary="Start a subscription: a Stripe Checkout Session URL",
)
def start_checkout(org_id: OrgId, body: CheckoutRequest, idempotency_key: OptionalKey = None) -> CheckoutOut:
    attempt = idempotency_key or str(router.current_event.raw_event["requestContext"]["requestId"])
    session_id, url = subscription_service().start_checkout(
        caller_of(router),
        org_id,
        plan_id=body.plan_id,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        attempt=attempt,
    )
    return CheckoutOut(checkout_session_id=session_id, url=url)


@router.post(
    "/v1/orgs/<org_id>/subscription/preview",
    tags=["subscription"],
    summary="Preview a plan change: prorated charge now or refund",
)
def preview_change(org_id: OrgId, body: PlanPreviewRequest) -> PlanChangePreviewOut:
    preview = subscription_service().preview_change(caller_of(router), org_id, plan_id=body.plan_id)
    return PlanChangePreviewOut.of(preview)


@router.put(
    "/v1/orgs/<org_id>/subscription",
    tags=["subscription"],
    summary="Change plan now: upgrades charge the difference, downgrades refund it",
)
def change_plan(org_id: OrgId, body: PlanChangeRequest) -> PlanChangeOut:
    org, preview = subscription_service().change_plan(
        caller_of(router), org_id, plan_id=body.plan_id, proration_date=body.proration_date
    )
    return PlanChangeOut(
        subscription=SubscriptionOut.of(org, org_service().entitlement_of(org)),
        proration=PlanChangePreviewOut.of(preview),
    )


@router.post("/v1/orgs/<org_id>/billing-portal", tags=["subscription"], summary="A Stripe billing portal URL")
def billing_portal(org_id: OrgId, body: PortalRequest) -> PortalOut:
    return PortalOut(url=subscription_service().portal(caller_of(router), org_id, body.return_url))
