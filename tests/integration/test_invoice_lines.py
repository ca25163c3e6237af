"""Every Stripe line (issue 15): Stripe embeds an invoice's first 10 lines; the gateway pages through the
rest, so the monthly invoice's Stripe lines always sum to what Stripe charged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.credits.periods import period_containing
from tests.helpers import ApiClient, invoice_steps, new_user
from tests.integration.stripe_kit import StripeKit

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("count", [11, 10, 23, 101])
def test_an_invoice_of_many_lines_is_read_whole(api: ApiClient, stack: Any, table: Any, count: int) -> None:
    from functions.api.container import services

    kit = StripeKit(stack, table)
    org_id = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Many lines"}).body["org_id"]
    now = int(datetime.now(UTC).timestamp())
    _, customer = kit.customer_on_clock(org_id, now)
    for i in range(count):
        kit.client.v1.invoice_items.create(
            params={"customer": customer, "amount": 100 + i, "currency": "usd", "description": f"Line {i + 1}"}
        )
    draft = kit.client.v1.invoices.create(
        params={"customer": customer, "pending_invoice_items_behavior": "include", "auto_advance": False}
    )
    invoice = kit.client.v1.invoices.finalize_invoice(draft.id)
    assert invoice.lines.has_more is (count > 10)  # what Stripe embeds

    read = services().invoices._gateway.get_invoice(invoice.id)
    assert len(read.lines) == count and len({line.description for line in read.lines}) == count
    assert sum(line.amount_minor for line in read.lines) == invoice.total
    org = kit.repo.require_org(org_id)
    made = services().invoices.assemble(org, period_containing(org, datetime.now(UTC)))
    lines, totals = made.lines, made.totals
    stripe_lines = [line for line in lines if line.paid_via == "stripe"]
    assert len(stripe_lines) == count
    assert sum(line.amount_minor for line in stripe_lines) == totals.charged_through_stripe_minor == invoice.total


def test_any_invoice_is_found_by_its_id_however_many_there_are(api: ApiClient, table: Any) -> None:
    from shared.invoices.models import Invoice
    from shared.invoices.repository import InvoiceRepository

    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Old customer"}).body["org_id"]
    repo = InvoiceRepository(table)
    keys = [f"{2010 + i // 12}-{i % 12 + 1:02d}-14T09:41:07Z" for i in range(120)]  # ten years of months
    for key in keys:
        repo.create_draft(
            Invoice(
                invoice_id="inv_" + key.replace("-", "").replace(":", ""),
                org_id=org_id,
                period_key=key,
                period_start=key,
                period_end=key,
                status="issued",  # a customer sees issued invoices (never a draft)
                number=f"LB-{key[:4]}-{keys.index(key) + 1:06d}",
                currency="USD",
                bill_to_name="Old customer",
                billing_mode="byo",
                plan_name="Free",
                created_at=key,
            )
        )
    oldest = "inv_20100114T094107Z"  # past the newest 100
    got = api.call("GET", f"/v1/orgs/{org_id}/invoices/{oldest}", as_user=owner)
    assert (got.status, got.body["period_start"], got.body["invoice_id"]) == (200, keys[0], oldest), got.body
    for missing in ("inv_20100114T094108Z", "inv_2010", "inv_20101314T094107Z"):
        reply = api.call("GET", f"/v1/orgs/{org_id}/invoices/{missing}", as_user=owner)
        assert (reply.status, reply.code) == (404, "invoice_not_found"), reply.body


def test_a_period_with_nothing_to_bill_is_closed_without_an_invoice(api: ApiClient, table: Any) -> None:
    from functions.api.container import services
    from shared.keys import period_index_key

    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Quiet"}).body["org_id"]
    invoices = services().invoices
    org = services().orgs._repo.require_org(org_id)
    period = period_containing(org, datetime.now(UTC))
    assert set(invoice_steps(org_id, period.key)) <= {"draft", "empty"}
    stored = invoices._repo.get(org_id, period.key)
    assert stored is not None and (stored.status, stored.number) == ("empty", None)  # recorded, never numbered
    assert api.call("GET", f"/v1/orgs/{org_id}/invoices", as_user=owner).body["items"] == []
    got = api.call("GET", f"/v1/orgs/{org_id}/invoices/{stored.invoice_id}", as_user=owner)
    assert (got.status, got.code) == (404, "invoice_not_found")
    index = table.get_item(Key=period_index_key(org_id, period.key)).get("Item", {})
    assert "GSI2PK" not in index  # off the run's index: never sent to a run again
    outbox = [
        i
        for i in table.query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": f"ORG#{org_id}"})[
            "Items"
        ]
        if str(i["SK"]).startswith("OUTBOX#")
    ]
    assert outbox == []  # no Invoice.Issued, no notification
