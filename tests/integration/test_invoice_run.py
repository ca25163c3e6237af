"""The monthly invoice run: the real state machine from template.yaml executes in moto, each Task
reaching our handler. Three orgs (agency on Pro with spend on three platforms, BYO on Starter, an
agency org whose renewal charge fails) and one that does not exist; every line and total is checked
against figures computed by hand, then the same period runs again."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.invoices.models import Invoice
from shared.invoices.repository import InvoiceRepository
from shared.wallet.service import Bill
from tests.helpers import ApiClient, new_user, start_invoice_run
from tests.integration.credit_kit import credit_kit
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit
from tests.integration.wallet_kit import fund, ledger_lines, wallet_kit

pytestmark = pytest.mark.integration
SEPTEMBER = "2026-09-01T00:00:00Z"
SEPT_15 = datetime(2026, 9, 15, tzinfo=UTC)


def _org(api: ApiClient, kit: StripeKit, owner: str, plan: str, mode: str) -> tuple[str, list[str], tuple[str, str]]:
    """Created on Free, subscribed to `plan` on a test clock (Checkout), then in `mode`, then its projects.
    Returns (org, projects, (clock, customer))."""
    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": f"{mode.upper()} {plan} Co"})
    assert created.status == 201, created.body
    org_id = created.body["org_id"]
    clock = kit.subscribe(api, owner, org_id, plan)
    if mode != "byo":
        switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": mode})
        assert switched.status == 200, switched.body
    projects = []
    for name in ("Launch", "Always-on")[: (2 if plan != "starter" else 1)]:
        projects.append(
            api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": name}).body["project_id"]
        )
    return org_id, projects, clock


def _use_credits(stack: Any, org_id: str, project: str, images: int, run: str) -> None:
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], SEPT_15)
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="image",
        quantity=images,
        workflow_run_id=run,
        actor="t",
    )
    kit.credits.settle(org_id=org_id, workflow_run_id=run, quantity=None, occurred_at=None, actor="t")


def _bill(stack: Any, org_id: str, project: str, platform: str, amount: int) -> None:
    wallet_kit(stack, SEPT_15).wallet.record_bill(
        Bill(
            org_id=org_id,
            platform=platform,
            bill_id=f"{platform}-{new_user()}",
            project_id=project,
            amount_minor=amount,
            currency="USD",
            billed_on=date(2026, 9, 20),
            hold_id=None,
            actor="t",
        )
    )


def _run(stack: Any, orgs: list[dict[str, str]], name: str) -> dict[str, Any]:
    return dict(stack.wait_for_execution(start_invoice_run(stack, orgs, name), timeout=120))


@pytest.fixture(scope="module")
def month(api: ApiClient, stack: Any, table: Any) -> dict[str, Any]:
    kit = StripeKit(stack, table)
    owners = {k: new_user(k) for k in ("agency", "byo", "failing")}
    agency, agency_projects, agency_clock = _org(api, kit, owners["agency"], "pro", "agency")
    byo, byo_projects, byo_clock = _org(api, kit, owners["byo"], "starter", "byo")
    failing, failing_projects, failing_clock = _org(api, kit, owners["failing"], "pro", "agency")
    clocks = {agency: agency_clock, byo: byo_clock, failing: failing_clock}
    # September usage. Agency: 3,460 credits (460 over 3,000 -> 460 x 1.8 = 828)
    _use_credits(stack, agency, agency_projects[0], 300, "a1")
    _use_credits(stack, agency, agency_projects[1], 46, "a2")
    _use_credits(stack, byo, byo_projects[0], 50, "b1")  # 500 of 1,000
    # Wallet spend on three platforms across two projects (Pro fee 5%)
    fund(wallet_kit(stack, SEPT_15), agency, 100_000, new_user())
    _bill(stack, agency, agency_projects[0], "meta", 12_345)  # fee 617
    _bill(stack, agency, agency_projects[1], "tiktok", 5_000)  # fee 250
    _bill(stack, agency, agency_projects[0], "google_ads", 2_000)  # fee 100
    fund(wallet_kit(stack, SEPT_15), failing, 5_000, new_user())
    _bill(stack, failing, failing_projects[0], "meta", 8_000)  # fee 400: the wallet ends at -3,400
    # The failing org's card declines at renewal
    customer = kit.repo.get_org(failing).stripe_customer_id  # type: ignore[union-attr]
    bad = kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    kit.client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": bad.id}})
    sub = kit.repo.get_org(failing).subscription.subscription_id  # type: ignore[union-attr]
    kit.client.v1.subscriptions.update(sub, params={"default_payment_method": bad.id})
    for clock_id, _customer in clocks.values():  # 1 October: renewals drafted, overage added, charged an hour later
        kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 60)
    orgs = [{"org_id": o, "period_key": SEPTEMBER} for o in (agency, byo, failing)]
    orgs.append({"org_id": "org_doesnotexist", "period_key": SEPTEMBER})
    execution = _run(stack, orgs, f"invoice-run-test-{new_user()}")
    repo = InvoiceRepository(table)
    return {
        "execution": execution,
        "agency": agency,
        "byo": byo,
        "failing": failing,
        "orgs": orgs,
        "repo": repo,
        "invoices": {o: repo.get(o, SEPTEMBER) for o in (agency, byo, failing)},
        "owners": owners,
        "projects": {"agency": agency_projects},
    }


def _lines(invoice: Invoice, section: str) -> list[tuple[str, int]]:
    return [(line.description, line.amount_minor) for line in invoice.lines if line.section == section]


def test_the_run_succeeds_and_a_failing_org_does_not_stop_the_others(month: dict[str, Any], table: Any) -> None:
    assert month["execution"]["status"] == "SUCCEEDED"
    assert all(i is not None and i.status == "issued" for i in month["invoices"].values())
    recorded = table.get_item(Key={"PK": "ORG#org_doesnotexist", "SK": f"PERIOD#{SEPTEMBER}"}).get("Item")
    assert recorded and "org_doesnotexist" in recorded["invoice_run_error"]


def test_agency_invoice_lines_and_totals(month: dict[str, Any]) -> None:
    invoice: Invoice = month["invoices"][month["agency"]]
    subscription = [amount for _, amount in _lines(invoice, "subscription")]
    # Checkout (September in advance) 4,900; renewal: October in advance 4,900 + September overage 828
    assert sorted(subscription) == [828, 4_900, 4_900]
    # Overage as Stripe charged it: quantity x unit price (460 credits x 1.8 cents), over September
    (overage,) = [line for line in invoice.lines if line.unit == "credits" and line.section == "subscription"]
    assert (overage.quantity, overage.unit_price_minor, overage.amount_minor) == (460, Decimal("1.8"), 828)
    assert overage.description == "Generation credits over the 3,000 included"
    assert overage.service_start and overage.service_end
    assert (overage.service_start[:19], overage.service_end[:19]) == ("2026-09-01T00:00:00", "2026-10-01T00:00:00")
    # The two "1 x Pro" lines are told apart by their service periods: September, then October in advance
    base = sorted(
        (line.service_start or "", line.stripe_invoice_number)
        for line in invoice.lines
        if line.unit_price_minor == 4_900
    )
    assert [start[:10] for start, _ in base] == ["2026-09-01", "2026-10-01"]
    assert all(number for _, number in base)  # Stripe's own invoice numbers are cited
    credits = [line for line in invoice.lines if line.section == "credits"]
    assert {(line.description.split(":")[0], line.quantity, line.unit) for line in credits} == {
        ("Launch", 3_000, "credits"),
        ("Always-on", 460, "credits"),
    }
    spend = sorted(_lines(invoice, "ad_spend"))
    assert spend == sorted(
        [
            ("Ad spend: Meta, Launch", 12_345),
            ("Platform fee: Meta, Launch (rounded per bill)", 617),
            ("Ad spend: TikTok, Always-on", 5_000),
            ("Platform fee: TikTok, Always-on (rounded per bill)", 250),
            ("Ad spend: Google Ads, Launch", 2_000),
            ("Platform fee: Google Ads, Launch (rounded per bill)", 100),
        ]
    )
    fees = {(line.rate_bps, line.base_minor, line.amount_minor) for line in invoice.lines if line.rate_bps}
    assert fees == {(500, 12_345, 617), (500, 5_000, 250), (500, 2_000, 100)}
    totals = invoice.totals
    assert totals is not None
    assert (totals.charged_through_stripe_minor, totals.paid_from_wallet_minor, totals.total_minor) == (
        10_628,
        20_312,
        30_940,
    )
    assert (totals.stripe_unpaid_minor, totals.wallet_deficit_minor, totals.amount_due_minor) == (0, 0, 0)
    # Paid by card through Stripe (each Stripe invoice, dated, with its number) and from the wallet
    assert sorted(p.amount_minor for p in totals.payments if p.method == "card") == [4_900, 5_728]
    assert [p.amount_minor for p in totals.payments if p.method == "wallet"] == [20_312]
    assert all(p.on and p.on.startswith("2026-") for p in totals.payments)


def test_byo_invoice_has_no_wallet_or_fee_lines(month: dict[str, Any]) -> None:
    invoice: Invoice = month["invoices"][month["byo"]]
    assert _lines(invoice, "ad_spend") == []
    assert sorted(a for _, a in _lines(invoice, "subscription")) == [1_900, 1_900]
    assert invoice.totals is not None and invoice.totals.total_minor == 3_800
    assert invoice.totals.paid_from_wallet_minor == 0


def test_a_failed_stripe_charge_and_a_wallet_deficit_are_due(month: dict[str, Any]) -> None:
    totals = month["invoices"][month["failing"]].totals
    assert totals is not None
    assert (totals.charged_through_stripe_minor, totals.stripe_unpaid_minor) == (9_800, 4_900)
    assert (totals.paid_from_wallet_minor, totals.wallet_deficit_minor, totals.amount_due_minor) == (
        8_400,
        3_400,
        8_300,
    )
    # The wallet paid what it had, not the deficit; the failed card is not "paid"
    assert {p.method: p.amount_minor for p in totals.payments} == {"card": 4_900, "wallet": 5_000}


def test_stripe_reconciles_with_the_invoice(month: dict[str, Any], stack: Any) -> None:
    kit = StripeKit(stack, month["repo"]._table)
    for org_id in (month["agency"], month["byo"], month["failing"]):
        invoice: Invoice = month["invoices"][org_id]
        stripe_total = sum(kit.client.v1.invoices.retrieve(i).total for i in invoice.stripe_invoice_ids)
        assert invoice.totals is not None and invoice.totals.charged_through_stripe_minor == stripe_total


def test_numbers_are_gapless_and_a_rerun_changes_nothing(month: dict[str, Any], stack: Any) -> None:
    before = {o: i.model_dump() for o, i in month["invoices"].items()}
    numbers = sorted(int(i.number.rsplit("-", 1)[1]) for i in month["invoices"].values())  # type: ignore[union-attr]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    charges_before = _charges(stack)
    again = _run(stack, month["orgs"], f"invoice-run-rerun-{new_user()}")
    assert again["status"] == "SUCCEEDED"
    after = {o: month["repo"].get(o, SEPTEMBER).model_dump() for o in before}
    assert after == before  # no second invoice, number, document or total
    assert _charges(stack) == charges_before  # and no second Stripe charge


def _charges(stack: Any) -> int:
    return len([e for e in stack.stripe.events() if e["type"] == "charge.succeeded"])


def test_documents_pdf_and_csv(month: dict[str, Any], api: ApiClient, tmp_path: Path) -> None:
    invoice: Invoice = month["invoices"][month["agency"]]
    owner = month["owners"]["agency"]
    pdf_link = api.call("GET", f"/v1/orgs/{month['agency']}/invoices/{invoice.invoice_id}/pdf", as_user=owner).body
    csv_link = api.call("GET", f"/v1/orgs/{month['agency']}/invoices/{invoice.invoice_id}/csv", as_user=owner).body
    import requests

    pdf = requests.get(pdf_link["url"], timeout=30).content
    csv_reply = requests.get(csv_link["url"], timeout=30)
    assert csv_reply.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert csv_reply.content.startswith(b"\xef\xbb\xbf")  # the BOM
    rows = list(csv.DictReader(io.StringIO(csv_reply.content.decode("utf-8-sig"), newline="")))
    assert pdf.startswith(b"%PDF")
    assert invoice.totals is not None
    assert sum(int(r["amount_minor"]) for r in rows) == invoice.totals.total_minor
    assert len(rows) == len(invoice.lines) and {r["invoice_number"] for r in rows} == {invoice.number}
    assert all(r["period_start"] == "2026-09-01" and r["currency"] == "USD" for r in rows)
    (tmp_path / "invoice.pdf").write_bytes(pdf)
    assert shutil.which("pdftoppm") and shutil.which("pdftotext"), "make test installs poppler-utils"
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(tmp_path / "invoice.pdf"), str(tmp_path / "page")], check=True)
    assert list(tmp_path.glob("page*.png"))
    text = subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "invoice.pdf"), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert invoice.number and invoice.number in text
    words = set(text.split())
    for line in invoice.lines:
        assert set(line.description.split()) <= words  # every word, wrapped or not
    for amount in ("106.28 USD", "203.12 USD", "309.40 USD"):  # charged via Stripe, from the wallet, total
        assert amount in text
    for fact in ("Description", "Service period", "Unit price", "Subtotal", "Tax", "Page 1 of", "Paid in full"):
        assert fact in text
    assert "460 credits 0.018 8.28" in " ".join(text.split())


def test_assembly_reads_are_constant_in_ledger_size(month: dict[str, Any], stack: Any, table: Any) -> None:
    from functions.api.container import services
    from shared.credits.periods import period_containing

    org_id = month["agency"]
    org = services().orgs._repo.get_org(org_id)
    assert org is not None
    period = period_containing(org, SEPT_15)
    ledger = ledger_lines(table, org_id, "WLEDGER#") + ledger_lines(table, org_id, "CLEDGER#")
    assert 10 <= len(ledger) < 100  # ledger lines (an entry holds a change's lines)
    reads_small = services().invoices.assemble(org, period).reads
    # The same org with 10,000 more ledger entries (as a long history leaves them)
    with table.batch_writer() as batch:
        for seq in range(10_000):
            batch.put_item(
                Item={
                    "PK": f"ORG#{org_id}",
                    "SK": f"WLEDGER#{900_000 + seq:012d}",
                    "kind": "ad_spend",
                    "amount": -1,
                    "balance_after": 0,
                    "currency": "USD",
                    "created_at": "2026-09-20",
                }
            )
    lines_small = services().invoices.assemble(org, period).lines
    reads_large = services().invoices.assemble(org, period).reads
    assert reads_large == reads_small
    assert services().invoices.assemble(org, period).lines == lines_small


def _org_items(table: Any, org_id: str) -> list[dict[str, Any]]:
    from tests.helpers import org_items

    return org_items(table, org_id)


def test_the_dispatcher_finds_closed_periods_by_index_and_starts_once(month: dict[str, Any], stack: Any) -> None:
    from functions.invoice_dispatcher.handler import due_orgs, lambda_handler
    from shared.invoice_run import DuePeriod
    from shared.orgs.repository import OrgRepository

    at = datetime(2026, 10, 2, 3, 0, tzinfo=UTC)
    # September was issued by the tests before: an issued period left the index, and is not sent again.
    assert DuePeriod(month["agency"], SEPTEMBER) not in due_orgs(at)
    # Listed again (as if its run had failed): due once it ended and settled, never before.
    OrgRepository(boto3.resource("dynamodb").Table(stack.env["TABLE_NAME"])).index_period(
        month["agency"], SEPTEMBER, "2026-10-01T00:00:00Z"
    )
    assert DuePeriod(month["agency"], SEPTEMBER) not in due_orgs(datetime(2026, 10, 1, 2, 59, tzinfo=UTC))
    due = due_orgs(at)
    assert DuePeriod(month["agency"], SEPTEMBER) in due
    event = {"time": "2026-10-02T03:00:00Z", "detail-type": "Scheduled Event", "source": "aws.scheduler"}

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "dispatcher", 256, "r"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:InvoiceDispatcherFunction"

    first = lambda_handler(event, Context())
    second = lambda_handler(event, Context())  # same name: Step Functions starts nothing new
    assert first["started"] is True
    assert second["started"] is False or second["execution_arn"] == first["execution_arn"]
    assert stack.wait_for_execution(first["execution_arn"], timeout=180)["status"] == "SUCCEEDED"
    # The input carries only where the due list is (it never grows with the orgs); the list is in S3.
    run_input = json.loads(
        stack.client("stepfunctions").describe_execution(executionArn=first["execution_arn"])["input"]
    )
    assert run_input == {
        "bucket": stack.resource_names["InvoiceRunsBucket"],
        "key": "due/2026-10-02.json",
        "orgs": len(due),
    }
    body = stack.client("s3").get_object(Bucket=run_input["bucket"], Key=run_input["key"])["Body"].read()
    assert {"org_id": month["agency"], "period_key": SEPTEMBER} in json.loads(body)
    third = lambda_handler(event, Context())  # and after it finished
    assert third["started"] is False
    runs = stack.client("stepfunctions").list_executions(stateMachineArn=stack.resource_names["InvoiceRunStateMachine"])
    assert [e["name"] for e in runs["executions"]].count("invoice-run-2026-10-02") == 1


def test_the_api_answers_the_invoice_as_documented_not_as_stored(month: dict[str, Any], api: ApiClient) -> None:
    invoice: Invoice = month["invoices"][month["agency"]]
    owner = month["owners"]["agency"]
    got = api.call("GET", f"/v1/orgs/{month['agency']}/invoices/{invoice.invoice_id}", as_user=owner)
    assert got.status == 200, got.body
    body = got.body
    for internal in ("reads", "pdf_key", "csv_key", "period_key", "created_at"):
        assert internal not in body  # storage shapes never reach the HTTP edge
    assert (body["number"], body["period_last_day"], body["documents_ready"]) == (invoice.number, "2026-09-30", True)
    assert body["totals"]["subtotal_minor"] == body["totals"]["total_minor"] == 30_940
    assert body["totals"]["tax_minor"] == 0 and body["totals"]["amount_paid_minor"] == 4_900 + 5_728 + 20_312
    overage = next(line for line in body["lines"] if line["unit"] == "credits" and line["section"] == "subscription")
    assert (overage["quantity"], overage["unit_price_minor"], overage["amount_minor"]) == (460, "1.8", 828)
    assert (overage["service_period_start"], overage["service_period_end"]) == ("2026-09-01", "2026-09-30")
    listed = api.call("GET", f"/v1/orgs/{month['agency']}/invoices", as_user=owner).body["items"]
    assert [i["invoice_id"] for i in listed] == [invoice.invoice_id] and "reads" not in listed[0]
    byo = api.call(
        "GET",
        f"/v1/orgs/{month['byo']}/invoices/{month['invoices'][month['byo']].invoice_id}",
        as_user=month["owners"]["byo"],
    ).body
    assert byo["wallet_statement"] is None  # BYO: no wallet block at all
    stranger = api.call("GET", f"/v1/orgs/{month['agency']}/invoices/{invoice.invoice_id}", as_user=new_user())
    assert (stranger.status, stranger.code) == (404, "org_not_found")
