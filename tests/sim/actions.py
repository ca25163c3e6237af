"""What each step does, through the real services (one small function per action, `@action`), and the
org's life as the simulator knows it (`Life`): ids it made, what it expects Stripe and the books to hold."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe
from boto3.dynamodb.conditions import Key

from functions.usage_schema import UsageEventsIn
from shared.auth import Caller
from shared.budgets.rules import CREDITS, spend_budgets
from shared.budgets.service import BudgetLimits
from shared.clock import iso
from shared.credits.periods import period_containing
from shared.orgs.models import BillingMode, ProjectStatus, Role
from shared.reconcile.wiring import Reconciliation, build_reconciliation
from shared.settings import ApiSettings
from shared.stripe_gateway import WebhookEvent
from shared.usage.service import SdkEvent
from shared.wallet.models import AutoTopUp, Hold
from shared.wallet.service import Bill, WalletSettings
from tests.sim.scenario import Step
from tests.sim.world import FaultyTable, ScenarioServices, SimWorld

SUPPORT = Caller("sim-support", None, frozenset({"support"}))


@dataclass
class Life:
    """One org's life in a scenario: the services, the ids, and Stripe's side as the simulator sees it."""

    world: SimWorld
    kit: ScenarioServices
    rng: random.Random
    org_id: str = ""
    owner: Caller = field(default_factory=lambda: Caller("sim-owner", "owner@example.com", frozenset()))
    projects: dict[str, str] = field(default_factory=dict)  # step name -> project id
    members: set[str] = field(default_factory=set)
    customer: str = ""
    test_clock: str = ""
    subscription_id: str = ""
    plan: str = "free"
    sub_start: datetime | None = None
    topups: dict[str, str] = field(default_factory=dict)  # step key -> topup id
    late_events: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)
    invoiced: set[str] = field(default_factory=set)  # period keys run through the invoice steps
    notes: list[str] = field(default_factory=list)  # outcomes (refusals), for the reproduction
    sub_status: str = "none"  # Stripe's subscription's status as the simulator last saw it (observe_stripe)
    past_due_since: datetime | None = None
    reconciled: list[Any] = field(default_factory=list)  # the discrepancies after the last reconciliation
    variants: dict[str, int] = field(default_factory=dict)  # workflow run -> variants per item drawn
    # the agency side (issues 21, 22) and the outbox, as the simulator recorded it
    stream: Any = None  # the outbox publisher, its fakes and what consumers saw (tests/sim/outbox.py)
    budgeted: set[str] = field(default_factory=set)  # projects a budget was put on
    grants: list[tuple[str, str, int, int]] = field(default_factory=list)  # (what, budget, committed after, limit)
    holds: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # hold id -> (project, platform, amount)
    bills: dict[str, tuple[datetime, int, str, str, str | None]] = field(default_factory=dict)  # cause -> at, ...
    usage_sent: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # accepted: qty, period key
    storage: list[tuple[str, int]] = field(default_factory=list)  # snapshots taken: period key, bytes
    runway_seen: dict[int, int | None] = field(default_factory=dict)  # the runway item's revision -> its stage
    tried: set[str] = field(default_factory=set)  # what a step tried to make ("project", "hold", "reservation")

    @property
    def now(self) -> datetime:
        return self.kit.clock.now()

    @property
    def services(self) -> Any:
        return self.kit.services

    def client(self) -> stripe.StripeClient:
        return self.kit.stripe.sdk

    def project(self) -> str:
        return next(iter(self.projects.values()), "")


ACTIONS: dict[str, Callable[[Life, dict[str, Any]], None]] = {}


def action(name: str) -> Callable[[Callable[[Life, dict[str, Any]], None]], Callable[[Life, dict[str, Any]], None]]:
    def register(fn: Callable[[Life, dict[str, Any]], None]) -> Callable[[Life, dict[str, Any]], None]:
        ACTIONS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------- org
@action("create_org")
def create_org(life: Life, args: dict[str, Any]) -> None:
    if not life.org_id:
        view = life.services.orgs.create_org(
            life.owner, name="Sim Co", billing_mode=BillingMode.BYO, currency="USD", plan_id="free"
        )
        life.org_id = view.org.org_id
    if "launch" in life.projects:
        return
    made = []
    if "project" in life.tried:  # a retry: made before the crash?
        made = life.services.orgs._repo.list_projects(life.org_id, None, 10).items
    life.tried.add("project")
    project = made[0] if made else life.services.orgs.create_project(life.owner, life.org_id, name="Launch")
    life.projects["launch"] = project.project_id


def observe_stripe(life: Life) -> None:
    """What Stripe's subscription is now (the truth the mirror must reach once its webhooks are delivered):
    its status and plan, and since when the simulator has seen it past due."""
    if not life.subscription_id:
        return
    store = life.kit.stripe.store
    with store.lock:
        sub = store.objects.get(life.subscription_id) or {}
        status, plan = str(sub.get("status", "none")), (sub.get("metadata") or {}).get("plan_id")
    if status == "past_due" and life.sub_status != "past_due":
        life.past_due_since = life.now
    life.sub_status, life.plan = status, str(plan or life.plan)


def _customer_on_clock(life: Life) -> None:
    client = life.client()
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": int(life.now.timestamp())})
    customer = client.v1.customers.create(
        params={"name": life.org_id, "test_clock": clock.id, "metadata": {"org_id": life.org_id}}
    )
    life.test_clock, life.customer = clock.id, customer.id


@action("checkout")
def checkout(life: Life, args: dict[str, Any]) -> None:
    """Checkout at a random time of day: the customer (on a Stripe test clock at the simulated now), our
    Checkout Session for the plan, completed by the customer with a good card: Stripe's own subscription,
    billed by the emulator from then on (its webhooks tell the org)."""
    if not life.customer:
        _customer_on_clock(life)
    life.services.orgs._repo.link_stripe_customer(life.org_id, life.customer)  # (again after a crash: a no-op)
    if life.subscription_id:
        return
    session_id, _ = life.services.subscriptions.start_checkout(
        life.owner,
        life.org_id,
        plan_id=args["plan"],
        success_url="https://sim/ok",
        cancel_url="https://sim/no",
        attempt="sim",
    )
    if _stored(life, session_id).get("status") == "open":
        params = {"payment_method": "pm_card_visa"}
        life.client().raw_request("post", f"/_emulator/checkout/sessions/{session_id}/complete", **params)
    life.subscription_id = str(_stored(life, session_id).get("subscription") or "")
    life.sub_start = life.now.replace(microsecond=0)
    observe_stripe(life)


def _stored(life: Life, object_id: str) -> dict[str, Any]:
    """Stripe's object as Stripe holds it now (the simulator's own look, as `observe_stripe`'s): no request."""
    store = life.kit.stripe.store
    with store.lock:
        return dict(store.objects.get(object_id) or {})


@action("agency_mode")
def agency_mode(life: Life, args: dict[str, Any]) -> None:
    life.services.orgs.update_org(life.owner, life.org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)


@action("change_plan")
def change_plan(life: Life, args: dict[str, Any]) -> None:
    """Upgrade or downgrade mid-cycle through our API: Stripe prorates it on an invoice now (charged, or a
    credit the webhook refunds to the card)."""
    if life.subscription_id and args["plan"] != life.plan and life.sub_status not in ("canceled", "none"):
        life.services.subscriptions.change_plan(life.owner, life.org_id, plan_id=args["plan"], proration_date=None)
        observe_stripe(life)


@action("subscription_status")
def subscription_status(life: Life, args: dict[str, Any]) -> None:
    """Stripe's side of dunning: `past_due` puts a declining card on the subscription (its next renewal
    fails); `active` the customer's new card, with which the open invoices are paid; `canceled` the
    subscription ended in Stripe (the dunning gave up, or the customer left)."""
    if not life.subscription_id or life.sub_status in ("canceled", "none"):
        return
    client, sub_id = life.client(), life.subscription_id
    if args["status"] == "canceled":
        client.v1.subscriptions.cancel(sub_id)
    else:
        card = "pm_card_chargeDeclined" if args["status"] == "past_due" else "pm_card_visa"
        pm = client.v1.payment_methods.attach(card, params={"customer": life.customer})
        client.v1.subscriptions.update(sub_id, params={"default_payment_method": pm.id})
    if args["status"] == "active":
        for invoice in client.v1.invoices.list(params={"customer": life.customer, "status": "open"}).data:
            if invoice.id:
                client.v1.invoices.pay(invoice.id)
    observe_stripe(life)


@action("add_member")
def add_member(life: Life, args: dict[str, Any]) -> None:
    user = f"sim-{args['user']}"
    life.services.orgs.add_member(life.owner, life.org_id, user_id=user, email=None, role=Role.MEMBER)
    life.members.add(user)


@action("remove_member")
def remove_member(life: Life, args: dict[str, Any]) -> None:
    user = f"sim-{args['user']}"
    if user in life.members:
        life.services.orgs.remove_member(life.owner, life.org_id, user)
        life.members.discard(user)


@action("add_project")
def add_project(life: Life, args: dict[str, Any]) -> None:
    project = life.services.orgs.create_project(life.owner, life.org_id, name=args["name"])
    life.projects[args["name"]] = project.project_id


@action("archive_project")
def archive_project(life: Life, args: dict[str, Any]) -> None:
    if args["name"] in life.projects:
        life.services.orgs.set_project_status(
            life.owner, life.org_id, life.projects.pop(args["name"]), ProjectStatus.ARCHIVED
        )


# ---------------------------------------------------------------------------------------------- credits, usage
# What a template's generations make, and how many variants per item drawn: videos (120 credits each, 5 variants)
# take a plan past its included credits within a life, so credit overage (and late overage) reaches Stripe's
# renewal invoices; images (10 credits) do not.
GENERATION_TYPES = {"social-content": ("short_form_video", 5), "ad-copy": ("image", 1)}


@action("reserve")
def reserve(life: Life, args: dict[str, Any]) -> None:
    kind, variants = GENERATION_TYPES[args["template"]]
    life.variants[args["run"]] = variants
    life.tried.add("reservation")
    life.services.credits.reserve(
        org_id=life.org_id,
        project_id=life.project(),
        template_id=args["template"],
        generation_type=kind,
        quantity=args["quantity"] * variants,
        workflow_run_id=args["run"],
        actor="sim",
    )
    granted(life, f"reservation {args['run']}", life.project(), (CREDITS,))


@action("settle")
def settle(life: Life, args: dict[str, Any]) -> None:
    ran = datetime.fromisoformat(args["ran_at"])
    life.services.credits.settle(
        org_id=life.org_id,
        workflow_run_id=args["run"],
        quantity=args["quantity"] * life.variants.get(args["run"], 1),
        occurred_at=ran,
        actor="sim",
    )


@action("release")
def release(life: Life, args: dict[str, Any]) -> None:
    life.services.credits.release(org_id=life.org_id, workflow_run_id=args["run"], actor="sim")


@action("sdk_batch")
def sdk_batch(life: Life, args: dict[str, Any]) -> None:
    occurred = life.now - timedelta(hours=args["age_h"])
    event = SdkEvent(life.org_id, occurred, args["events"])
    life.services.usage.ingest_sdk_events(f"{life.org_id}-{args['batch']}", [event])
    # the adapter's documented identity: one event per batch, period and UTC day
    key = _quietly(life, lambda: period_key_at(life, occurred))
    batch = f"batch:{args['batch']}:{key}:{occurred.date().isoformat()}"
    life.usage_sent.setdefault(("sdk_events", batch), (args["events"], key))


# ---------------------------------------------------------------------------------------------- wallet
def advance_stripe(life: Life, pause: Callable[[], None] | None = None) -> None:
    """The customer's test clock brought to the simulated now (ACH settles 4 days after it started), in
    steps Stripe allows; with `pause`, it is called at each renewal (the draft made, its webhooks to
    deliver: our `invoice.created` handler adds the overage within the draft's hour)."""
    if not life.test_clock:
        return
    target = int(life.now.timestamp())
    store = life.kit.stripe.store
    clock = store.get("test_helpers.test_clock", life.test_clock)
    while clock["frozen_time"] < target:
        renewal = _next_renewal(life, clock["frozen_time"], target) if pause else None
        step = min(target, clock["frozen_time"] + 31 * 86_400, renewal or target)
        life.kit.stripe.emulator.advance_clock(life.test_clock, step)
        if renewal == step and pause is not None:
            pause()
        clock = store.get("test_helpers.test_clock", life.test_clock)
    observe_stripe(life)


def _next_renewal(life: Life, after: int, until: int) -> int | None:
    store = life.kit.stripe.store
    with store.lock:
        ends = [
            int(sub["current_period_end"])
            for sub in store.all("subscription")
            if sub.get("customer") == life.customer and sub.get("status") in ("active", "past_due", "trialing")
        ]
    return min((end for end in ends if after < end <= until), default=None)


def _default_card(life: Life, card: str) -> None:
    client = life.client()
    pm = client.v1.payment_methods.attach(card, params={"customer": life.customer})
    client.v1.customers.update(life.customer, params={"invoice_settings": {"default_payment_method": pm.id}})


@action("top_up")
def top_up(life: Life, args: dict[str, Any]) -> None:
    if not life.customer:
        return
    method, ok = args["method"], args["outcome"] == "ok"
    payment_method = None
    if method == "card":
        _default_card(life, "pm_card_visa" if ok else "pm_card_chargeDeclined")
    elif method == "ach":
        payment_method = "pm_usBankAccount_success" if ok else "pm_usBankAccount_insufficientFunds"
    topup = life.services.wallet.top_up(
        life.owner,
        life.org_id,
        amount_minor=args["amount"],
        method=method,
        idempotency_key=args["key"],
        return_url=None,
        payment_method=payment_method,
    )
    life.topups[args["key"]] = topup.topup_id
    if method == "wire" and topup.status == "pending":
        params = {"amount": args["amount"], "currency": "usd"}
        life.client().v1.test_helpers.customers.fund_cash_balance(life.customer, params=params)  # type: ignore[arg-type]


def _charge_of(life: Life, key: str) -> str | None:
    topup_id = life.topups.get(key)
    topup = life.services.wallet._repo.topup(life.org_id, topup_id) if topup_id else None
    intent_id = topup.payment_intent_id if topup else None
    if not intent_id:
        return None
    intent = life.client().v1.payment_intents.retrieve(intent_id)
    return str(intent.latest_charge) if intent.status == "succeeded" and intent.latest_charge else None


@action("stripe_refund")
def stripe_refund(life: Life, args: dict[str, Any]) -> None:
    """A refund made in Stripe's dashboard (not through us): its webhooks tell the wallet."""
    charge_id = _charge_of(life, args["key"])
    if charge_id:
        charge = life.client().v1.charges.retrieve(charge_id)
        amount = (charge.amount - charge.amount_refunded) // args["part"]
        if amount > 0 and not charge.disputed:
            life.client().v1.refunds.create(params={"charge": charge_id, "amount": amount})


@action("stripe_dispute")
def stripe_dispute(life: Life, args: dict[str, Any]) -> None:
    charge_id = _charge_of(life, args["key"])
    if charge_id and not life.client().v1.charges.retrieve(charge_id).disputed:
        life.client().raw_request("post", f"/_emulator/charges/{charge_id}/dispute")


@action("auto_top_up")
def auto_top_up(life: Life, args: dict[str, Any]) -> None:
    if not life.customer:
        return
    _default_card(life, args["card"])
    auto = AutoTopUp(
        enabled=True, threshold_minor=args["threshold"], amount_minor=args["amount"], daily_cap_minor=args["amount"] * 3
    )
    settings = WalletSettings(10_000, 0, auto)
    life.services.wallet.configure(life.owner, life.org_id, settings)


@action("hold")
def hold(life: Life, args: dict[str, Any]) -> None:
    life.tried.add("hold")
    made = life.services.wallet.hold(
        org_id=life.org_id,
        hold_id=args["hold"],
        project_id=life.project(),
        platform=args["platform"],
        amount_minor=args["amount"],
    )
    held(life, made)


@action("release_hold")
def release_hold(life: Life, args: dict[str, Any]) -> None:
    life.services.wallet.release_hold(org_id=life.org_id, hold_id=args["hold"])


@action("bill")
def bill(life: Life, args: dict[str, Any]) -> None:
    billed_on = date.fromisoformat(args["on"])
    made = Bill(
        life.org_id,
        args["platform"],
        args["bill"],
        life.project(),
        args["amount"],
        "USD",
        billed_on,
        args["hold"],
        "sim",
    )
    # recorded before the call (a call may fail after its commit): the store's IDEM# item says it was recorded
    life.bills.setdefault(made.cause, (life.now, made.amount_minor, made.project_id, made.platform, made.hold_id))
    life.services.wallet.record_bill(made)


@action("reverse_bill")
def reverse_bill(life: Life, args: dict[str, Any]) -> None:
    life.services.wallet.reverse_bill(
        org_id=life.org_id, platform=args["platform"], bill_id=args["bill"], reason="corrected", actor="sim"
    )


@action("support_refund")
def support_refund(life: Life, args: dict[str, Any]) -> None:
    life.services.wallet.refund(
        SUPPORT, life.org_id, amount_minor=args["amount"], reason="sim", idempotency_key=args["key"]
    )


# ---------------------------------------------------------------------------------------------- agency (21, 22)
def _quietly(life: Life, fn: Callable[[], Any]) -> Any:
    """The simulator's own reads (what it records for the invariants): no faults injected."""
    faults = life.kit.faults
    armed, faults.armed = faults.armed, False
    try:
        return fn()
    finally:
        faults.armed = armed


def granted(life: Life, what: str, project_id: str, names: tuple[str, ...]) -> None:
    """Records, right after a hold or reservation was granted, what its project then has committed (in the
    period of now) against each limited budget among `names` and the limit (budget_never_exceeded)."""
    if project_id not in life.budgeted:
        return
    budgets = life.services.budgets
    limits = _quietly(life, lambda: budgets.budget(life.org_id, project_id)).limits()
    if not any(name in limits for name in names):
        return
    period_key = _quietly(life, lambda: period_key_at(life, life.now))
    usage = _quietly(life, lambda: budgets.usage(life.org_id, project_id, period_key))
    life.grants += [(what, name, usage.committed(name), limits[name]) for name in names if name in limits]


def held(life: Life, made: Hold) -> None:
    life.holds.setdefault(made.hold_id, (made.project_id, made.platform, made.amount_minor))
    if made.budget_period:  # counted in its project's budget: against this period's spend and what is held now
        granted(life, f"hold {made.hold_id}", made.project_id, spend_budgets(made.platform))


@action("set_budget")
def set_budget(life: Life, args: dict[str, Any]) -> None:
    """A project's budget set, lowered or removed by its owner (the launch project: the one that spends)."""
    limits = BudgetLimits(args.get("ad_spend"), dict(args.get("platforms") or {}), args.get("credits"))
    life.budgeted.add(life.project())  # before the call: it may fail after its write
    life.services.budgets.put(life.owner, life.org_id, life.project(), limits)


@action("campaign_hold")
def campaign_hold(life: Life, args: dict[str, Any]) -> None:
    """A hold for a campaign, expiring at its end (`days` away; beyond the most a hold lasts it is brought in)."""
    life.tried.add("hold")
    made = life.services.wallet.hold(
        org_id=life.org_id,
        hold_id=args["hold"],
        project_id=life.project(),
        platform=args["platform"],
        amount_minor=args["amount"],
        expires_at=life.now + timedelta(days=args["days"]),
    )
    held(life, made)


@action("runway_check")
def runway_check(life: Life, args: dict[str, Any]) -> None:
    """The reconciler's daily runway evaluation, for this org (`RunwayWatch.daily` walks every org)."""
    life.services.wallet.runway.check(life.org_id)


def watch_runway(life: Life, services: Any = None) -> None:
    """Records every stage the runway's item takes (its revision -> stage), read after each attempt to move
    it, whatever the attempt raised (a crash after the write committed it): runway_alert_once_per_crossing.
    `services`: another graph than the scenario's (the reconciliation's)."""
    repo = (services or life.services).wallet.runway._runway
    move = repo.move_stage

    def recorded(*args: Any, **kwargs: Any) -> bool:
        try:
            return bool(move(*args, **kwargs))
        finally:
            state = _quietly(life, lambda: repo.state(life.org_id))
            life.runway_seen[state.revision] = state.stage

    repo.move_stage = recorded


def _usage_event(life: Life, event: dict[str, Any]) -> dict[str, Any]:
    # occurred_at as the wall clock's now: the models check their window against it (the simulated one is
    # put back after parsing; the metering path checks it against the simulated clock)
    shape = {"metric": event["metric"], "org_id": life.org_id, "occurred_at": iso(datetime.now(UTC))}
    shape |= {"quantity": event["quantity"], "event_id": event["id"]}
    return shape | ({"project_id": life.project()} if event["project"] and life.project() else {})


@action("usage_events")
def usage_events(life: Life, args: dict[str, Any]) -> None:
    """A batch through the route's body or the EventBridge event (parsed as each handler parses it), then the
    one metering path. A refused batch (too old) counts nothing; an accepted one each event once by id."""
    body = {"events": [_usage_event(life, e) for e in args["events"]]}
    occurred = [life.now - timedelta(hours=e["age_h"]) for e in args["events"]]
    if args["via"] == "eventbridge":
        from functions.usage_ingest.handler import EventsReported

        envelope = {
            "version": "0",
            "id": f"sim-{life.rng.getrandbits(32):08x}",
            "detail-type": "Usage.EventsReported",
            "source": "layers.workflows",
            "account": "000000000000",
            "time": iso(life.now),
            "region": "us-east-1",
            "resources": [],
            "detail": body,
        }
        parsed = EventsReported.model_validate(envelope).detail.events
    else:
        parsed = UsageEventsIn.model_validate(body).events
    events = [e.model_copy(update={"occurred_at": at}).event() for e, at in zip(parsed, occurred, strict=True)]
    refused = {r.event_id for r in life.services.usage.record_events(events).refused}  # counted nowhere
    org = _quietly(life, lambda: life.services.orgs._repo.require_org(life.org_id))
    for e in (e for e in events if e.event_id not in refused):
        life.usage_sent.setdefault((e.metric, e.event_id), (e.quantity, period_containing(org, e.occurred_at).key))


@action("storage_snapshot")
def storage_snapshot(life: Life, args: dict[str, Any]) -> None:
    total = args["gb_tenths"] * 100_000_000
    period = life.services.usage.record_storage(life.org_id, life.now, total)
    life.storage.append((period.key, total))


# ---------------------------------------------------------------------------------------------- the scheduled runs
def _due(life: Life, prefix: str, kind: str) -> list[dict[str, Any]]:
    """The org's items under `prefix` still listed for the sweeper (GSI2) and past their expiry (none, unread,
    when no step tried to make a `kind`)."""
    if kind not in life.tried:
        return []
    key = Key("PK").eq(f"ORG#{life.org_id}") & Key("SK").begins_with(prefix)
    items = life.kit.table.query(KeyConditionExpression=key, ConsistentRead=True)["Items"]
    now = iso(life.now)
    return [i for i in items if i.get("GSI2PK") and str(i.get("GSI2SK", "~")) <= now]


@action("sweep")
def sweep(life: Life, args: dict[str, Any]) -> None:
    """The sweeper's work for this org: what it does with each expired hold and reservation it lists (the
    scenarios share a table: listing every shard's would sweep the other scenarios' orgs at this one's
    time, and cost the whole table's size each time)."""
    wallet, credits = life.services.wallet, life.services.credits
    for item in _due(life, "HOLD#", "hold"):
        wallet.release_hold(org_id=life.org_id, hold_id=str(item["hold_id"]), expired=True)
    for item in _due(life, "RESV#", "reservation"):
        run = credits._repo.listed_reservation(item)[1].workflow_run_id
        credits.release(org_id=life.org_id, workflow_run_id=run, actor="system:sweeper", expired=True)


INVOICE_STEPS = ("close", "collect", "finalize", "render", "issue")


def run_invoice(life: Life, period_key: str) -> list[str]:
    invoices = life.services.invoices
    return [getattr(invoices, step)(life.org_id, period_key) for step in INVOICE_STEPS]


@action("daily_run")
def daily_run(life: Life, args: dict[str, Any]) -> None:
    """The dispatcher's list for the day and the day before (ended and settled periods only) and the invoice run
    for this org: its own listings, by the dispatcher's rule (`org_periods_due`). The scenarios share the table:
    the day's whole list would grow with the run's scenarios, and each would find only its own."""
    day = date.fromisoformat(args["day"])
    for period_key in life.services.orgs.org_periods_due(life.org_id, (day - timedelta(days=1), day), life.now):
        run_invoice(life, period_key)
        life.invoiced.add(period_key)


def reconciliation(life: Life) -> Reconciliation:
    """The reconciler's graph, fault free (run quietly), its writes counted with the scenario's (the outbox's
    stream looks for new items after them), on the world's document store (an S3 client made for each
    reconciliation cost more than its whole graph)."""
    settings = ApiSettings(
        table_name=life.world.table_name, notifications_topic_arn="", event_bus_name="sim", documents_bucket=""
    )
    table = FaultyTable(life.kit.table, life.kit.faults)
    made = build_reconciliation(
        settings,
        clock=life.kit.clock,
        table=table,
        gateway=life.kit.gateway,
        reads_per_s=10_000,
        documents=life.world.documents,  # type: ignore[arg-type]
    )
    watch_runway(life, made.services)  # its wallet's changes evaluate the runway too
    return made


@action("reconcile")
def reconcile(life: Life, args: dict[str, Any]) -> None:
    today = life.now.date()

    def run() -> None:
        recon = reconciliation(life)
        recon.reconciler.reconcile_org(life.org_id, today - timedelta(days=60), today + timedelta(days=1))
        life.reconciled = recon.repo.all_of_org(life.org_id, status="open")

    _quietly(life, run)


@action("end")
def end(life: Life, args: dict[str, Any]) -> None:
    """The life's last moment: every late webhook delivered (Stripe retries for days)."""


def stripe_event(event: dict[str, Any]) -> WebhookEvent:
    return WebhookEvent(str(event["id"]), str(event["type"]), int(event["created"]), event["data"]["object"])


def period_key_at(life: Life, at: datetime) -> str:
    org = life.services.orgs._repo.require_org(life.org_id)
    return period_containing(org, at).key


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


__all__ = ["ACTIONS", "Life", "Step", "advance_stripe", "run_invoice", "stripe_event"]
