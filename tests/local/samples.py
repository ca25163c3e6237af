"""The sample events of events/ made runnable on the local stack (tests and `make bench` use them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SAMPLE_OWNER = "user_sample_owner"  # the JWT subject of the samples


def _agency_org_with_project(stack: Any) -> tuple[str, str]:
    """A Pro agency org made as production makes one: created on Free, subscribed to Pro (the webhook's
    mirror of the subscription Stripe would send), switched to agency mode; then a project."""
    from functions.api.container import services
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from tests.paid import mirror_subscription

    built = services()
    orgs, mirror = built.orgs, built.subscriptions._mirror
    owner = Caller(SAMPLE_OWNER, None, frozenset())
    org = orgs.create_org(owner, name="Sample agency", billing_mode=BillingMode.BYO, currency="USD", plan_id="free")
    org_id = org.org.org_id
    mirror_subscription(mirror, org_id, "pro", start=datetime.now(UTC))
    orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    project = orgs.create_project(owner, org_id, name="Sample")
    return org_id, project.project_id


def sample_event(stack: Any, path: Path) -> dict[str, Any]:
    """The sample event, its placeholder agency org and project replaced by real ones (its owner is the
    samples' JWT subject; its wallet is funded), and a Stripe signature that has not expired."""
    text = path.read_text()
    if "org_sample_agency" in text:
        from functions.api.container import services

        org_id, project_id = _agency_org_with_project(stack)
        services().wallet.topup_succeeded(
            org_id=org_id, topup_id=f"tu_{org_id}", payment_intent_id=f"pi_{org_id}", charge_id=None, amount_minor=10**9
        )
        text = text.replace("org_sample_agency", org_id).replace("prj_sample", project_id)
    event: dict[str, Any] = json.loads(text)
    if "stripe-signature" in event.get("headers", {}):
        from tests.integration.test_stripe_webhooks import sign

        event["headers"]["stripe-signature"] = sign(event["body"])  # signatures expire after 300 s
    return event
