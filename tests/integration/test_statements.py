"""Issue 21 part 4: per-client statements over HTTP. A project's statement for the current period (running),
then - after the real invoice run (time-machine past the period's end and settle window) - read from the
issued invoice: its invoice lines equal that project's lines on the org's invoice, plus the agency's
markup (half-even, once); PDF and CSV made with the invoice's renderer; bad input, unknown ids, roles."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
import time_machine

from shared.orgs.service import SETTLE_WINDOW
from tests.helpers import ApiClient, invoice_steps, new_user
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration


def _fund(org_id: str, amount: int) -> None:
    from functions.internal.handler import services

    services().wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{org_id}", payment_intent_id=f"pi-{org_id}", charge_id=None, amount_minor=amount
    )


def _bill(api: ApiClient, org_id: str, project: str, bill_id: str, amount: int, platform: str, on: date) -> None:
    body = {"org_id": org_id, "platform": platform, "bill_id": bill_id, "project_id": project, "currency": "USD"}
    body |= {"amount_minor": amount, "billed_on": on.isoformat()}
    feed = devtokens.service_token("spend-ingestion")
    reply = api.call("POST", "/v1/internal/wallet/bills", token=feed, json=body)
    assert reply.status == 200, reply.body


def _generate(api: ApiClient, org_id: str, project: str, run_id: str) -> None:
    engine = devtokens.service_token("workflow-engine")
    body = {"org_id": org_id, "project_id": project, "template_id": "social-content", "generation_type": "slideshow"}
    body |= {"quantity": 1, "workflow_run_id": run_id}
    assert api.call("POST", "/v1/internal/credits/reservations", token=engine, json=body).status in (200, 201)
    settled = api.call(
        "POST", f"/v1/internal/credits/reservations/{run_id}/settle", token=engine, json={"org_id": org_id}
    )
    assert settled.status == 200, settled.body


def _download(api: ApiClient, path: str, user: str) -> bytes:
    link = api.call("GET", path, as_user=user)
    assert link.status == 200, link.body
    return requests.get(link.body["url"], timeout=30).content


@pytest.fixture
def agency(api: ApiClient, stack: Any, table: Any) -> dict[str, Any]:
    owner, member = new_user(), new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Agency & Co")  # Pro: 5 % platform fee
    assert api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": member}).status == 201
    a = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "Client A"}).body["project_id"]
    b = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "Client B"}).body["project_id"]
    credits = api.call("GET", f"/v1/orgs/{org_id}/credits", as_user=owner).body
    end = datetime.fromisoformat(credits["period_end"].replace("Z", "+00:00"))
    return {
        "owner": owner,
        "member": member,
        "org_id": org_id,
        "a": a,
        "b": b,
        "key": credits["period_key"],
        "end": end,
    }


def test_a_statement_equals_the_projects_invoice_lines_plus_markup(api: ApiClient, agency: dict[str, Any]) -> None:
    owner, org_id, a, b = agency["owner"], agency["org_id"], agency["a"], agency["b"]
    today = datetime.now(UTC).date()
    _fund(org_id, 500_000)
    # Client A: 12,345 on Meta (fee 617.25 -> 617) and 8,002 on TikTok (fee 400.10 -> 400): 21,364 on the
    # invoice; 12.5 % markup = 2,670.5 -> 2,670 (half-even; half-up would say 2,671); total 24,034
    _bill(api, org_id, a, "a-1", 12_345, "meta", today)
    _bill(api, org_id, a, "a-2", 8_002, "tiktok", today)
    _bill(api, org_id, b, "b-1", 5_000, "meta", today)  # client B: 5,000 + 250, no markup
    _generate(api, org_id, a, f"run-{org_id}")  # 50 credits, within the plan: no cost
    settings = f"/v1/orgs/{org_id}/projects/{a}/statement-settings"
    put = api.call("PUT", settings, as_user=owner, json={"markup_bps": 1_250})
    assert (put.status, put.body["markup_bps"]) == (200, 1_250)
    listed = api.call("GET", f"/v1/orgs/{org_id}/projects/{a}/statements", as_user=owner).body["items"]
    statement_id = listed[0]["statement_id"]
    path = f"/v1/orgs/{org_id}/projects/{a}/statements/{statement_id}"
    running = api.call("GET", path, as_user=agency["member"]).body  # member may read
    assert (running["status"], running["invoice_number"]) == ("running", None)
    assert (running["ad_spend_minor"], running["platform_fee_minor"], running["invoice_lines_minor"]) == (
        20_347,
        1_017,
        21_364,
    )
    assert (running["credits_used"], running["credits_cost_minor"], running["markup_minor"]) == (50, 0, 2_670)
    assert running["total_minor"] == 24_034

    invoice_steps(org_id, agency["key"])
    with time_machine.travel(agency["end"] + SETTLE_WINDOW + timedelta(minutes=5), tick=True):
        (invoice,) = api.call("GET", f"/v1/orgs/{org_id}/invoices", as_user=owner).body["items"]
        final = api.call("GET", path, as_user=owner).body
        on_invoice = [line for line in invoice["lines"] if line["project_id"] == a]
        assert (final["status"], final["invoice_number"], final["invoice_id"]) == (
            "final",
            invoice["number"],
            invoice["invoice_id"],
        )
        assert final["lines"][: len(on_invoice)] == on_invoice  # the invoice's own lines, as issued
        assert final["invoice_lines_minor"] == sum(line["amount_minor"] for line in on_invoice) == 21_364
        assert (final["markup_minor"], final["total_minor"]) == (2_670, 21_364 + 2_670)
        b_path = f"/v1/orgs/{org_id}/projects/{b}/statements/{statement_id}"
        client_b = api.call("GET", b_path, as_user=owner).body
        b_lines = sum(line["amount_minor"] for line in invoice["lines"] if line["project_id"] == b)
        assert client_b["total_minor"] == client_b["invoice_lines_minor"] == b_lines == 5_250
        # Every project's lines on the invoice are in exactly one statement
        assert (
            final["invoice_lines_minor"] + client_b["invoice_lines_minor"]
            == invoice["totals"]["paid_from_wallet_minor"]
        )

        rows = list(csv.DictReader(io.StringIO(_download(api, f"{path}/csv", owner).decode("utf-8-sig"))))
        assert sum(int(r["amount_minor"]) for r in rows) == final["total_minor"]
        assert {r["invoice_number"] for r in rows} == {invoice["number"]} and {r["project_id"] for r in rows} == {a}
        assert [r["section"] for r in rows][-1] == "markup"
        pdf = _download(api, f"{path}/pdf", agency["member"])
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, check=True, capture_output=True).stdout
        page = text.decode("utf-8")
        assert "CLIENT STATEMENT" in page and "Client A (client of Agency & Co)" in page
        assert "Agency markup (12.50 %)" in page and "240.34 USD" in page and invoice["number"] in page

        # When the agency raises the markup to 20 % after the period was invoiced, Then it applies from the
        # current period on: the invoiced period's statement (JSON, CSV, PDF) keeps its 12.5 %
        put = api.call("PUT", settings, as_user=owner, json={"markup_bps": 2_000})
        current = api.call("GET", f"/v1/orgs/{org_id}/credits", as_user=owner).body["period_key"]
        assert (put.body["markup_bps"], put.body["from_period_key"]) == (2_000, current) and current != agency["key"]
        assert api.call("GET", settings, as_user=owner).body["markup_bps"] == 2_000
        again = api.call("GET", path, as_user=owner).body
        assert again == final
        assert (again["markup_bps"], again["markup_minor"], again["total_minor"]) == (1_250, 2_670, 24_034)
        rows = list(csv.DictReader(io.StringIO(_download(api, f"{path}/csv", owner).decode("utf-8-sig"))))
        assert sum(int(r["amount_minor"]) for r in rows) == 24_034
        pdf = _download(api, f"{path}/pdf", owner)
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, check=True, capture_output=True).stdout
        assert "Agency markup (12.50 %)" in text.decode("utf-8") and "240.34 USD" in text.decode("utf-8")
        # and the current period's statement carries the new markup
        newest = api.call("GET", f"/v1/orgs/{org_id}/projects/{a}/statements", as_user=owner).body["items"][0]
        assert newest["statement_id"] != statement_id
        now_path = f"/v1/orgs/{org_id}/projects/{a}/statements/{newest['statement_id']}"
        assert api.call("GET", now_path, as_user=owner).body["markup_bps"] == 2_000


def test_statement_routes_refuse_bad_input_unknown_ids_and_roles(api: ApiClient, agency: dict[str, Any]) -> None:
    owner, member, org_id, a = agency["owner"], agency["member"], agency["org_id"], agency["a"]
    settings = f"/v1/orgs/{org_id}/projects/{a}/statement-settings"
    for bad in ({"markup_bps": -1}, {"markup_bps": 100_001}, {"markup_bps": "250"}, {"markup_bps": 2.5}, {}):
        refused = api.call("PUT", settings, as_user=owner, json=bad)
        assert refused.status == 422, (bad, refused.body)
    assert api.call("PUT", settings, as_user=owner, json={"markup_bps": 1, "extra": 1}).status == 422
    assert api.call("PUT", settings, as_user=member, json={"markup_bps": 10}).code == "forbidden"
    assert api.call("GET", settings, as_user=member).body["markup_bps"] == 0  # nothing was set
    assert api.call("PUT", settings, as_user=new_user(), json={"markup_bps": 10}).status == 404  # not a member
    base = f"/v1/orgs/{org_id}/projects"
    unknown_project = api.call("GET", f"{base}/prj_nope/statements", as_user=owner)
    assert (unknown_project.status, unknown_project.code) == (404, "project_not_found")
    assert api.call("PUT", f"{base}/prj_nope/statement-settings", as_user=owner, json={"markup_bps": 5}).status == 404
    assert api.call("GET", f"/v1/orgs/org_nope/projects/{a}/statements", as_user=owner).status == 404
    statements = api.call("GET", f"{base}/{a}/statements", as_user=owner).body["items"]
    current = statements[0]["statement_id"]
    assert len(statements) == 1  # the org's first period is its only one so far
    off_by_a_second = current[:-3] + f"{(int(current[-3:-1]) + 1) % 60:02d}Z"  # not a period's start
    for missing in ("stmt_20200101T000000Z", "stmt_20991231T000000Z", "stmt_20261399T000000Z", off_by_a_second):
        got = api.call("GET", f"{base}/{a}/statements/{missing}", as_user=owner)
        assert (got.status, got.code) == (404, "statement_not_found"), missing
    assert api.call("GET", f"{base}/{a}/statements/not-a-statement", as_user=owner).status == 422
    assert api.call("GET", f"{base}/{a}/statements/{current}/pdf", as_user=new_user()).status == 404
    assert api.call("GET", f"{base}/{a}/statements", as_user=owner, params={"limit": 0}).status == 422
