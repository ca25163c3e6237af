"""Reconciliation on DynamoDB Local and the Stripe emulator, built by the function's own wiring with a
clock the test moves; orgs made the way production makes them (Free, then Checkout, then agency)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe

from shared.reconcile.models import Discrepancy
from shared.reconcile.wiring import Reconciliation, build_reconciliation
from shared.settings import ApiSettings
from shared.stripe_gateway import StripeGateway
from shared.wallet.service import Bill
from tests.helpers import ApiClient, new_user
from tests.integration.credit_kit import ManualClock
from tests.integration.stripe_kit import API_KEY
from tests.paid import paid_org_over_http


@dataclass
class ReconcileKit:
    clock: ManualClock
    recon: Reconciliation
    stripe: stripe.StripeClient
    table: Any

    def reconcile(self, org_id: str, days: int = 40) -> Any:
        """The org over the last `days` days and today."""
        today = self.clock.now().date()
        return self.recon.reconciler.reconcile_org(org_id, today - timedelta(days=days), today + timedelta(days=1))

    def open(self, org_id: str) -> list[Discrepancy]:
        return self.recon.repo.all_of_org(org_id, status="open")

    def all(self, org_id: str) -> list[Discrepancy]:
        return self.recon.repo.all_of_org(org_id)

    def bill(self, org_id: str, project_id: str, amount: int, billed_on: date, bill_id: str | None = None) -> None:
        self.recon.services.wallet.record_bill(
            Bill(org_id, "meta", bill_id or new_user("bill"), project_id, amount, "USD", billed_on, None, "test")
        )

    def balance(self, org_id: str) -> int:
        stored = self.recon.services.wallet._repo.get(org_id)
        assert stored is not None
        return stored.account.balance


def reconcile_kit(stack: Any, table: Any, now: datetime | None = None) -> ReconcileKit:
    clock = ManualClock(now or datetime.now(UTC))
    env = stack.env
    settings = ApiSettings.model_validate({n: env[n.upper()] for n in ApiSettings.model_fields if n.upper() in env})
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=env["STRIPE_API_BASE"])
    recon = build_reconciliation(settings, clock=clock, table=table, gateway=gateway, reads_per_s=1000)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": env["STRIPE_API_BASE"]}, max_network_retries=0)
    return ReconcileKit(clock, recon, client, table)


def agency_with_top_up(api: ApiClient, stack: Any, table: Any, amount: int = 50_000) -> tuple[str, str, str]:
    """A Pro agency org (Checkout: a saved card), a project, and a card top-up credited by its webhook.
    Returns (owner, org id, project id)."""
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Reconciled", plan_id="pro")
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "Launch"})
    assert project.status == 201, project.body
    top_up(api, stack, owner, org_id, amount)
    return owner, org_id, str(project.body["project_id"])


def top_up(api: ApiClient, stack: Any, owner: str, org_id: str, amount: int, method: str = "card") -> dict[str, Any]:
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": new_user("key")},
        json={"amount_minor": amount, "method": method},
    )
    assert reply.status == 202, reply.body
    stack.stripe.wait_for_deliveries()
    return dict(reply.body)
