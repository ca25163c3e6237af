"""Composition root of the API function: settings validated and collaborators built once per
cold start, on first use (so importing the handler stays cheap)."""

from __future__ import annotations

from functools import cache

from shared.catalog import plan_catalog
from shared.clock import SystemClock
from shared.dynamo import dynamodb_resource
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.settings import ApiSettings


@cache
def settings() -> ApiSettings:
    return ApiSettings()  # fields come from the environment


@cache
def org_service() -> OrgService:
    table = dynamodb_resource().Table(settings().table_name)
    return OrgService(OrgRepository(table), plan_catalog(), SystemClock())
