"""Composition root of the API function: settings validated and collaborators built once per
cold start, on first use (so importing the handler stays cheap)."""

from __future__ import annotations

from functools import cache

from shared.billing.contracts import PlanRequests
from shared.billing.subscriptions import SubscriptionService
from shared.orgs.service import OrgService
from shared.settings import ApiSettings
from shared.wiring import Services, build_services


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())  # fields come from the environment


def org_service() -> OrgService:
    return services().orgs


def subscription_service() -> SubscriptionService:
    return services().subscriptions


def plan_requests() -> PlanRequests:
    return services().plan_requests
