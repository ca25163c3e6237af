"""In-process credit services on DynamoDB Local with a clock the test moves (for periods and expiry)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from shared.catalog import plan_catalog, template_catalog
from shared.credits.repository import CreditRepository
from shared.credits.service import CreditService
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.usage.service import UsageService


class ManualClock:
    def __init__(self, now: datetime):
        self.at = now

    def now(self) -> datetime:
        return self.at


@dataclass
class CreditKit:
    clock: ManualClock
    orgs: OrgService
    org_repo: OrgRepository
    repo: CreditRepository
    credits: CreditService
    usage: UsageService


def credit_kit(table_name: str, bus_name: str, now: datetime, table: Any | None = None) -> CreditKit:
    """Fresh services with their own boto3 session (safe to use one per thread)."""
    session = boto3.Session()
    table = table if table is not None else session.resource("dynamodb").Table(table_name)
    clock = ManualClock(now)
    org_repo = OrgRepository(table)
    orgs = OrgService(org_repo, plan_catalog(), clock)
    repo = CreditRepository(table)
    credits = CreditService(orgs, org_repo, repo, plan_catalog(), template_catalog(), clock)
    return CreditKit(clock, orgs, org_repo, repo, credits, UsageService(orgs, org_repo, repo, plan_catalog(), clock))
