"""Invoices of any size (issue 17): an agency org on Scale (unlimited projects) with 1,000 projects, each
billed on 4 ad platforms in September, is invoiced by the real run, with its PDF and CSV. Its 8,000
wallet lines (ad spend and platform fee per platform per project) are far past DynamoDB's 400 KB item
limit as JSON, which DynamoDB Local enforces: they are stored beside the invoice item, which stays small.

The org is made as production makes it (Free, then Checkout on a test clock, then agency mode), its
projects through the service (several writers at once). The first REAL_PROJECTS projects' bills go
through the wallet service (the real debit: the account, the entry, the bill's marker, the period
aggregate). A debit on one wallet is serialized by the account's version (~45/s here), so the other
projects' period aggregates - what assembly reads, never the ledger - are seeded in the exact shape
those real debits stored (cloned from one), 25 to a batch write."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pytest
import requests

from shared import keys
from shared.auth import Caller
from shared.errors import ConcurrentUpdateError
from shared.invoices.models import Invoice
from shared.invoices.repository import INLINE_LINES_BYTES, InvoiceRepository, _lines_json
from shared.retry import until_done
from shared.wallet.account import platform_fee
from shared.wallet.platforms import PLATFORMS as KNOWN_PLATFORMS
from shared.wallet.service import Bill
from tests.helpers import ApiClient, new_user, start_invoice_run
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit
from tests.integration.test_invoice_run import SEPT_15, SEPTEMBER
from tests.integration.wallet_kit import WalletKit, fund, wallet_kit

pytestmark = pytest.mark.integration

PROJECTS = 1_000
PLATFORMS = tuple(sorted(KNOWN_PLATFORMS))  # all 4
REAL_PROJECTS = 10  # billed through the wallet service; the rest seeded from their aggregates' shape
WRITERS = 4
SCALE_FEE_BPS = 300


def _bill(kit: WalletKit, org_id: str, project_id: str, platform: str, amount: int) -> None:
    bill = Bill(
        org_id=org_id,
        platform=platform,
        bill_id=f"{platform}-{project_id}",
        project_id=project_id,
        amount_minor=amount,
        currency="USD",
        billed_on=date(2026, 9, 20),
        hold_id=None,
        actor="t",
    )
    until_done(lambda: kit.wallet.record_bill(bill), retry_on=(ConcurrentUpdateError,), attempts=20, busy="busy")


def _projects(kits: list[WalletKit], owner: str, org_id: str) -> list[str]:
    """PROJECTS projects through the service, WRITERS at a time (a kit each: boto3 resources are per thread)."""
    caller = Caller(owner, None, frozenset())

    def make(n: int) -> list[str]:
        return [
            kits[n].orgs.create_project(caller, org_id, name=f"Client {i:04d}").project_id
            for i in range(n, PROJECTS, WRITERS)
        ]

    with ThreadPoolExecutor(WRITERS) as pool:
        return sorted(p for made in pool.map(make, range(WRITERS)) for p in made)


def _seed_aggregates(table: Any, org_id: str, billed: tuple[str, str], bills: list[tuple[str, str, int]]) -> None:
    """The period aggregates of `bills`, as the real debits stored theirs (`billed`: one of those, the shape)."""
    period_key = SEPTEMBER
    real = table.get_item(
        Key=keys.key(org_id, keys.wallet_period_sk(period_key, billed[1], billed[0])), ConsistentRead=True
    )["Item"]
    assert set(real) == {"PK", "SK", "platform", "project_id", "ad_spend", "fee", "bills"}, real
    with table.batch_writer() as batch:
        for project_id, platform, amount in bills:
            batch.put_item(
                Item={
                    **keys.key(org_id, keys.wallet_period_sk(period_key, platform, project_id)),
                    "platform": platform,
                    "project_id": project_id,
                    "ad_spend": amount,
                    "fee": platform_fee(amount, SCALE_FEE_BPS),
                    "bills": 1,
                }
            )


@pytest.fixture(scope="module")
def big(api: ApiClient, stack: Any, table: Any) -> dict[str, Any]:
    kit = StripeKit(stack, table)
    owner = new_user("big")
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Thousand Projects Co"}).body["org_id"]
    clock_id, _ = kit.subscribe(api, owner, org_id, "scale")
    assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"}).status == 200
    kits = [wallet_kit(stack, SEPT_15) for _ in range(WRITERS)]
    projects = _projects(kits, owner, org_id)
    fund(kits[0], org_id, 10_000_000, new_user())
    bills = [(p, platform, 1_000 + i) for i, p in enumerate(projects) for platform in PLATFORMS]
    real = bills[: REAL_PROJECTS * len(PLATFORMS)]
    for bill in real:
        _bill(kits[0], org_id, *bill)
    _seed_aggregates(table, org_id, real[0][:2], bills[len(real) :])
    kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 60)  # 1 October: the renewal, charged an hour later
    arn = start_invoice_run(stack, [{"org_id": org_id, "period_key": SEPTEMBER}], f"invoice-run-big-{new_user()}")
    execution = dict(stack.wait_for_execution(arn, timeout=300))
    invoice = InvoiceRepository(table).get(org_id, SEPTEMBER)
    return {"org_id": org_id, "owner": owner, "execution": execution, "invoice": invoice, "bills": bills}


def test_an_org_with_1000_projects_on_4_platforms_is_invoiced_with_documents(big: dict[str, Any]) -> None:
    invoice: Invoice = big["invoice"]
    assert big["execution"]["status"] == "SUCCEEDED"
    assert invoice.status == "issued" and invoice.number
    wallet = [line for line in invoice.lines if line.paid_via == "wallet"]
    assert len(wallet) == PROJECTS * len(PLATFORMS) * 2  # ad spend and fee, per platform per project
    assert len(_lines_json(invoice.lines)) > 400 * 1024 > INLINE_LINES_BYTES  # could never be one item
    spend = sum(amount for _, _, amount in big["bills"])
    fees = sum(line.amount_minor for line in wallet if line.description.startswith("Platform fee"))
    assert fees == sum(platform_fee(amount, 300) for _, _, amount in big["bills"])  # Scale's 3 %, per bill
    assert invoice.totals is not None and invoice.totals.paid_from_wallet_minor == spend + fees
    assert any(line.section == "subscription" for line in invoice.lines)  # Stripe's renewal


def test_its_documents_hold_every_line(big: dict[str, Any], api: ApiClient) -> None:
    invoice: Invoice = big["invoice"]
    links = {
        kind: api.call("GET", f"/v1/orgs/{big['org_id']}/invoices/{invoice.invoice_id}/{kind}", as_user=big["owner"])
        for kind in ("pdf", "csv")
    }
    assert all(link.status == 200 for link in links.values()), links
    pdf = requests.get(links["pdf"].body["url"], timeout=30).content
    raw = requests.get(links["csv"].body["url"], timeout=30).content
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert len(rows) == len(invoice.lines) and {r["invoice_number"] for r in rows} == {invoice.number}
    assert invoice.totals is not None and sum(int(r["amount_minor"]) for r in rows) == invoice.totals.total_minor


def test_the_invoice_item_stays_small_and_names_its_lines_by_digest(big: dict[str, Any], table: Any) -> None:
    org_id, invoice = big["org_id"], big["invoice"]
    item = table.get_item(Key=keys.key(org_id, keys.invoice_sk(SEPTEMBER)), ConsistentRead=True)["Item"]
    assert "lines" not in item and int(item["lines_count"]) == len(invoice.lines)
    assert len(repr(item)) < 8 * 1024
    sets = table.query(
        KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
        ExpressionAttributeValues={":pk": keys.org_pk(org_id), ":p": f"INVLINES#{SEPTEMBER}#"},
        ProjectionExpression="SK, #t",
        ExpressionAttributeNames={"#t": "type"},
        ConsistentRead=True,
    )["Items"]
    markers = [s for s in sets if s["type"] == "invoice_lines_set"]
    assert [m["SK"] for m in markers] == [keys.invoice_lines_marker_sk(SEPTEMBER, item["lines_digest"])]
    assert len(sets) == 1 + int(item["lines_chunks"])  # one set: every later step found it stored


def test_a_rerun_changes_nothing(big: dict[str, Any], stack: Any, table: Any) -> None:
    org_id = big["org_id"]
    arn = start_invoice_run(stack, [{"org_id": org_id, "period_key": SEPTEMBER}], f"invoice-run-big-{new_user()}")
    assert stack.wait_for_execution(arn, timeout=300)["status"] == "SUCCEEDED"
    assert InvoiceRepository(table).get(org_id, SEPTEMBER) == big["invoice"]


def test_lines_past_the_inline_size_round_trip_and_a_tampered_set_is_refused(table: Any) -> None:
    from shared.invoices.models import InvoiceLine
    from shared.invoices.repository import InvoiceLinesCorrupt

    org_id, key = f"org_{new_user()}", "2026-09-01T00:00:00Z"
    lines = [
        InvoiceLine(section="credits", description=f"Project {i:04d}: {'x' * 120}", amount_minor=0, paid_via="info")
        for i in range(600)
    ]
    assert len(_lines_json(lines)) > INLINE_LINES_BYTES
    draft = Invoice(
        invoice_id="inv_20260901T000000Z",
        org_id=org_id,
        period_key=key,
        period_start=key,
        period_end="2026-10-01T00:00:00Z",
        status="draft",
        currency="USD",
        bill_to_name="Many lines",
        billing_mode="byo",
        plan_name="Scale",
        created_at=key,
    )
    repo = InvoiceRepository(table)
    assert repo.create_draft(draft)
    assert repo.save(draft.model_copy(update={"lines": lines}), expected_status="draft")
    assert repo.save(draft.model_copy(update={"lines": lines[:1]}), expected_status="finalized") is False
    assert repo.get(org_id, key) == draft.model_copy(update={"lines": lines})
    item = table.get_item(Key=keys.key(org_id, keys.invoice_sk(key)), ConsistentRead=True)["Item"]
    chunk = keys.key(org_id, keys.invoice_lines_sk(key, item["lines_digest"], 0))
    table.update_item(
        Key=chunk,
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":d": b"tampered"},
    )
    with pytest.raises(InvoiceLinesCorrupt):
        repo.get(org_id, key)
