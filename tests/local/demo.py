"""`make demo`: the billing walk-through on the local stack, driven over HTTP as the web app would.

Each later issue extends this script until it runs a whole billing month."""

from __future__ import annotations

import calendar
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import requests
import time_machine

from shared.money import format_minor
from shared.wallet.account import HOLD_DEFAULT_LIFETIME
from tests.helpers import start_invoice_run
from tests.integration.stripe_kit import DAY, StripeKit
from tests.local import devtokens
from tests.local.stack import LocalStack, start_local_stack


def say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    print(f"  - {title} ...", end="", flush=True)
    started = time.monotonic()
    yield
    print(f" ok ({time.monotonic() - started:.1f}s)", flush=True)


class WebApp:
    """What the Layers web app does: call the API with the signed-in person's token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def post_as_service(self, token: str, path: str, body: Any, expect: int) -> Any:
        resp = self.http.post(self.base_url + path, json=body, timeout=30, headers={"Authorization": f"Bearer {token}"})
        if resp.status_code != expect:
            raise SystemExit(f"demo: POST {path} returned {resp.status_code}, expected {expect}: {resp.text}")
        return resp.json()

    def call(
        self,
        user: str,
        method: str,
        path: str,
        body: Any = None,
        expect: int | None = None,
        headers: dict[str, str] | None = None,
        groups: str | None = None,
    ) -> Any:
        token = devtokens.mint(user, email=f"{user}@northwind.example", groups=[groups] if groups else ())
        resp = self.http.request(
            method,
            self.base_url + path,
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )
        data = resp.json() if resp.content else None
        if expect is not None and resp.status_code != expect:
            raise SystemExit(f"demo: {method} {path} returned {resp.status_code}, expected {expect}: {data}")
        return data


def money(minor: int | None) -> str:
    return "n/a" if minor is None else format_minor(minor, "USD")


def main() -> int:
    say("Layers Billing demo - local stack, HTTP API, real handlers")
    say()
    say("Starting the local stack")
    with step("DynamoDB Local (tables from template.yaml) and moto server"):
        stack = start_local_stack()
        stack.apply_env()
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # keep the walk-through readable
    with step("local HTTP API (JWT authorizer), Stripe emulator sending webhooks to it"):
        _, base_url = stack.serve_api()
    try:
        run(WebApp(base_url), stack)
    finally:
        stack.stop()
    return 0


def run(web: WebApp, stack: LocalStack) -> None:
    alice, bob, carol, dan = "alice", "bob", "carol", "dan"

    say()
    say("1. The plan catalog (public: GET /v1/plans)")
    plans = web.http.get(web.base_url + "/v1/plans", timeout=30).json()["plans"]
    for p in plans:
        usd = p["prices"]["USD"]
        seats = "unlimited" if p["included_seats"] is None else p["included_seats"]
        projects = "unlimited" if p["max_active_projects"] is None else p["max_active_projects"]
        say(
            f"   {p['name']:<11} {money(usd['base_minor']):>9}/mo  {p['included_credits']:>6} credits  "
            f"seats {seats!s:<9} projects {projects!s:<9} agency {'yes' if p['agency_mode_allowed'] else 'no'}"
        )

    say()
    say("2. Alice creates an org: a paid plan is what Stripe bills, so orgs start on Free")
    refused = web.call(
        alice,
        "POST",
        "/v1/orgs",
        {"name": "Northwind", "billing_mode": "agency", "plan_id": "pro"},
        expect=409,
    )
    say(f"   on Pro, in agency mode -> refused: {refused['error']['code']}")
    say(f'     "{refused["error"]["message"]}"')
    org = web.call(alice, "POST", "/v1/orgs", {"name": "Northwind Growth"}, expect=201)
    org_id = org["org_id"]
    say(f"   created {org_id} on {org['plan']['name']} ({org['billing_mode']} mode, standing {org['standing']})")

    month = subscribe(web, stack, org_id)
    switched = web.call(alice, "PATCH", f"/v1/orgs/{org_id}", {"billing_mode": "agency"}, expect=200)
    say(f"   Pro is paid: agency mode on (platform fee {switched['platform_fee_bps']} bps)")
    details = {"address_lines": ["Kurfürstendamm 21", "10719 Berlin", "Germany"], "tax_id": "DE 123 456 789"}
    web.call(alice, "PATCH", f"/v1/orgs/{org_id}", {"billing_details": details}, expect=200)
    say("   billing details for its invoices: address and VAT id")

    say()
    say("4. Alice adds her team (each active member is a seat)")
    for user, role in ((bob, "admin"), (carol, "billing"), (dan, "member")):
        web.call(alice, "POST", f"/v1/orgs/{org_id}/members", {"user_id": user, "role": role}, expect=201)
        say(f"   + {user} as {role}")
    forbidden = web.call(dan, "POST", f"/v1/orgs/{org_id}/members", {"user_id": "eve"}, expect=403)
    say(f"   dan (member) tries to add eve -> {forbidden['error']['code']}: {forbidden['error']['message']}")
    month.kit.synced()  # the seat syncs go to Stripe through the outbox
    sub = web.call(carol, "GET", f"/v1/orgs/{org_id}/subscription", expect=200)
    say(f"   {sub['members']} members: {sub['extra_seats_billed']} extra seat billed by Stripe (3 included)")

    say()
    say("5. Bob (admin) creates projects up to the plan's limit")
    for name in ("Spring launch", "Always-on UGC", "Retargeting"):
        project = web.call(bob, "POST", f"/v1/orgs/{org_id}/projects", {"name": name}, expect=201)
        say(f"   + {project['name']} ({project['project_id']})")
    limit = web.call(bob, "POST", f"/v1/orgs/{org_id}/projects", {"name": "Black Friday"}, expect=409)
    say(f"   + Black Friday -> refused: {limit['error']['code']}")
    say(f'     "{limit["error"]["message"]}"')

    plan_changes(web, stack, org_id, month)
    credits_month(web, stack, org_id, month)
    wallet_month(web, stack, org_id, month)
    project_budgets(web, stack, org_id)
    last_run = invoice_month(web, stack, org_id, month)
    dunning(web, stack, month)

    summary = web.call(alice, "GET", f"/v1/orgs/{org_id}", expect=200)
    seats = summary["seats"]
    say()
    say("Org summary")
    say(f"   {summary['name']} ({summary['org_id']})")
    say(
        f"   plan        {summary['plan']['name']} (catalog {summary['plan']['catalog_version']}), "
        f"billing mode {summary['billing_mode']}, currency {summary['currency']}"
    )
    say(
        f"   seats       {seats['used']} used, {seats['included']} included, extra seats at "
        f"{money(seats['extra_seat_minor'])}/mo each"
    )
    say(f"   projects    {summary['projects']['active']} active of {summary['projects']['limit']}")
    say(f"   agency fee  {summary['platform_fee_bps']} bps of ad spend")
    agency_clients(web, stack, month)
    # After the last invoice run (time travelled there): Northwind's periods before it are invoiced. Last:
    # the reconciliation of every org the demo moved, and its summary.
    with time_machine.travel(last_run + timedelta(hours=1), tick=True):
        reconciliation(web, stack, org_id, month)
    say()
    say("Demo finished.")


def agency_clients(web: WebApp, stack: LocalStack, month: Month) -> None:
    """Issue 21: a new agency org's runway alerts as a week of bills lands; a client statement with markup."""
    kim, spend = "kim", devtokens.service_token("spend-ingestion")
    say()
    say("18. Agency clients: Umbrella's runway alerts as a week of Meta bills lands; a client statement")
    org_id = web.call(kim, "POST", "/v1/orgs", {"name": "Umbrella Agency"}, expect=201)["org_id"]
    month.kit.customer_on_clock(org_id, month.start)
    urls = {"success_url": "https://app.layers.com/ok", "cancel_url": "https://app.layers.com/no"}
    checkout = f"/v1/orgs/{org_id}/subscription/checkout"
    month.kit.complete_checkout(
        web.call(kim, "POST", checkout, {"plan_id": "pro", **urls}, expect=201)["checkout_session_id"]
    )
    web.call(kim, "PATCH", f"/v1/orgs/{org_id}", {"billing_mode": "agency"}, expect=200)
    client = web.call(kim, "POST", f"/v1/orgs/{org_id}/projects", {"name": "Acme Shoes"}, expect=201)["project_id"]
    top_up = {"amount_minor": 100_000, "method": "card"}
    web.call(kim, "POST", f"/v1/orgs/{org_id}/wallet/top-ups", top_up, expect=202, headers={"Idempotency-Key": "umb-1"})
    stack.stripe.wait_for_deliveries()
    watch = Watcher(stack, "demo-runway", "Wallet.RunwayAlert")
    today = datetime.now(UTC).date()
    for back in range(7, 0, -1):  # 8,000 + 400 fee a day for the last 7 days: the rate grows as they land
        bill = {"org_id": org_id, "platform": "meta", "bill_id": f"umb-{back}", "project_id": client}
        bill |= {"amount_minor": 8_000, "currency": "USD", "billed_on": (today - timedelta(days=back)).isoformat()}
        web.post_as_service(spend, "/v1/internal/wallet/bills", bill, expect=200)
    say("   1,000.00 topped up; 7 days of 80.00 Meta bills land (+ 5 % fee: 84.00 a day)")
    for kind, text in watch.received(org_id):
        if kind == "notify Wallet.RunwayAlert":  # with its event (the optimizer's and the web app's)
            say(f"     event + {kind:<28} {text}")
    w = web.call(kim, "GET", f"/v1/orgs/{org_id}/wallet", expect=200)
    tip = w["funding_suggestion"]
    say(
        f"   runway {w['runway_tenths'] // 10}.{w['runway_tenths'] % 10} days at {money(w['daily_rate_minor'])}/day, "
        f"next alert at {w['next_alert_days']} days; top up {money(tip['amount_minor'])} by {tip['method']} "
        f"for {tip['restores_days']} days (7 x 84.00 - 412.00)"
    )
    base = f"/v1/orgs/{org_id}/projects/{client}"
    web.call(kim, "PUT", f"{base}/statement-settings", {"markup_bps": 1_500}, expect=200)
    statement_id = web.call(kim, "GET", f"{base}/statements", expect=200)["items"][0]["statement_id"]
    s = web.call(kim, "GET", f"{base}/statements/{statement_id}", expect=200)
    say(
        f"   statement {statement_id} for {s['project_name']} ({s['status']}): ad spend {money(s['ad_spend_minor'])}"
        f" + fee {money(s['platform_fee_minor'])} + credits {money(s['credits_cost_minor'])} = "
        f"{money(s['subtotal_minor'])}; markup 15 % {money(s['markup_minor'])}; total {money(s['total_minor'])}"
    )
    pdf = web.http.get(web.call(kim, "GET", f"{base}/statements/{statement_id}/pdf", expect=200)["url"], timeout=30)
    csv_rows = web.http.get(
        web.call(kim, "GET", f"{base}/statements/{statement_id}/csv", expect=200)["url"], timeout=30
    )
    say(f"   PDF {len(pdf.content):,} bytes, CSV {len(csv_rows.text.splitlines()) - 1} rows (amounts sum to the total)")


def reconciliation(web: WebApp, stack: LocalStack, org_id: str, month: Month) -> None:
    """Issue 18: the daily reconciliation over the demo's days, after a refund made in Stripe's dashboard
    whose webhook never arrived."""
    say()
    say("19. Reconciliation: every org that moved, checked against Stripe, the platforms and its own books")
    client = month.kit.client
    intents = client.v1.payment_intents.list(params={"customer": month.customer, "limit": 100}).data
    paid = next(
        i
        for i in intents
        if i.status == "succeeded" and (i.metadata.to_dict() if i.metadata else {}).get("kind") == "wallet_topup"
    )
    with stack.stripe.webhooks_lost():
        client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1_000})
    say(f"   a refund of {money(1_000)} made in Stripe's dashboard on {paid.id}; its webhook never arrived")
    frozen = client.v1.test_helpers.test_clocks.retrieve(month.clock).frozen_time
    first = datetime.fromtimestamp(min(month.start, time.time()), UTC).date() - timedelta(days=1)
    last = datetime.fromtimestamp(max(frozen, time.time()), UTC).date() + timedelta(days=2)
    event = {"from": first.isoformat(), "to": last.isoformat()}
    body, error = stack.local_lambda.invoke("ReconcilerFunction", event)
    assert error is None, body
    ran = json.loads(body)
    found = web.call("sam", "GET", f"/v1/orgs/{org_id}/discrepancies", groups="support", expect=200)["items"]
    for d in found:
        say(
            f"   support sees: {d['kind']} on {d['scope']}: ours {money(d['ours_minor'])}, "
            f"Stripe {money(d['theirs_minor'])} -> {d['status']} ({d['resolution']})"
        )
    again, error = stack.local_lambda.invoke("ReconcilerFunction", event)
    assert error is None, again
    say(f"   the same days again: {json.loads(again)['findings']} found (a finished day is done once)")
    say()
    say(f"Reconciliation summary ({event['from']} to {event['to']}, ReconcilerFunction)")
    say(f"   orgs checked {ran['orgs']}, Stripe reads {ran['stripe_reads']} (rate-limited)")
    say(
        f"   found {ran['findings']}: auto-corrected {ran['corrected']}, resolved {ran['resolved']}, "
        f"still open {ran['open_total']}"
    )
    for kind, count in sorted(ran["by_kind"].items()):
        say(f"     {count} x {kind}")


@dataclass
class Month:
    kit: StripeKit
    clock: str
    customer: str
    start: int
    days: int


def subscribe(web: WebApp, stack: LocalStack, org_id: str) -> Month:
    """Checkout: the plan starts when Stripe says it is paid. The month runs on a Stripe test clock from
    the 1st of this month, so every figure is exact."""
    alice = "alice"
    kit = StripeKit(stack, boto3.resource("dynamodb").Table(stack.env["TABLE_NAME"]))
    today = datetime.now(UTC)
    first = datetime(today.year, today.month, 1, tzinfo=UTC)
    start = int(first.timestamp())
    days = calendar.monthrange(first.year, first.month)[1]
    clock, customer = kit.customer_on_clock(org_id, start)

    say()
    say(f"3. Alice subscribes to Pro through Stripe Checkout (Stripe test clock: {first:%d %b %Y})")
    wish = web.call(alice, "PUT", f"/v1/orgs/{org_id}/plan", {"plan_id": "pro"}, expect=409)
    say(f"   PUT /plan pro without paying -> {wish['error']['code']}")
    session = web.call(
        alice,
        "POST",
        f"/v1/orgs/{org_id}/subscription/checkout",
        {
            "plan_id": "pro",
            "success_url": "https://app.layers.com/billing/done",
            "cancel_url": "https://app.layers.com/billing",
        },
        expect=201,
    )
    say(f"   checkout url {session['url'][:72]}...")
    kit.complete_checkout(session["checkout_session_id"])
    sub = web.call(alice, "GET", f"/v1/orgs/{org_id}/subscription", expect=200)
    first_invoice = kit.client.v1.invoices.list(params={"customer": customer}).data[0]
    say(f"   paid on Stripe -> webhooks -> status {sub['status']}, plan {sub['plan']['name']} ({sub['standing']})")
    say(
        f"   period {sub['current_period_start'][:10]} .. {sub['current_period_end'][:10]}, "
        f"anniversary day {sub['billing_anniversary_day']}, first invoice {money(first_invoice.amount_paid)}"
    )
    return Month(kit, clock, customer, start, days)


def plan_changes(web: WebApp, stack: LocalStack, org_id: str, month: Month) -> None:
    """A seat mid-month, an upgrade and a mid-cycle downgrade with its prorated refund."""
    alice, carol = "alice", "carol"
    kit, clock, customer, start, days = month.kit, month.clock, month.customer, month.start, month.days
    say()
    say("6. Day 5: Alice adds Eve - one more extra seat, prorated onto the next invoice")
    kit.advance(clock, start + 5 * DAY)
    web.call(alice, "POST", f"/v1/orgs/{org_id}/members", {"user_id": "eve", "role": "member"}, expect=201)
    kit.synced()  # the seat sync goes to Stripe through the outbox
    pending = kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    sub = web.call(carol, "GET", f"/v1/orgs/{org_id}/subscription", expect=200)
    say(
        f"   extra seats billed: {sub['extra_seats_billed']}; pending proration lines "
        f"{', '.join(money(i.amount) for i in pending)} = {money(sum(i.amount for i in pending))} "
        f"(one more seat: 15.00 x {days - 5}/{days} days)"
    )

    say()
    say("7. Day 10: upgrade to Scale - preview, then confirm (charged now)")
    kit.advance(clock, start + 10 * DAY)
    show_change(web, carol, org_id, "scale")

    say()
    say("8. Day 20: downgrade back to Pro mid-cycle - the unused part is refunded to the card")
    kit.advance(clock, start + 20 * DAY)
    show_change(web, carol, org_id, "pro")
    stack.stripe.wait_for_deliveries()
    refunds = [
        r
        for r in kit.client.v1.refunds.list(params={"limit": 100}).data
        if r.metadata and r.metadata.to_dict().get("org_id") == org_id
    ]
    balance = kit.client.v1.customers.retrieve(customer).balance or 0
    say(
        f"   Stripe refunds: {', '.join(money(r.amount) for r in refunds)} to the card; "
        f"customer credit left {money(-balance)}"
    )


def credits_month(web: WebApp, stack: LocalStack, org_id: str, month: Month) -> None:
    """Issue 4: the workflow engine generates across two projects past the included credits; the
    renewal invoice carries the overage."""
    alice = "alice"
    engine = devtokens.service_token("workflow-engine")
    projects = {p["name"]: p["project_id"] for p in web.call(alice, "GET", f"/v1/orgs/{org_id}/projects")["items"]}
    plan = [  # (project, template, generation type, quantity per run, runs)
        ("Spring launch", "social-content", "short_form_video", 1, 10),
        ("Always-on UGC", "ugc-video", "short_form_video", 1, 8),
        ("Always-on UGC", "social-content", "slideshow", 3, 5),
    ]
    say()
    say("9. The workflow engine generates across two projects (reserve -> settle, per workflow run)")
    run = 0
    for project, template, generation, quantity, runs in plan:
        for _ in range(runs):
            run += 1
            body = {
                "org_id": org_id,
                "project_id": projects[project],
                "template_id": template,
                "generation_type": generation,
                "quantity": quantity,
                "workflow_run_id": f"demo-run-{run}",
            }
            reserved = web.post_as_service(engine, "/v1/internal/credits/reservations", body, expect=201)
            web.post_as_service(
                engine, f"/v1/internal/credits/reservations/demo-run-{run}/settle", {"org_id": org_id}, expect=200
            )
        say(f"   {runs:>2} x {generation} ({template}, {reserved['credits']} credits each) in {project}")
    failed = {
        "org_id": org_id,
        "project_id": projects["Retargeting"],
        "template_id": "social-content",
        "generation_type": "short_form_video",
        "quantity": 1,
        "workflow_run_id": "demo-run-failed",
    }
    web.post_as_service(engine, "/v1/internal/credits/reservations", failed, expect=201)
    web.post_as_service(
        engine, "/v1/internal/credits/reservations/demo-run-failed/release", {"org_id": org_id}, expect=200
    )
    say("    1 x short_form_video in Retargeting failed -> released, nothing used")
    credits = web.call(alice, "GET", f"/v1/orgs/{org_id}/credits", expect=200)
    names = {v: k for k, v in projects.items()}
    say()
    say(f"   Credits this period ({credits['period_key'][:10]}), pooled across projects:")
    say(f"     {'project':<16}{'used':>8}{'included':>10}{'overage':>9}{'runs':>6}")
    for p in sorted(credits["projects"], key=lambda p: names[p["project_id"]]):
        say(
            f"     {names[p['project_id']]:<16}{p['used']:>8,}{p['included_used']:>10,}{p['overage']:>9,}"
            f"{p['generations']:>6}"
        )
    say(f"     {'total':<16}{credits['used']:>8,}{credits['included_used']:>10,}{credits['overage']:>9,}")
    say(f"   included {credits['included']:,}, available {credits['available']:,}; overage is billed at renewal")

    kit = month.kit
    say()
    say("10. The period ends: Stripe drafts the renewal, our invoice.created handler adds the overage")
    kit.advance(month.clock, month.start + month.days * DAY + 3600 + 60)
    renewal = next(
        i
        for i in kit.client.v1.invoices.list(params={"customer": month.customer}).data
        if i.billing_reason == "subscription_cycle"
    )
    for line in renewal.lines.data:
        say(f"     {money(line.amount):>12}  {line.description}")
    say(f"   renewal invoice {renewal.number}: total {money(renewal.total)}, {renewal.status}")


def wallet_month(web: WebApp, stack: LocalStack, org_id: str, month: Month) -> None:
    """Issue 5: the agency ad-spend wallet - card top-up, spend on three platforms across two projects,
    auto-top-up, a failing card (pause + notification), a manual top-up (resume)."""
    carol = "carol"
    optimizer, spend = devtokens.service_token("ad-optimizer"), devtokens.service_token("spend-ingestion")
    projects = {p["name"]: p["project_id"] for p in web.call(carol, "GET", f"/v1/orgs/{org_id}/projects")["items"]}
    watch = Watcher(stack)
    kit = month.kit

    def wallet() -> Any:
        return web.call(carol, "GET", f"/v1/orgs/{org_id}/wallet", expect=200)

    def show(label: str) -> None:
        w = wallet()
        say(
            f"   {label:<44} balance {money(w['balance_minor']):>12}  held {money(w['held_minor']):>10}  "
            f"[{w['status']}]"
        )

    bills = iter(range(1, 100))

    def bill(platform: str, project: str, amount: int, hold_id: str | None = None) -> None:
        body = {
            "org_id": org_id,
            "platform": platform,
            "bill_id": f"{platform}-{next(bills):04d}",
            "project_id": projects[project],
            "amount_minor": amount,
            "currency": "USD",
            "billed_on": datetime.now(UTC).date().isoformat(),
            **({"hold_id": hold_id} if hold_id else {}),
        }
        result = web.post_as_service(spend, "/v1/internal/wallet/bills", body, expect=200)
        stack.stripe.wait_for_deliveries()
        show(f"{platform} bill {money(amount)} + fee {money(result['fee_minor'])} ({project})")

    say()
    say("11. Agency wallet: Carol tops up 1,000.00 by card and turns on auto-top-up")
    web.call(
        carol,
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        {"amount_minor": 100_000, "method": "card"},
        expect=202,
        headers={"Idempotency-Key": "demo-topup-1"},
    )
    stack.stripe.wait_for_deliveries()
    show("card top-up credited (payment_intent.succeeded)")
    web.call(
        carol,
        "PUT",
        f"/v1/orgs/{org_id}/wallet/settings",
        {
            "low_threshold_minor": 20_000,
            "floor_minor": 0,
            "auto_top_up_enabled": True,
            "auto_top_up_threshold_minor": 30_000,
            "auto_top_up_amount_minor": 50_000,
            "auto_top_up_daily_cap_minor": 100_000,
        },
        expect=200,
    )
    say("   low-balance warning below 200.00; auto-top-up 500.00 below 300.00 (daily cap 1,000.00)")

    say()
    say("12. The optimizer holds before launching; Meta, TikTok and Google Ads bill across two projects (5% fee)")
    held = web.post_as_service(
        optimizer,
        "/v1/internal/wallet/holds",
        {
            "org_id": org_id,
            "hold_id": "meta-launch-1",
            "project_id": projects["Spring launch"],
            "platform": "meta",
            "amount_minor": 30_000,
        },
        expect=201,
    )
    show(f"hold {money(held['amount_minor'])} for a Meta launch")
    bill("meta", "Spring launch", 28_050, hold_id="meta-launch-1")
    web.post_as_service(optimizer, "/v1/internal/wallet/holds/meta-launch-1/release", {"org_id": org_id}, expect=200)
    show("the launch is done: its hold's rest released")
    bill("tiktok", "Always-on UGC", 15_000)
    bill("google_ads", "Spring launch", 32_345)
    show("auto-top-up ran once, credited by webhook")

    say()
    say("13. The saved card starts failing; spend goes on")
    bad = kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": month.customer})
    kit.client.v1.customers.update(month.customer, params={"invoice_settings": {"default_payment_method": bad.id}})
    bill("meta", "Always-on UGC", 45_000)
    bill("tiktok", "Always-on UGC", 40_000)
    bill("google_ads", "Spring launch", 30_000)
    refused = web.post_as_service(
        optimizer,
        "/v1/internal/wallet/holds",
        {
            "org_id": org_id,
            "hold_id": "meta-scale-2",
            "project_id": projects["Spring launch"],
            "platform": "meta",
            "amount_minor": 5_000,
        },
        expect=409,
    )
    say(f"   optimizer asks to scale -> {refused['error']['code']}: {refused['error']['message']}")

    say()
    say("14. Carol adds a working card and tops up 1,500.00 by hand")
    good = kit.client.v1.payment_methods.attach("pm_card_visa", params={"customer": month.customer})
    kit.client.v1.customers.update(month.customer, params={"invoice_settings": {"default_payment_method": good.id}})
    web.call(
        carol,
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        {"amount_minor": 150_000, "method": "card"},
        expect=202,
        headers={"Idempotency-Key": "demo-topup-2"},
    )
    stack.stripe.wait_for_deliveries()
    show("manual top-up credited")

    say()
    say("   Events out (EventBridge) and notifications (SNS), in order:")
    for kind, detail in watch.received(org_id):
        say(f"     {kind:<28} {detail}")
    w = wallet()
    say(
        f"   runway at the last 7 days' spend: {w['runway_days']} days; auto-top-up "
        f"{'on' if w['auto_top_up']['enabled'] else 'off'}"
    )
    say()
    say(f"   {'kind':<14}{'amount':>14}{'balance after':>16}  platform / project")
    names = {v: k for k, v in projects.items()}
    entries = web.call(carol, "GET", f"/v1/orgs/{org_id}/wallet/transactions?limit=100")["items"]
    for e in reversed(entries):
        where = f"{e['platform'] or ''} {names.get(e['project_id'] or '', '')}".strip()
        say(f"   {e['kind']:<14}{money(e['amount_minor']):>14}{money(e['balance_after_minor']):>16}  {where}")


def invoice_month(web: WebApp, stack: LocalStack, northwind: str, month: Month) -> datetime:
    """Issue 6: two more orgs live the same month, then the real invoice state machine bills all three."""
    engine = devtokens.service_token("workflow-engine")
    spend = devtokens.service_token("spend-ingestion")
    kit = month.kit
    say()
    say("15. Two more orgs this month: Brightside (BYO, Starter) and Globex (Enterprise, agency)")
    bright = web.call("bea", "POST", "/v1/orgs", {"name": "Brightside Studio", "plan_id": "free"}, expect=201)["org_id"]
    blog = web.call("bea", "POST", f"/v1/orgs/{bright}/projects", {"name": "Blog"}, expect=201)["project_id"]
    clock, _ = kit.customer_on_clock(bright, month.start)
    session = web.call(
        "bea",
        "POST",
        f"/v1/orgs/{bright}/subscription/checkout",
        {"plan_id": "starter", "success_url": "https://app.layers.com/ok", "cancel_url": "https://app.layers.com/no"},
        expect=201,
    )
    kit.complete_checkout(session["checkout_session_id"])
    for i in range(12):
        body = {
            "org_id": bright,
            "project_id": blog,
            "template_id": "social-content",
            "generation_type": "slideshow",
            "quantity": 1,
            "workflow_run_id": f"bright-{i}",
        }
        web.post_as_service(engine, "/v1/internal/credits/reservations", body, expect=201)
        web.post_as_service(
            engine, f"/v1/internal/credits/reservations/bright-{i}/settle", {"org_id": bright}, expect=200
        )
    kit.advance(clock, month.start + month.days * DAY + 3600 + 60)
    say("   Brightside: Starter through Checkout, 12 slideshows (600 credits), renewed by Stripe")

    globex = web.call("gus", "POST", "/v1/orgs", {"name": "Globex Enterprise"}, expect=201)["org_id"]
    terms = {
        "base_minor": 250_000,
        "included_credits": 40_000,
        "platform_fee_bps": 150,
        "credit_overage_unit_minor": "0.9",
        "collection": "send_invoice",
        "days_until_due": 30,
    }
    contracted = web.call(
        "support-sam",
        "PUT",
        f"/v1/orgs/{globex}/plan",
        {"plan_id": "enterprise", "enterprise_terms": terms},
        expect=200,
        groups="support",
    )
    web.call("gus", "PATCH", f"/v1/orgs/{globex}", {"billing_mode": "agency"}, expect=200)
    stack.stripe.wait_for_deliveries()
    globex_customer = str(kit.repo.require_org(globex).stripe_customer_id)
    (sent,) = kit.client.v1.invoices.list(params={"customer": globex_customer}).data
    due = datetime.fromtimestamp(sent.due_date or 0, UTC)
    say(
        f"   Globex: support sets an Enterprise contract -> plan {contracted['plan']['name']}; Stripe sends invoice "
        f"{sent.number} for {money(sent.total)} ({sent.collection_method}, due {due:%d %b %Y}: net 30)"
    )
    projects = [
        web.call("gus", "POST", f"/v1/orgs/{globex}/projects", {"name": n}, expect=201)["project_id"]
        for n in ("Global brand", "Retail")
    ]
    wire = web.call(
        "gus",
        "POST",
        f"/v1/orgs/{globex}/wallet/top-ups",
        {"amount_minor": 2_000_000, "method": "wire"},
        expect=202,
        headers={"Idempotency-Key": "globex-wire-1"},
    )
    customer = kit.client.v1.payment_intents.retrieve(wire["payment_intent_id"]).customer
    kit.client.v1.test_helpers.customers.fund_cash_balance(
        str(customer), params={"amount": 2_000_000, "currency": "usd", "reference": wire["instructions"]["reference"]}
    )
    stack.stripe.wait_for_deliveries()
    today = datetime.now(UTC).date().isoformat()
    for n, (platform, project, amount) in enumerate(
        (("meta", 0, 412_500), ("tiktok", 1, 188_040), ("apple_search_ads", 0, 95_555), ("meta", 1, 60_000))
    ):
        web.post_as_service(
            spend,
            "/v1/internal/wallet/bills",
            {
                "org_id": globex,
                "platform": platform,
                "bill_id": f"globex-{n}",
                "project_id": projects[project],
                "amount_minor": amount,
                "currency": "USD",
                "billed_on": today,
            },
            expect=200,
        )
    kit.client.v1.invoices.pay(sent.id, params={"paid_out_of_band": True})  # the contract fee arrived by wire
    stack.stripe.wait_for_deliveries()
    say("   Globex: the base fee paid by wire (marked paid in Stripe), a 20,000.00 wire top-up, spend at the 1.5% fee")

    say()
    say("16. The invoice run: the real state machine (Step Functions, in moto): a Distributed Map over the due list")
    periods = {
        org: web.call(owner, "GET", f"/v1/orgs/{org}/credits", expect=200)
        for org, owner in ((northwind, "alice"), (bright, "bea"), (globex, "gus"))
    }
    # An invoice is made only once its period has ended and settled (3 h): the demo travels there.
    ends = max(datetime.fromisoformat(p["period_end"].replace("Z", "+00:00")) for p in periods.values())
    with time_machine.travel(ends + timedelta(hours=3, minutes=7), tick=True):
        say(f"   (time travels to {datetime.now(UTC):%d %b %Y %H:%M} UTC: every period ended and settled)")
        run_invoices(web, stack, [{"org_id": o, "period_key": p["period_key"]} for o, p in periods.items()])
        orgs = ((northwind, "alice"), (bright, "bea"), (globex, "gus"))
        show_invoices(web, orgs)
        late_bill_and_credit_note(web, northwind, globex, periods[northwind]["period_end"])
        following = web.call("alice", "GET", f"/v1/orgs/{northwind}/credits", expect=200)  # its period now
    with time_machine.travel(ends + timedelta(days=40), tick=True):  # the next run: a month and more later
        next_invoice(web, stack, northwind, following["period_key"])
    return ends + timedelta(days=40)


def late_bill_and_credit_note(web: WebApp, northwind: str, globex: str, period_end: str) -> None:
    """Issue 15: a bill of the invoiced period arrives late; support credits a charge with a credit note."""
    spend = devtokens.service_token("spend-ingestion")
    say()
    say("16b. Corrections: nothing issued is ever edited")
    last_day = (datetime.fromisoformat(period_end.replace("Z", "+00:00")) - timedelta(days=1)).date()
    project = web.call("alice", "GET", f"/v1/orgs/{northwind}/projects", expect=200)["items"][0]["project_id"]
    bill = {
        "org_id": northwind,
        "platform": "meta",
        "bill_id": "northwind-late-1",
        "project_id": project,
        "amount_minor": 31_500,
        "currency": "USD",
        "billed_on": last_day.isoformat(),
    }
    web.post_as_service(spend, "/v1/internal/wallet/bills", bill, expect=200)
    say(f"   Meta reports Northwind's spend of {last_day:%d %b} a day late: 315.00 (+ fee), after the invoice")
    say("   -> carried to the next invoice as a late line (the issued one stays as it was)")
    invoice = web.call("gus", "GET", f"/v1/orgs/{globex}/invoices", expect=200)["items"][0]
    tiktok = next(i for i, line in enumerate(invoice["lines"]) if line["description"].startswith("Ad spend: TikTok"))
    note = web.call(
        "support-sam",
        "POST",
        f"/v1/orgs/{globex}/invoices/{invoice['invoice_id']}/credit-notes",
        {"reason": "TikTok charged a paused campaign", "lines": [{"line": tiktok, "amount_minor": 18_040}]},
        expect=201,
        headers={"Idempotency-Key": "globex-credit-1"},
        groups="support",
    )
    say(
        f"   support credits Globex's invoice {note['invoice_number']}: credit note {note['number']} for "
        f"{money(note['amount_minor'])}, re-credited to the wallet ({money(note['to_wallet_minor'])})"
    )


def next_invoice(web: WebApp, stack: LocalStack, northwind: str, period_key: str) -> None:
    say(f"   (time travels to {datetime.now(UTC):%d %b %Y %H:%M} UTC: Northwind's next period ended)")
    run_invoices(web, stack, [{"org_id": northwind, "period_key": period_key}])
    invoice = web.call("alice", "GET", f"/v1/orgs/{northwind}/invoices", expect=200)["items"][0]
    say(f"   Northwind's next invoice {invoice['number']}:")
    for line in invoice["lines"]:
        if line.get("late_for"):
            say(f"     {line['description']:<72}{money(line['amount_minor']):>14}")
    statement = invoice.get("wallet_statement") or {}
    if statement:
        say(
            f"     wallet statement: opening {money(statement['opening_minor'])}, top-ups "
            f"{money(statement['topups_minor'])}, spend {money(statement['spend_minor'])}, fees "
            f"{money(statement['fees_minor'])}, closing {money(statement['closing_minor'])}"
        )


def run_invoices(web: WebApp, stack: LocalStack, due_list: list[dict[str, str]]) -> None:
    started = start_invoice_run(stack, due_list, f"invoice-run-demo-{datetime.now(UTC):%Y%m%d%H%M%S}")
    execution = stack.wait_for_execution(started, timeout=180)
    say(f"   execution {execution['status']}")


def show_invoices(web: WebApp, orgs: tuple[tuple[str, str], ...]) -> None:
    out = Path(".local/invoices")
    out.mkdir(parents=True, exist_ok=True)
    say()
    say(f"   {'org':<20}{'number':<16}{'via Stripe':>14}{'from wallet':>16}{'total':>16}{'due':>13}")
    for org, owner in orgs:
        invoice = web.call(owner, "GET", f"/v1/orgs/{org}/invoices", expect=200)["items"][0]
        for kind in ("pdf", "csv"):
            link = web.call(owner, "GET", f"/v1/orgs/{org}/invoices/{invoice['invoice_id']}/{kind}", expect=200)
            (out / f"{invoice['number']}.{kind}").write_bytes(web.http.get(link["url"], timeout=30).content)
        t = invoice["totals"]
        say(
            f"   {invoice['bill_to']['name'][:19]:<20}{invoice['number']:<16}"
            f"{money(t['charged_through_stripe_minor']):>14}{money(t['paid_from_wallet_minor']):>16}"
            f"{money(t['total_minor']):>16}{money(t['amount_due_minor']):>13}"
        )
    say(f"   PDF and CSV of each invoice written to {out.resolve()}/")


def dunning(web: WebApp, stack: LocalStack, month: Month) -> None:
    """Issue 14: a failed renewal - the plan kept for the grace period while Stripe retries, then paid."""
    ivy, optimizer = "ivy", devtokens.service_token("ad-optimizer")
    kit = month.kit
    say()
    say("17. Dunning: Initech's renewal payment fails - paid features stay for the grace period")
    org_id = web.call(ivy, "POST", "/v1/orgs", {"name": "Initech Media"}, expect=201)["org_id"]
    clock, customer = kit.customer_on_clock(org_id, month.start)
    session = web.call(
        ivy,
        "POST",
        f"/v1/orgs/{org_id}/subscription/checkout",
        {"plan_id": "pro", "success_url": "https://app.layers.com/ok", "cancel_url": "https://app.layers.com/no"},
        expect=201,
    )
    kit.complete_checkout(session["checkout_session_id"])
    web.call(ivy, "PATCH", f"/v1/orgs/{org_id}", {"billing_mode": "agency"}, expect=200)
    project = web.call(ivy, "POST", f"/v1/orgs/{org_id}/projects", {"name": "Launch"}, expect=201)["project_id"]
    web.call(
        ivy,
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        {"amount_minor": 50_000, "method": "card"},
        expect=202,
        headers={"Idempotency-Key": "initech-1"},
    )
    stack.stripe.wait_for_deliveries()
    watch = Watcher(stack, "demo-dunning", "Subscription.")
    bad = kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    kit.client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": bad.id}})
    sub_id = kit.repo.require_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    kit.client.v1.subscriptions.update(sub_id, params={"default_payment_method": bad.id})
    kit.advance(clock, month.start + month.days * DAY + 3600)
    org = web.call(ivy, "GET", f"/v1/orgs/{org_id}", expect=200)
    sub = web.call(ivy, "GET", f"/v1/orgs/{org_id}/subscription", expect=200)
    say(
        f"   renewal declined -> Stripe: {sub['status']}; standing {org['standing']} until {org['grace_ends_at']} "
        f"(plan {org['plan']['name']}, {org['projects']['limit']} projects)"
    )
    hold = {"org_id": org_id, "hold_id": "initech-1", "project_id": project, "platform": "meta", "amount_minor": 10_000}
    web.post_as_service(optimizer, "/v1/internal/wallet/holds", hold, expect=201)
    say("   within grace the optimizer may still hold 100.00 for Meta")
    say(
        "   (past the grace period, or once Stripe marks it unpaid or paused: the Free limits apply to new "
        "projects, seats and credits, and agency holds and top-ups stop - README, Entitlements and dunning)"
    )
    good = kit.client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    open_invoice = kit.client.v1.invoices.list(params={"customer": customer, "status": "open"}).data[0]
    kit.client.v1.invoices.pay(open_invoice.id, params={"payment_method": good.id})
    stack.stripe.wait_for_deliveries()
    org = web.call(ivy, "GET", f"/v1/orgs/{org_id}", expect=200)
    say(f"   Ivy pays {money(open_invoice.amount_due)} with a working card -> standing {org['standing']}")
    for kind, text in watch.received(org_id):
        say(f"     {kind:<36} {text}")
    sweep_after_hold(web, stack, org_id)


def sweep_after_hold(web: WebApp, stack: LocalStack, org_id: str) -> None:
    """The optimizer never used Initech's hold: the scheduled sweeper (every 5 minutes) releases it once it
    expires. The demo travels there and runs the sweeper's own function, as the schedule would."""
    with time_machine.travel(datetime.now(UTC) + HOLD_DEFAULT_LIFETIME + timedelta(minutes=5), tick=True):
        body, error = stack.local_lambda.invoke("CreditSweeperFunction", {})
        assert error is None, body
        swept = json.loads(body)
        wallet = web.call("ivy", "GET", f"/v1/orgs/{org_id}/wallet", expect=200)
        say(
            f"   (time travels to {datetime.now(UTC):%d %b %Y %H:%M} UTC) the scheduled sweeper: "
            f"{swept['wallet_holds_expired']} expired hold released -> held {money(wallet['held_minor'])}"
        )


def project_budgets(web: WebApp, stack: LocalStack, org_id: str) -> None:
    """Issue 21: a client's project hits its monthly budget while another client's keeps spending; a
    hold lasts the campaign and is drawn down by each bill."""
    carol, optimizer = "carol", devtokens.service_token("ad-optimizer")
    spend = devtokens.service_token("spend-ingestion")
    projects = {p["name"]: p["project_id"] for p in web.call(carol, "GET", f"/v1/orgs/{org_id}/projects")["items"]}
    retargeting, ugc = projects["Retargeting"], projects["Always-on UGC"]
    watch = Watcher(stack, "demo-budgets", prefix="Project.")
    today = datetime.now(UTC).date().isoformat()

    def hold(hold_id: str, project: str, amount: int, expect: int, days: int = 1) -> Any:
        body = {"org_id": org_id, "hold_id": hold_id, "project_id": project, "platform": "meta"}
        ends = (datetime.now(UTC) + timedelta(days=days)).isoformat()
        return web.post_as_service(
            optimizer, "/v1/internal/wallet/holds", body | {"amount_minor": amount, "expires_at": ends}, expect
        )

    def bill(bill_id: str, project: str, amount: int, hold_id: str) -> None:
        body: dict[str, Any] = {"org_id": org_id, "platform": "meta", "bill_id": bill_id, "project_id": project}
        body |= {"amount_minor": amount, "currency": "USD", "billed_on": today, "hold_id": hold_id}
        web.post_as_service(spend, "/v1/internal/wallet/bills", body, expect=200)
        stack.stripe.wait_for_deliveries()

    def budget_line(project: str) -> str:
        b = web.call(carol, "GET", f"/v1/orgs/{org_id}/projects/{project}/budget", expect=200)["lines"][0]
        return f"spent {money(b['used'])}, held {money(b['held'])}, left {money(b['left'])} of {money(b['limit'])}"

    say()
    say("15. Project budgets: Carol gives the Retargeting client 200.00 of ad spend a month")
    web.call(carol, "PUT", f"/v1/orgs/{org_id}/projects/{retargeting}/budget", {"ad_spend_minor": 20_000}, expect=200)
    made = hold("rt-campaign", retargeting, 15_000, 201, days=10)
    say(f"   the optimizer holds {money(made['amount_minor'])} for a 10-day campaign (expires {made['expires_at']})")
    bill("rt-day-1", retargeting, 9_000, "rt-campaign")
    bill("rt-day-2", retargeting, 8_000, "rt-campaign")  # 2,000 over what the hold had left: spend all the same
    say(f"   two days of Meta bills draw the hold down: Retargeting {budget_line(retargeting)}")
    refused = hold("rt-scale", retargeting, 5_000, 409)
    say(f"   the optimizer asks for 50.00 more -> {refused['error']['code']}: {refused['error']['message']}")
    for n in range(3):
        hold(f"ugc-{n}", ugc, 10_000, 201)
        bill(f"ugc-day-{n}", ugc, 9_500, f"ugc-{n}")
    say("   meanwhile Always-on UGC (no budget) keeps holding and spending: 3 x 95.00")
    bill("rt-day-3", retargeting, 3_000, "rt-campaign")  # the bill is recorded: the money is spent
    say(f"   a late Retargeting bill of 30.00 is recorded all the same: {budget_line(retargeting)}")
    for kind, _ in watch.received(org_id):
        say(f"     {kind}")


class Watcher:
    """Subscribes a queue to the SNS topic and the event bus, to show what went out."""

    def __init__(self, stack: LocalStack, name: str = "demo-watch", prefix: str = "Wallet."):
        self._stack = stack
        self._sqs = stack.client("sqs")
        self._url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.client("sns").subscribe(
            TopicArn=stack.env["NOTIFICATIONS_TOPIC_ARN"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        events = stack.client("events")
        events.put_rule(
            Name=name,
            EventBusName=stack.env["EVENT_BUS_NAME"],
            EventPattern=json.dumps({"source": ["layers.billing"], "detail-type": [{"prefix": prefix}]}),
        )
        events.put_targets(Rule=name, EventBusName=stack.env["EVENT_BUS_NAME"], Targets=[{"Id": "q", "Arn": arn}])

    def received(self, org_id: str) -> list[tuple[str, str]]:
        self._stack.flush_outbox()  # what the changes so far sent, through the outbox
        out: list[tuple[str, str]] = []
        while True:
            got = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not got.get("Messages"):
                return out
            for message in got["Messages"]:
                body = json.loads(message["Body"])
                if "detail-type" in body and body["detail"].get("org_id") == org_id:
                    out.append(
                        (
                            f"event {body['detail-type']}",
                            f"balance {money(body['detail'].get('balance_minor'))}"
                            if "balance_minor" in body["detail"]
                            else "",
                        )
                    )
                elif body.get("org_id") == org_id:
                    out.append((f"notify {body['kind']}", body["message"][:70]))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


def show_change(web: WebApp, user: str, org_id: str, plan_id: str) -> None:
    preview = web.call(user, "POST", f"/v1/orgs/{org_id}/subscription/preview", {"plan_id": plan_id}, expect=200)
    for line in preview["lines"]:
        say(f"     {money(line['amount_minor']):>12}  {line['description']}")
    say(f"   preview: charge now {money(preview['charge_now_minor'])}, refund {money(preview['refund_minor'])}")
    done = web.call(
        user,
        "PUT",
        f"/v1/orgs/{org_id}/subscription",
        {"plan_id": plan_id, "proration_date": preview["proration_date"]},
        expect=200,
    )
    say(
        f"   confirmed: now on {done['subscription']['plan']['name']}, "
        f"net {money(done['proration']['net_minor'])} (same as the preview)"
    )


if __name__ == "__main__":
    sys.exit(main())
