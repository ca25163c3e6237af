"""In-process wallet services on DynamoDB Local and the Stripe emulator (one per thread if needed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from shared.auth import Caller
from shared.billing.subscriptions import SubscriptionMirror
from shared.orgs.models import BillingMode
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.settings import ApiSettings
from shared.stripe_gateway import StripeGateway
from shared.wallet.models import AutoTopUp
from shared.wallet.repository import WalletRepository
from shared.wallet.service import WalletService, WalletSettings
from shared.wiring import Services, build_services
from tests.helpers import new_user
from tests.integration.credit_kit import ManualClock
from tests.paid import mirror_subscription


@dataclass
class WalletKit:
    clock: ManualClock
    orgs: OrgService
    org_repo: OrgRepository
    repo: WalletRepository
    wallet: WalletService
    gateway: StripeGateway
    mirror: SubscriptionMirror
    services: Services


def wallet_kit(stack: Any, now: datetime, table: Any | None = None) -> WalletKit:
    """Wallet services built by the functions' own wiring, with a clock the test moves (on `table`, e.g. a
    PerThreadTable as the sweeper's, or their own session's)."""
    session = boto3.Session()
    table = table if table is not None else session.resource("dynamodb").Table(stack.env["TABLE_NAME"])
    clock = ManualClock(now)
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    services = build_services(
        ApiSettings.model_validate(_settings(stack.env)), clock=clock, table=table, gateway=gateway
    )
    # the services' own repositories: tests patch them to interleave a change
    repos = services.wallet._org_repo, services.wallet._repo
    return WalletKit(clock, services.orgs, *repos, services.wallet, gateway, services.subscriptions._mirror, services)


def _settings(env: dict[str, str]) -> dict[str, str]:
    return {name: env[name.upper()] for name in ApiSettings.model_fields if name.upper() in env}


def agency_org(kit: WalletKit, plan_id: str = "pro") -> tuple[str, str, Caller]:
    """An org on Free, subscribed to `plan_id` (as the webhook mirrors it), in agency mode, with a project."""
    owner = Caller(new_user(), f"{new_user()}@example.com", frozenset())
    view = kit.orgs.create_org(owner, name="Agency", billing_mode=BillingMode.BYO, currency="USD", plan_id="free")
    org_id = view.org.org_id
    mirror_subscription(kit.mirror, org_id, plan_id, start=kit.clock.now())
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    project = kit.orgs.create_project(owner, org_id, name="Launch")
    return org_id, project.project_id, owner


def fund(kit: WalletKit, org_id: str, amount: int, ref: str) -> None:
    """A credited top-up, as the webhook applies one (no Stripe charge behind it)."""
    kit.wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{ref}", payment_intent_id=f"pi-{ref}", charge_id=None, amount_minor=amount
    )


def raw_item(kit: WalletKit, org_id: str, sk: str) -> dict[str, Any] | None:
    """A stored item as DynamoDB holds it (tests look at storage: GSI entries, markers)."""
    got = kit.repo._table.get_item(Key={"PK": f"ORG#{org_id}", "SK": sk}, ConsistentRead=True).get("Item")
    return dict(got) if got else None


def ledger_lines(table: Any, org_id: str, prefix: str = "WLEDGER#") -> list[dict[str, Any]]:
    """Every ledger line of the org, oldest first, read from storage: each entry item's lines with the
    entry's own fields (ref, actor, idempotency key ...)."""
    from tests.helpers import org_items

    entries = sorted((i for i in org_items(table, org_id) if i["SK"].startswith(prefix)), key=lambda i: i["SK"])
    lines = []
    for entry in entries:
        common = {k: v for k, v in entry.items() if k not in ("lines", "kinds")}
        lines += [{**common, **line} for line in entry["lines"]]
    return lines


def wallet_settings(low_threshold_minor: int = 0, floor_minor: int = 0, **auto: Any) -> WalletSettings:
    """Settings as the API sends them; auto-top-up fields by their AutoTopUp names (none: left as they are)."""
    return WalletSettings(low_threshold_minor, floor_minor, AutoTopUp(**auto) if auto else None)
