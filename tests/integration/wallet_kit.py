"""In-process wallet services on DynamoDB Local and the Stripe emulator (one per thread if needed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from shared.auth import Caller
from shared.catalog import plan_catalog
from shared.orgs.models import BillingMode
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.stripe_gateway import StripeGateway
from shared.wallet.repository import WalletRepository
from shared.wallet.service import WalletService
from tests.helpers import new_user
from tests.integration.credit_kit import ManualClock


@dataclass
class WalletKit:
    clock: ManualClock
    orgs: OrgService
    org_repo: OrgRepository
    repo: WalletRepository
    wallet: WalletService
    gateway: StripeGateway


def wallet_kit(stack: Any, now: datetime) -> WalletKit:
    session = boto3.Session()
    table = session.resource("dynamodb").Table(stack.env["TABLE_NAME"])
    clock = ManualClock(now)
    org_repo = OrgRepository(table)
    orgs = OrgService(org_repo, plan_catalog(), clock)
    repo = WalletRepository(table)
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    wallet = WalletService(orgs, org_repo, repo, gateway, clock)
    return WalletKit(clock, orgs, org_repo, repo, wallet, gateway)


def agency_org(kit: WalletKit, plan_id: str = "pro") -> tuple[str, str, Caller]:
    owner = Caller(new_user(), f"{new_user()}@example.com", frozenset())
    view = kit.orgs.create_org(owner, name="Agency", billing_mode=BillingMode.AGENCY, currency="USD", plan_id=plan_id)
    project = kit.orgs.create_project(owner, view.org.org_id, name="Launch")
    return view.org.org_id, project.project_id, owner


def fund(kit: WalletKit, org_id: str, amount: int, ref: str) -> None:
    """A credited top-up, as the webhook applies one (no Stripe charge behind it)."""
    kit.wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{ref}", payment_intent_id=f"pi-{ref}", charge_id=None, amount_minor=amount
    )
