"""Daily reconciliation, kind by kind: a clean month reconciles with nothing found; each disagreement,
injected into an otherwise clean month the way it happens in the world (a dashboard refund whose webhook
never came, a payment made in Stripe with no top-up of ours, a credit ahead of its money, a bill missing
from an issued invoice, overage never put on a Stripe invoice, spend a platform reported but never billed,
a balance edited behind the ledger's back) is found, kept as a discrepancy and closed when its cause is
fixed - or, where the rule is unambiguous, corrected by the run itself. Re-running changes nothing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.credits.periods import period_containing
from shared.credits.repository import CreditRepository
from shared.invoices.models import Invoice, InvoiceLine, Totals
from shared.invoices.repository import InvoiceRepository
from shared.invoices.service import invoice_id_of
from shared.orgs.repository import OrgRepository
from shared.orgs.service import SETTLE_WINDOW
from shared.reconcile.models import DiscrepancyKind as K
from shared.reconcile.models import OrgReport, SpendReport
from shared.reconcile.run import ReconcileRun
from shared.reconcile.service import day_start
from shared.reconcile.wiring import build_reconciliation
from shared.settings import ApiSettings
from shared.stripe_gateway import StripeGateway
from shared.usage.billing import OverageBilling
from shared.wallet.repository import WalletRepository
from shared.wallet.service import Bill
from tests.helpers import ApiClient, new_user, org_items
from tests.integration.reconcile_kit import ReconcileKit, agency_with_top_up, reconcile_kit, top_up
from tests.integration.stripe_kit import API_KEY
from tests.integration.wallet_kit import _settings, agency_org, fund, wallet_kit
from tests.local import devtokens
from tests.paid import paid_org_over_http
from tests.stripe_clock import advance_clock

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any, table: Any) -> ReconcileKit:
    return reconcile_kit(stack, table)


def _report(kit: ReconcileKit, org_id: str, project_id: str, day: str, amount: int) -> None:
    at = kit.clock.now().isoformat()
    report = SpendReport(org_id, "meta", project_id, day, amount, "USD", new_user("rpt"), at)
    assert kit.recon.desk.report_spend(report)


def _settled(stack: Any, table: Any, org_id: str) -> list[dict[str, Any]]:
    """The org's items once every message written so far was sent (the publisher marks them sent)."""
    stack.flush_outbox()
    return org_items(table, org_id)


def _clean_month(kit: ReconcileKit, api: ApiClient, stack: Any, table: Any) -> tuple[str, str, str]:
    """A top-up, three days of spend each billed as the platform reported it."""
    owner, org_id, project = agency_with_top_up(api, stack, table)
    kit.clock.at = max(kit.clock.at, datetime.now(UTC))  # the world's now, after the org was made
    today = kit.clock.now().date()
    for back, amount in ((5, 4_000), (4, 2_500), (3, 1_000)):
        day = today - timedelta(days=back)
        kit.bill(org_id, project, amount, day)
        _report(kit, org_id, project, day.isoformat(), amount)
    return owner, org_id, project


def test_a_clean_month_reconciles_with_nothing_found_and_a_rerun_changes_nothing(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    report = kit.reconcile(org_id)
    assert report.findings == () and (report.opened, report.resolved, report.corrected) == (0, 0, 0)
    assert any(scope.startswith("payment:") for scope in report.scopes)  # Stripe was looked at
    before = _settled(stack, table, org_id)
    again = kit.reconcile(org_id)
    assert again.findings == () and _settled(stack, table, org_id) == before
    assert kit.all(org_id) == []


def test_a_dashboard_refund_whose_webhook_was_lost_is_found_and_taken_from_the_wallet_once(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    balance = kit.balance(org_id)
    (paid,) = kit.recon.repo.topups(org_id)
    # Given a refund made in Stripe's dashboard, its webhook never delivered
    with stack.stripe.webhooks_lost():
        kit.stripe.v1.refunds.create(params={"payment_intent": str(paid.payment_intent_id), "amount": 5_000})
    assert kit.balance(org_id) == balance
    # When the run reconciles the org
    report = kit.reconcile(org_id)
    # Then it was found, and corrected the way the webhook would have: the refund taken once
    (found,) = kit.all(org_id)
    assert (found.kind, found.ours_minor, found.theirs_minor) == (K.REFUND_NOT_REFLECTED, 0, 5_000)
    assert (found.status, found.resolution) == ("resolved", "auto_corrected")
    assert report.corrected == 1 and kit.balance(org_id) == balance - 5_000
    before = _settled(stack, table, org_id)
    assert kit.reconcile(org_id).findings == () and _settled(stack, table, org_id) == before


def test_a_payment_in_stripe_with_no_top_up_of_ours_stays_open_until_it_is_refunded(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    customer = kit.recon.services.orgs._repo.require_org(org_id).stripe_customer_id
    assert customer
    # Given a charge made in Stripe for the wallet that no top-up of ours asked for
    with stack.stripe.webhooks_lost():
        intent = kit.stripe.v1.payment_intents.create(
            params={
                "amount": 7_700,
                "currency": "usd",
                "customer": customer,
                "payment_method": "pm_card_visa",
                "confirm": True,
                "metadata": {"org_id": org_id, "kind": "wallet_topup", "topup_id": "not-ours"},
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
    assert intent.status == "succeeded"
    balance = kit.balance(org_id)
    # Then it is found and left for a person: no record of ours says whose money it is
    report = kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.scope, found.theirs_minor) == (K.PAYMENT_NOT_CREDITED, f"payment:{intent.id}", 7_700)
    assert report.opened == 1 and kit.balance(org_id) == balance
    assert kit.reconcile(org_id).opened == 0  # found again: the same discrepancy, nothing new
    # When support refunds it in Stripe, it closes
    with stack.stripe.webhooks_lost():
        kit.stripe.v1.refunds.create(params={"payment_intent": intent.id})
    assert kit.reconcile(org_id).resolved == 1
    (closed,) = kit.all(org_id)
    assert (closed.status, closed.resolution) == ("resolved", "agrees")


def test_a_top_up_whose_success_webhook_was_lost_is_credited_by_the_run(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, _ = _clean_month(kit, api, stack, table)
    balance = kit.balance(org_id)
    with stack.stripe.webhooks_lost():
        top_up(api, stack, owner, org_id, 12_000)
    assert kit.balance(org_id) == balance
    report = kit.reconcile(org_id)
    (found,) = kit.all(org_id)
    assert (found.kind, found.status, found.resolution) == (K.PAYMENT_NOT_CREDITED, "resolved", "auto_corrected")
    assert report.corrected == 1 and kit.balance(org_id) == balance + 12_000
    assert kit.reconcile(org_id).findings == () and kit.balance(org_id) == balance + 12_000


def test_a_top_up_whose_success_webhook_was_lost_then_partly_refunded_is_credited_net_in_one_run(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, _ = _clean_month(kit, api, stack, table)
    balance = kit.balance(org_id)
    with stack.stripe.webhooks_lost():  # the success webhook, and the dashboard refund's
        paid = top_up(api, stack, owner, org_id, 12_000)
        kit.stripe.v1.refunds.create(params={"payment_intent": paid["payment_intent_id"], "amount": 4_000})
    report = kit.reconcile(org_id)
    assert kit.balance(org_id) == balance + 8_000  # what Stripe kept
    assert report.corrected == 1 and kit.open(org_id) == []
    (credited,) = kit.all(org_id)
    assert (credited.kind, credited.resolution) == (K.PAYMENT_NOT_CREDITED, "auto_corrected")
    assert kit.reconcile(org_id).findings == () and kit.balance(org_id) == balance + 8_000


def test_a_credit_ahead_of_its_money_is_found_and_closes_when_the_wire_arrives(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, _ = _clean_month(kit, api, stack, table)
    wire = top_up(api, stack, owner, org_id, 30_000, method="wire")
    # Given the wallet credited a wire Stripe has not received (a credit with no charge)
    kit.recon.services.wallet.topup_succeeded(
        org_id=org_id,
        topup_id=wire["topup_id"],
        payment_intent_id=wire["payment_intent_id"],
        charge_id=None,
        amount_minor=30_000,
    )
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.ours_minor, found.theirs_minor) == (K.CREDIT_WITHOUT_PAYMENT, 30_000, 0)
    # When the money arrives, it closes
    intent = kit.stripe.v1.payment_intents.retrieve(wire["payment_intent_id"])
    kit.stripe.v1.test_helpers.customers.fund_cash_balance(
        str(intent.customer),
        params={"amount": 30_000, "currency": "usd", "reference": wire["instructions"]["reference"]},
    )
    stack.stripe.wait_for_deliveries()
    assert kit.reconcile(org_id).resolved == 1 and kit.open(org_id) == []


def test_a_balance_edited_behind_the_ledgers_back_is_found_and_closes_when_restored(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, _ = _clean_month(kit, api, stack, table)
    key = {"PK": f"ORG#{org_id}", "SK": "WALLET"}
    table.update_item(Key=key, UpdateExpression="ADD balance :x", ExpressionAttributeValues={":x": 100_000})
    kit.reconcile(org_id)
    kinds = {d.kind: d for d in kit.open(org_id)}
    assert set(kinds) == {K.BALANCE_NOT_ENTRIES, K.AVAILABLE_NOT_RULE}
    assert kinds[K.BALANCE_NOT_ENTRIES].ours_minor - kinds[K.BALANCE_NOT_ENTRIES].theirs_minor == 100_000
    # Support reads them over the API; the org's own owner may not
    path = f"/v1/orgs/{org_id}/discrepancies"
    seen = api.call("GET", path, as_user=new_user("staff"), groups=("support",), params={"status": "open"})
    assert seen.status == 200 and {d["kind"] for d in seen.body["items"]} == {k.value for k in kinds}
    assert api.call("GET", path, as_user=owner).status == 403
    assert api.call("GET", "/v1/orgs/org_unknown/discrepancies", as_user=new_user(), groups=("support",)).status == 404
    table.update_item(Key=key, UpdateExpression="ADD balance :x", ExpressionAttributeValues={":x": -100_000})
    assert kit.reconcile(org_id).resolved == 2 and kit.open(org_id) == []


def test_a_bill_recorded_while_the_org_is_reconciled_is_not_an_edit_behind_the_ledgers_back(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    assert kit.reconcile(org_id).findings == ()
    real = kit.recon.repo.entry_lines

    def lines_then_a_bill(oid: str) -> Any:
        lines = list(real(oid))
        kit.bill(org_id, project, 777, kit.clock.now().date())  # the platform's bill lands mid-run
        return iter(lines)

    monkeypatch.setattr(kit.recon.repo, "entry_lines", lines_then_a_bill)
    before = kit.balance(org_id)
    assert kit.reconcile(org_id).findings == ()
    assert kit.open(org_id) == [] and kit.balance(org_id) < before  # the bills did land


def test_spend_a_platform_reported_but_never_billed_is_found_and_closes_when_the_late_bill_arrives(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    day = kit.clock.now().date() - timedelta(days=6)
    _report(kit, org_id, project, day.isoformat(), 3_300)
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.ours_minor, found.theirs_minor) == (K.SPEND_NOT_BILLED, 0, 3_300)
    assert kit.recon.desk.unbilled_spend(org_id, kit.clock.now().date()) == 3_300
    kit.bill(org_id, project, 3_300, day)
    assert kit.reconcile(org_id).resolved == 1 and kit.open(org_id) == []
    assert kit.recon.desk.unbilled_spend(org_id, kit.clock.now().date()) == 0


def test_a_spend_report_in_another_currency_or_for_a_project_the_org_does_not_have_is_refused(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    engine = devtokens.service_token("workflow-engine")
    day = (kit.clock.now().date() - timedelta(days=5)).isoformat()  # billed 4_000 USD that day
    body = {"org_id": org_id, "platform": "meta", "project_id": project, "day": day, "amount_minor": 4_000}
    path = "/v1/internal/wallet/spend-reports"
    eur = api.call("POST", path, token=engine, json={**body, "currency": "EUR", "report_id": new_user("rpt")})
    assert (eur.status, eur.body["error"]["code"]) == (422, "currency_mismatch")
    stranger = {**body, "currency": "USD", "project_id": "prj_not_of_this_org", "report_id": new_user("rpt")}
    refused = api.call("POST", path, token=engine, json=stranger)
    assert (refused.status, refused.body["error"]["code"]) == (404, "project_not_found")
    assert kit.reconcile(org_id).findings == ()  # neither was kept: the USD report of that day still agrees


def test_spend_reported_yesterday_is_unbilled_not_a_discrepancy(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, project = _clean_month(kit, api, stack, table)
    before = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
    _report(kit, org_id, project, (kit.clock.now().date() - timedelta(days=1)).isoformat(), 90_000)
    assert kit.reconcile(org_id).findings == ()
    assert kit.recon.desk.unbilled_spend(org_id, kit.clock.now().date()) == 90_000
    # The wallet shows it, and the runway counts it: the balance will pay for it
    wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
    assert (before["unbilled_spend_minor"], wallet["unbilled_spend_minor"]) == (0, 90_000)
    assert wallet["balance_minor"] == before["balance_minor"] and wallet["runway_days"] < before["runway_days"]


# ---------------------------------------------------------------------- invoices <-> sources
def _issue_invoice(kit: ReconcileKit, org_id: str) -> Invoice:
    """The org's invoice of its current period as the invoice run stores it when issued: the Stripe
    invoice that charged the period and the wallet lines of its aggregates."""
    kit.clock.at += timedelta(minutes=5)  # the run drafts it after the bills
    org = kit.recon.services.orgs._repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    rows = kit.recon.services.wallet._repo.period_spend(org_id, period.key)
    lines = [
        InvoiceLine(
            section="ad_spend",
            paid_via="wallet",
            amount_minor=int(row[field]),
            platform=str(row["platform"]),
            project_id=str(row["project_id"]),
            description=f"{field} {row['platform']}",
        )
        for row in rows
        for field in ("ad_spend", "fee")
    ]
    stripe_invoices = kit.stripe.v1.invoices.list(params={"customer": str(org.stripe_customer_id)}).data
    charged = sum(int(i.total) for i in stripe_invoices)
    now = kit.clock.now().isoformat()
    invoice = Invoice(
        invoice_id=invoice_id_of(period),
        org_id=org_id,
        period_key=period.key,
        period_start=period.start.isoformat(),
        period_end=period.end.isoformat(),
        status="draft",
        currency="USD",
        bill_to_name=org.name,
        billing_mode="agency",
        plan_name="Pro",
        lines=lines,
        stripe_invoice_ids=[str(i.id) for i in stripe_invoices],
        totals=Totals(
            charged_through_stripe_minor=charged,
            stripe_unpaid_minor=0,
            paid_from_wallet_minor=sum(line.amount_minor for line in lines),
            total_minor=charged + sum(line.amount_minor for line in lines),
            wallet_deficit_minor=0,
            amount_due_minor=0,
        ),
        created_at=now,
    )
    repo = InvoiceRepository(kit.table)
    assert repo.create_draft(invoice)
    issued = invoice.model_copy(update={"status": "issued", "number": f"LB-TEST-{new_user()}", "issued_at": now})
    assert repo.save(issued, expected_status="draft")
    return issued


def test_a_bill_missing_from_an_issued_invoice_is_found_and_closes_when_the_invoice_is_corrected(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    invoice = _issue_invoice(kit, org_id)
    assert kit.reconcile(org_id).findings == ()
    # Given the stored invoice lost a bill's line (the bill was recorded before the invoice was drafted)
    repo = InvoiceRepository(table)
    dropped = invoice.model_copy(update={"lines": invoice.lines[1:]})
    assert repo.save(dropped, expected_status="issued")
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert found.kind == K.INVOICE_WALLET_LINES
    assert found.theirs_minor - found.ours_minor == invoice.lines[0].amount_minor
    assert found.causes == (invoice.invoice_id,)
    # When the invoice is corrected, it closes
    assert repo.save(invoice, expected_status="issued")
    assert kit.reconcile(org_id).resolved == 1 and kit.open(org_id) == []


def test_an_invoice_whose_stripe_total_is_not_stripes_is_found(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    invoice = _issue_invoice(kit, org_id)
    assert invoice.totals is not None
    wrong = invoice.totals.model_copy(
        update={"charged_through_stripe_minor": invoice.totals.charged_through_stripe_minor + 1}
    )
    assert InvoiceRepository(table).save(invoice.model_copy(update={"totals": wrong}), expected_status="issued")
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.ours_minor - found.theirs_minor) == (K.INVOICE_STRIPE_TOTAL, 1)


def test_an_invoice_naming_a_stripe_invoice_stripe_does_not_have_is_a_discrepancy_not_a_crash(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    invoice = _issue_invoice(kit, org_id)
    gone = invoice.model_copy(update={"stripe_invoice_ids": ["in_vanished00000"]})
    assert InvoiceRepository(table).save(gone, expected_status="issued")
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.theirs_minor) == (K.INVOICE_STRIPE_TOTAL, 0)


# ---------------------------------------------------------------------- credits and usage <-> Stripe
def test_overage_never_put_on_a_stripe_invoice_is_found_and_closes_when_billed(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    services = kit.recon.services
    org = services.orgs._repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    # Given 60 GB of media stored in the period (10 over Pro's 50), and the renewal that closed it gone
    # by with no overage on it (its invoice.created was never handled)
    services.usage.record_storage(org_id, kit.clock.now(), 60 * 10**9)
    kit.clock.at = period.end + timedelta(days=1)
    kit.reconcile(org_id)
    (found,) = kit.open(org_id)
    assert (found.kind, found.scope) == (K.OVERAGE_NOT_BILLED, f"overage:{period.key}:media_storage_gb")
    assert found.ours_minor > 0 and found.theirs_minor == 0
    # When the overage is billed (the deferred path: a pending item for the customer's next invoice), it closes
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    overage = OverageBilling(services.orgs, OrgRepository(table), CreditRepository(table), services.usage, gateway)
    first = gateway.list_invoices(customer_id=str(org.stripe_customer_id))[0]
    renewal = replace(first, status="open", period_end=int(period.end.timestamp()))
    assert overage.bill_renewal(org_id, renewal).added_minor == found.ours_minor
    assert kit.reconcile(org_id).resolved == 1 and kit.open(org_id) == []


# ---------------------------------------------------------------------- the daily run
def _daily(kit: ReconcileKit, org_id: str) -> None:
    """What the daily run does for the org: yesterday's range only."""
    today = kit.clock.now().date()
    kit.recon.reconciler.reconcile_org(org_id, today - timedelta(days=1), today)


def test_the_daily_run_closes_an_overage_discrepancy_of_an_older_period_once_it_is_billed(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    services = kit.recon.services
    org = services.orgs._repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    services.usage.record_storage(org_id, kit.clock.now(), 60 * 10**9)
    kit.clock.at = period.end + timedelta(days=1, hours=4)
    # the run of the day the period closed
    kit.recon.reconciler.reconcile_org(org_id, period.end.date(), period.end.date() + timedelta(days=1))
    (found,) = kit.open(org_id)
    assert found.kind == K.OVERAGE_NOT_BILLED
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    overage = OverageBilling(services.orgs, OrgRepository(table), CreditRepository(table), services.usage, gateway)
    first = gateway.list_invoices(customer_id=str(org.stripe_customer_id))[0]
    assert overage.bill_renewal(org_id, replace(first, status="open", period_end=int(period.end.timestamp())))
    kit.clock.at += timedelta(days=3)  # billed days later: the period is long out of the daily range
    _daily(kit, org_id)
    assert kit.open(org_id) == []
    assert kit.recon.repo.discrepancy(org_id, found.kind.value, found.scope).resolution == "agrees"  # type: ignore[union-attr]


def test_the_daily_run_closes_an_invoice_discrepancy_once_the_invoice_is_corrected_days_later(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    invoice = _issue_invoice(kit, org_id)
    repo = InvoiceRepository(table)
    assert repo.save(invoice.model_copy(update={"lines": invoice.lines[1:]}), expected_status="issued")
    kit.clock.at += timedelta(days=1)
    _daily(kit, org_id)  # the run of the day it was issued
    assert [d.kind for d in kit.open(org_id)] == [K.INVOICE_WALLET_LINES]
    assert repo.save(invoice, expected_status="issued")
    kit.clock.at += timedelta(days=2)
    _daily(kit, org_id)
    assert kit.open(org_id) == []


def test_the_daily_run_closes_spend_not_billed_when_the_bill_arrives_after_the_recheck_week(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    day = kit.clock.now().date() - timedelta(days=6)
    _report(kit, org_id, project, day.isoformat(), 3_300)
    _daily(kit, org_id)
    assert [d.kind for d in kit.open(org_id)] == [K.SPEND_NOT_BILLED]
    kit.clock.at += timedelta(days=10)  # billed 16 days after the spend
    kit.bill(org_id, project, 3_300, day)
    _daily(kit, org_id)
    assert kit.open(org_id) == []


def test_an_org_whose_reconciliation_raises_is_kept_as_failed_and_the_run_goes_on_to_the_others(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, poisoned, _ = _clean_month(kit, api, stack, table)
    seen: list[str] = []
    real = kit.recon.reconciler

    class OneOrgRaises:
        """The real reconciler's records; its per-org work faked (one org raises, the others pass)."""

        def reconcile_org(self, org_id: str, day_from: date, day_to: date) -> OrgReport:
            if org_id == poisoned:
                raise RuntimeError("Stripe said 404")
            seen.append(org_id)
            return OrgReport(org_id, frozenset(), ())

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    day = date(2040, 1, 1) + timedelta(days=random.randrange(3000))
    orgs = [poisoned, new_user("org_other")]
    run = ReconcileRun(OneOrgRaises(), kit.recon.repo, WalletRepository(table), kit.recon.run._reads, lambda d: orgs)  # type: ignore[arg-type]
    summary = run.run(day, day + timedelta(days=1), lambda: 900.0)
    assert summary.done and summary.failed == 1 and orgs[1] in seen
    (failed,) = kit.open(poisoned)
    assert (failed.kind, failed.note) == (K.RECONCILE_FAILED, "RuntimeError: Stripe said 404")
    # a later whole run of the org resolves it
    assert kit.reconcile(poisoned).resolved == 1 and kit.open(poisoned) == []


def test_the_daily_run_queues_an_org_whose_only_movement_of_the_day_was_a_bill(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, project = agency_with_top_up(api, stack, table)
    # a day of its own, with no Stripe movement and no spend report: only the platform's bill
    kit.clock.at = day_start(date(2045, 1, 1) + timedelta(days=random.randrange(3000))) + timedelta(hours=9)
    day = kit.clock.now().date()
    kit.bill(org_id, project, 4_000, day)
    stopped = kit.recon.run.run(day, day + timedelta(days=1), lambda: 1.0)  # finds its orgs, no time for them
    assert not stopped.done
    assert (org_id, False) in kit.recon.repo.queued_orgs(f"{day.isoformat()}_{(day + timedelta(days=1)).isoformat()}")
    quiet = day + timedelta(days=1)  # a day it did not move: not queued for it
    kit.recon.run.run(quiet, quiet + timedelta(days=1), lambda: 1.0)
    queued = {
        o for o, _ in kit.recon.repo.queued_orgs(f"{quiet.isoformat()}_{(quiet + timedelta(days=1)).isoformat()}")
    }
    assert org_id not in queued


def test_the_daily_run_finds_its_orgs_in_stripes_lists_resumes_where_it_stopped_and_runs_once(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    # Given an org with a card payment made for its wallet on a day of its own (a test clock), which no
    # top-up of ours asked for
    day = date(2025, 1, 1) + timedelta(days=random.randrange(3000))  # a day no other test uses
    clock = kit.stripe.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(day_start(day).timestamp()) + 3600}
    )
    owner = new_user()
    org_id = str(api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Clocked"}).body["org_id"])
    customer = kit.stripe.v1.customers.create(params={"name": org_id, "test_clock": clock.id})
    assert OrgRepository(table).link_stripe_customer(org_id, customer.id) == customer.id
    with stack.stripe.webhooks_lost():
        kit.stripe.v1.payment_intents.create(
            params={
                "amount": 4_200,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
                "metadata": {"org_id": org_id, "kind": "wallet_topup", "topup_id": "not-ours"},
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
    run = kit.recon.run
    # When the first invocation has no time left, it found its orgs and stops
    stopped = run.run(day, day + timedelta(days=1), lambda: 1.0)
    assert not stopped.done and stopped.orgs == 0
    # Then the next resumes and reconciles them
    summary = run.run(day, day + timedelta(days=1), lambda: 900.0)
    assert summary.done and summary.orgs >= 1 and summary.stripe_reads > 0
    (found,) = kit.open(org_id)
    assert (found.kind, found.theirs_minor) == (K.PAYMENT_NOT_CREDITED, 4_200)
    # And a finished day is not done again
    before = _settled(stack, table, org_id)
    again = run.run(day, day + timedelta(days=1), lambda: 900.0)
    assert again.done and (again.opened, again.stripe_reads) == (0, 0)
    assert _settled(stack, table, org_id) == before


# ---------------------------------------------------------------------- outside re-check (issue 18)
def _clocked_org(kit: ReconcileKit, api: ApiClient, at: int) -> tuple[str, str, str]:
    """An org whose Stripe customer lives on a test clock frozen at `at` (a day no other test uses).
    Returns (org id, customer id, clock id)."""
    clock = kit.stripe.v1.test_helpers.test_clocks.create(params={"frozen_time": at})
    org_id = str(api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Clocked"}).body["org_id"])
    customer = kit.stripe.v1.customers.create(params={"name": org_id, "test_clock": clock.id})
    assert OrgRepository(kit.table).link_stripe_customer(org_id, customer.id) == customer.id
    return org_id, customer.id, clock.id


def test_a_wire_funded_in_two_parts_across_midnight_is_checked_the_day_it_succeeds_not_the_day_it_was_made(
    kit: ReconcileKit, api: ApiClient, stack: Any
) -> None:
    # Given a wire top-up payment made at 23:59:59 and funded in part that second, its webhooks lost (no
    # top-up of ours names it: the run cannot credit it, a person must)
    day = date(2060, 1, 1) + timedelta(days=random.randrange(3000))
    org_id, customer, clock = _clocked_org(kit, api, int(day_start(day).timestamp()) + 86_399)
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    with stack.stripe.webhooks_lost():
        intent_id, shown = gateway.start_bank_payment(
            customer_id=customer,
            method="wire",
            amount_minor=30_000,
            currency="USD",
            metadata={"org_id": org_id, "kind": "wallet_topup", "topup_id": "not-ours"},
            key=new_user("wire"),
        )
        funding = {"currency": "usd", "reference": shown["reference"]}
        kit.stripe.v1.test_helpers.customers.fund_cash_balance(customer, params={**funding, "amount": 10_000})
    # Then the run of that day finds nothing: Stripe kept nothing yet
    run, paid_on = kit.recon.run, day + timedelta(days=3)
    assert run.run(day, day + timedelta(days=1), lambda: 900.0).done and kit.open(org_id) == []
    # When the rest arrives three days later, just after midnight
    with stack.stripe.webhooks_lost():
        advance_clock(kit.stripe, clock, int(day_start(paid_on).timestamp()) + 30)
        kit.stripe.v1.test_helpers.customers.fund_cash_balance(customer, params={**funding, "amount": 20_000})
    assert kit.stripe.v1.payment_intents.retrieve(intent_id).status == "succeeded"
    # Then the run of the day it succeeded queues the org (from Stripe's events: the payment was not made
    # that day) and finds the money Stripe kept that the wallet never credited
    summary = run.run(paid_on, paid_on + timedelta(days=1), lambda: 900.0)
    assert summary.done and summary.orgs >= 1
    (found,) = kit.open(org_id)
    assert (found.kind, found.scope, found.theirs_minor) == (K.PAYMENT_NOT_CREDITED, f"payment:{intent_id}", 30_000)
    # And a range overlapping both runs finds the same, and keeps it as it was (no second event)
    assert run.run(day - timedelta(days=1), paid_on + timedelta(days=2), lambda: 900.0).done
    assert kit.all(org_id) == [found]


def _days_ago(kit: ReconcileKit, stack: Any, org_id: str, intent_id: str, days: float) -> None:
    """The top-up, its Stripe payment and what was made on it, moved `days` back (made and credited then)."""
    store, back = stack.stripe.store, round(days * 86_400)
    with store.lock:
        for obj in list(store.objects.values()):
            if obj["id"] == intent_id or obj.get("payment_intent") == intent_id:
                obj["created"] -= back
    (topup,) = [t for t in kit.recon.repo.topups(org_id) if t.payment_intent_id == intent_id]
    earlier = (datetime.fromisoformat(str(topup.credited_at)) - timedelta(seconds=back)).isoformat()
    kit.table.update_item(
        Key={"PK": f"ORG#{org_id}", "SK": f"TOPUP#{topup.topup_id}"},
        UpdateExpression="SET credited_at = :at",
        ExpressionAttributeValues={":at": earlier},
    )


def test_a_dispute_made_days_ago_and_won_today_with_its_webhook_lost_is_given_back_by_todays_run(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    (paid,) = kit.recon.repo.topups(org_id)
    intent_id = str(paid.payment_intent_id)
    balance = kit.balance(org_id)
    # Given a dispute of the top-up, taken from the wallet by its webhook, both five days ago
    charge = str(kit.stripe.v1.payment_intents.retrieve(intent_id).latest_charge)
    kit.stripe.raw_request("post", f"/_emulator/charges/{charge}/dispute", amount=20_000)
    stack.stripe.wait_for_deliveries()
    assert kit.balance(org_id) == balance - 20_000
    _days_ago(kit, stack, org_id, intent_id, 5)
    assert kit.reconcile(org_id).findings == ()
    # When the org wins it today, and the webhook is lost
    store = stack.stripe.store
    with stack.stripe.webhooks_lost(), store.lock:
        dispute = next(o for o in store.objects.values() if o["object"] == "dispute" and o["charge"] == charge)
        dispute["status"] = "won"
        store.emit("charge.dispute.closed", dispute)
    # Then today's run (the payment and the dispute were made days before) gives the money back, once
    _daily_of_today(kit, org_id)
    (found,) = kit.all(org_id)
    assert (found.kind, found.ours_minor, found.theirs_minor) == (K.DISPUTE_NOT_REFLECTED, 20_000, 0)
    assert found.resolution == "auto_corrected" and kit.balance(org_id) == balance
    _daily_of_today(kit, org_id)
    assert kit.balance(org_id) == balance and kit.open(org_id) == []


def _daily_of_today(kit: ReconcileKit, org_id: str) -> OrgReport:
    today = kit.clock.now().date()
    return kit.recon.reconciler.reconcile_org(org_id, today, today + timedelta(days=1))


def test_holds_placed_and_settled_while_the_org_is_reconciled_open_nothing(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    wallet, repo = kit.recon.services.wallet, kit.recon.repo
    settled = new_user("hold")
    wallet.hold(org_id=org_id, hold_id=settled, project_id=project, platform="meta", amount_minor=2_000)
    assert kit.reconcile(org_id).findings == ()
    real_lines, real_holds = repo.entry_lines, repo.pending_holds
    placed = new_user("hold")
    writes = iter(
        [
            # between the wallet's read and its holds': a hold the wallet read has not got, the holds will
            lambda: wallet.hold(org_id=org_id, hold_id=placed, project_id=project, platform="meta", amount_minor=3_000),
            # once the holds were read: the bill that exhausts one of them (held moves, a hold read is gone)
            lambda: wallet.record_bill(
                Bill(org_id, "meta", new_user("bill"), project, 2_000, "USD", kit.clock.now().date(), settled, "t")
            ),
        ]
    )

    def lines_then_a_write(oid: str) -> Any:
        lines = list(real_lines(oid))
        next(writes, lambda: None)()
        return iter(lines)

    def holds_then_a_write(oid: str) -> Any:
        holds = real_holds(oid)
        next(writes, lambda: None)()
        return holds

    monkeypatch.setattr(repo, "entry_lines", lines_then_a_write)
    monkeypatch.setattr(repo, "pending_holds", holds_then_a_write)
    report = kit.reconcile(org_id)
    assert report.findings == () and kit.open(org_id) == []
    assert {h.hold_id for h in real_holds(org_id)} == {placed}  # both writes landed mid-run
    monkeypatch.undo()
    assert kit.reconcile(org_id).findings == ()


def test_an_org_switched_from_byo_to_agency_mid_month_reconciles_with_nothing_found(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    # Given a Pro org on its own ad accounts (BYO) whose platforms report its spend (billed to the customer)
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Switcher", plan_id="pro", billing_mode="byo")
    project = str(api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "L"}).body["project_id"])
    today = kit.clock.now().date()
    for back in (12, 11, 10):
        _report(kit, org_id, project, (today - timedelta(days=back)).isoformat(), 5_000 + back)
    assert kit.reconcile(org_id).findings == () and kit.recon.desk.unbilled_spend(org_id, today) == 0
    # When it switches to agency mode mid-month, tops up, and its spend is billed as reported
    switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert switched.status == 200, switched.body
    top_up(api, stack, owner, org_id, 50_000)
    for back, amount in ((4, 4_000), (3, 2_500)):
        day = today - timedelta(days=back)
        kit.bill(org_id, project, amount, day)
        _report(kit, org_id, project, day.isoformat(), amount)
    # Then the month reconciles with nothing found, and only agency spend would count as unbilled
    assert kit.reconcile(org_id).findings == () and kit.all(org_id) == []
    _report(kit, org_id, project, (today - timedelta(days=5)).isoformat(), 3_000)  # agency, never billed
    (found,) = kit.reconcile(org_id).findings
    assert (found.kind, found.theirs_minor) == (K.SPEND_NOT_BILLED, 3_000)


def test_a_report_resent_after_the_platform_restated_it_does_not_take_the_restatement_back(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, project = _clean_month(kit, api, stack, table)
    day = (kit.clock.now().date() - timedelta(days=4)).isoformat()  # billed 2_500 that day, reported so
    desk = kit.recon.desk

    def sent(amount: int, report_id: str) -> bool:
        kit.clock.at += timedelta(seconds=1)
        return desk.report_spend(
            SpendReport(org_id, "meta", project, day, amount, "USD", report_id, kit.clock.now().isoformat())
        )

    # Given the platform's first report of the day, then its restatement (what it billed), each sent twice
    first, restated = new_user("rpt"), new_user("rpt")
    assert sent(2_400, first) and sent(2_400, first)  # a duplicate of the latest: kept, the same
    assert sent(2_500, restated) and sent(2_500, restated)
    # When the first is resent late (a retry after a timeout), it is not kept: the restatement stands
    assert not sent(2_400, first)
    assert kit.reconcile(org_id).findings == ()


def test_a_run_that_dies_after_correcting_a_payment_leaves_it_found_and_its_rerun_resolves_it(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    (paid,) = kit.recon.repo.topups(org_id)
    balance = kit.balance(org_id)
    with stack.stripe.webhooks_lost():
        kit.stripe.v1.refunds.create(params={"payment_intent": str(paid.payment_intent_id), "amount": 3_000})

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("the invocation ran out of time")

    # Given a run that took the dashboard refund from the wallet, then died before it kept what it did
    monkeypatch.setattr(kit.recon.reconciler, "_record", dies)
    with pytest.raises(TimeoutError):
        kit.reconcile(org_id)
    monkeypatch.undo()
    assert kit.balance(org_id) == balance - 3_000
    (found,) = kit.open(org_id)  # what it corrected is on the books, not lost with the run
    assert (found.kind, found.theirs_minor) == (K.REFUND_NOT_REFLECTED, 3_000)
    # When it is re-run, it resolves it and takes nothing twice
    assert kit.reconcile(org_id).resolved == 1 and kit.open(org_id) == []
    assert kit.balance(org_id) == balance - 3_000


def test_a_dashboard_refund_today_of_a_top_up_made_at_235959_yesterday_is_taken_once_by_either_days_run(
    kit: ReconcileKit, api: ApiClient, stack: Any, table: Any
) -> None:
    _, org_id, _ = _clean_month(kit, api, stack, table)
    (paid,) = kit.recon.repo.topups(org_id)
    intent_id, today = str(paid.payment_intent_id), kit.clock.now().date()
    # Given the top-up made and credited at 23:59:59 yesterday (as Stripe and the wallet have it)
    made = datetime.fromtimestamp(kit.stripe.v1.payment_intents.retrieve(intent_id).created, UTC)
    _days_ago(
        kit, stack, org_id, intent_id, (made - (day_start(today) - timedelta(seconds=1))).total_seconds() / 86_400
    )
    assert datetime.fromtimestamp(kit.stripe.v1.payment_intents.retrieve(intent_id).created, UTC).second == 59
    balance = kit.balance(org_id)
    # When it is partly refunded in the dashboard today, the webhook lost
    with stack.stripe.webhooks_lost():
        kit.stripe.v1.refunds.create(params={"payment_intent": intent_id, "amount": 2_000})
    # Then yesterday's run (run late) and today's each see it; it is taken once
    yesterday = kit.recon.reconciler.reconcile_org(org_id, today - timedelta(days=1), today)
    assert yesterday.corrected == 1 and kit.balance(org_id) == balance - 2_000
    assert _daily_of_today(kit, org_id).findings == () and kit.balance(org_id) == balance - 2_000
    (found,) = kit.all(org_id)
    assert (found.kind, found.resolution) == (K.REFUND_NOT_REFLECTED, "auto_corrected")


def test_spend_a_platform_reported_but_the_invoice_missed_closes_when_the_late_bill_lands_on_the_next_invoice(
    stack: Any,
) -> None:
    # Given an agency org whose first period's invoice was issued by the real invoice steps
    wallets = wallet_kit(stack, datetime(2027, 3, 30, 14, 37, 12, tzinfo=UTC) + timedelta(days=random.randrange(900)))
    settings = ApiSettings.model_validate(_settings(stack.env))
    gateway = StripeGateway(API_KEY, "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    recon = build_reconciliation(settings, clock=wallets.clock, table=wallets.repo._table, gateway=gateway)
    org_id, project, _ = agency_org(wallets)
    fund(wallets, org_id, 1_000_000, f"fund-{org_id}")
    org = wallets.org_repo.require_org(org_id)
    first = period_containing(org, wallets.clock.now())
    second = period_containing(org, first.end)
    spent_on, missed_on = first.start.date() + timedelta(days=2), first.start.date() + timedelta(days=5)

    def report(day: date, amount: int) -> None:
        at = wallets.clock.now().isoformat()
        assert recon.desk.report_spend(SpendReport(org_id, "meta", project, day.isoformat(), amount, "USD", at, at))

    def bill(day: date, amount: int) -> None:
        wallets.wallet.record_bill(Bill(org_id, "meta", new_user("b"), project, amount, "USD", day, None, "feed"))

    def reconcile() -> OrgReport:
        today = wallets.clock.now().date()
        return recon.reconciler.reconcile_org(org_id, first.start.date(), today + timedelta(days=1))

    def invoice(period: Any) -> None:
        wallets.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
        steps = wallets.services.invoices
        for step in (steps.close, steps.collect, steps.finalize, steps.render, steps.issue):
            step(org_id, period.key)

    wallets.clock.at = datetime.combine(spent_on, datetime.min.time(), UTC) + timedelta(hours=20)
    bill(spent_on, 4_000)
    report(spent_on, 4_000)
    report(missed_on, 2_500)  # the platform spent this day; its bill is late
    invoice(first)
    found = {f.kind for f in reconcile().findings}
    assert found == {K.SPEND_NOT_BILLED}  # the report with no bill; the invoice holds every bill it had
    # When the late bill arrives in the next period, it closes (the issued invoice is not edited)
    wallets.clock.at += timedelta(days=2)
    bill(missed_on, 2_500)
    report_now = reconcile()
    assert report_now.findings == () and report_now.resolved == 1
    # And the next invoice, which carries it as late for the first period, reconciles clean
    invoice(second)
    assert reconcile().findings == () and recon.repo.all_of_org(org_id, status="open") == []
