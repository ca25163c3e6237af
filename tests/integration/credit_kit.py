"""In-process credit services on DynamoDB Local with a clock the test moves (for periods and expiry)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from shared.billing.subscriptions import SubscriptionMirror
from shared.budgets.service import BudgetService
from shared.credits.repository import CreditRepository
from shared.credits.service import CreditService
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.settings import ApiSettings
from shared.usage.service import UsageService
from shared.wiring import build_services


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
    mirror: SubscriptionMirror
    budgets: BudgetService


def credit_kit(table_name: str, bus_name: str, now: datetime, table: Any | None = None) -> CreditKit:
    """Fresh services with their own boto3 session (safe to use one per thread), built by the functions'
    own wiring with a clock the test moves."""
    session = boto3.Session()
    table = table if table is not None else session.resource("dynamodb").Table(table_name)
    clock = ManualClock(now)
    settings = ApiSettings(
        table_name=table_name, notifications_topic_arn="", event_bus_name=bus_name, documents_bucket=""
    )
    services = build_services(settings, clock=clock, table=table)
    # the services' own repositories: tests patch them to interleave a change
    repos = services.credits._org_repo, services.credits._repo
    return CreditKit(
        clock, services.orgs, *repos, services.credits, services.usage, services.subscriptions._mirror, services.budgets
    )
