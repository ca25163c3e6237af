"""Subscriptions through Stripe. Stripe is the source of truth for the subscription's state and
period: we ask Stripe to change it, then mirror what Stripe returns (or what a webhook fetch returns),
never an older snapshot over a newer one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.auth import Caller
from shared.billing.dunning import DunningNotices, agency_until
from shared.billing.prices import PriceRef, StripePrices
from shared.catalog import Plan, PlanCatalog
from shared.clock import Clock
from shared.credits.periods import period_key
from shared.errors import ConcurrentUpdateError, ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from shared.orgs.entitlement import in_dunning
from shared.orgs.models import MANAGE_BILLING, READ, BillingMode, Org, SubscriptionState, SubscriptionStatus
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.stripe_gateway import Invoice, StripeGateway, Subscription
from shared.wallet.account import kept_fee_bps

ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)
_ENDED = ENDED
_NOT_YET = (SubscriptionStatus.INCOMPLETE,)
_APPLY_ATTEMPTS = 4


def _ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class ChangePreview:
    plan: Plan
    currency: str
    proration_date: int
    lines: list[tuple[str, int]]  # (description, amount_minor) of the proration lines
    net_minor: int  # > 0 charged now, < 0 refunded to the card

    @property
    def charge_now_minor(self) -> int:
        return max(self.net_minor, 0)

    @property
    def refund_minor(self) -> int:
        return max(-self.net_minor, 0)


class SubscriptionMirror:
    """Writes Stripe's view of a subscription onto the org, guarded against stale snapshots."""

    def __init__(self, repo: OrgRepository, plans: PlanCatalog, clock: Clock, dunning: DunningNotices):
        self._repo = repo
        self._plans = plans
        self._clock = clock
        self._dunning = dunning
        # Told of every applied change of the org's plan or terms (shared/wiring.py: usage warnings owed to
        # the allowances now in force).
        self.plan_changed: Callable[[Org], None] = lambda org: None

    def apply(self, org_id: str, sub: Subscription, fetched_ms: int, *, read: Org | None = None) -> Org | None:
        """None if the org is unknown or a later snapshot was already applied. Made again from a fresh
        read when the org's billing mode changed meanwhile (a Free org must never stay in agency mode).
        `read`: the org as the caller just read it (the first attempt's; a retry reads again)."""
        for attempt in range(_APPLY_ATTEMPTS):
            try:
                return self._apply_once(org_id, sub, fetched_ms, read if attempt == 0 else None)
            except ConcurrentUpdateError:
                if attempt == _APPLY_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _apply_once(self, org_id: str, sub: Subscription, fetched_ms: int, read: Org | None) -> Org | None:
        current = read or self._repo.get_org(org_id)
        if current is None:
            return None
        at = datetime.fromtimestamp(fetched_ms / 1000, UTC)
        state = _state(current, sub, at)
        changes = self._plan_changes(current, state)
        # Leaving agency mode: the wallet keeps the fee rate of the plan the agency spend was made on.
        fee = None
        if "billing_mode" in changes:
            fee = kept_fee_bps(current.effective_plan(self._plans.get(current.plan_id)).platform_fee_bps)
        candidate = current.model_copy(
            update={**changes, "subscription": state, "enterprise_terms": _terms(current, changes)}
        )
        until = agency_until(self._dunning.standing(candidate, at))
        if until != current.agency_until:
            changes["agency_until"] = until
        changes["subscription"] = state.model_dump(mode="json")
        index, previous = _period_begun(current.subscription, state), current.subscription
        fresh = current.subscription_synced_ms <= fetched_ms  # a stale snapshot changes nothing
        if index and fresh and (previous is None or previous.subscription_id != state.subscription_id):
            # A new subscription re-anchors the org's periods: the one it was created in (on Free) is no
            # longer invoiced where they overlap; an earlier subscription's period ends where the new one
            # begins. Before the state is written (idempotent): once it is, a retry after a crash sees the
            # subscription mirrored already and would never re-anchor.
            self._repo.reanchor_periods(org_id, index[0], truncate=previous is not None)
        told = self._dunning.announcement(current, candidate, at)
        applied = self._repo.apply_subscription(
            org_id,
            changes,
            fetched_ms=fetched_ms,
            read=current,
            agency_fee_bps=fee,
            index=index,
            told=None if told is None else (told, self._clock.now()),
        )
        if applied is None:
            return None
        self._dunning.track(current, applied, at)
        if _allowances_of(current) != _allowances_of(applied):
            self.plan_changed(applied)
        return applied

    def _plan_changes(self, current: Org, state: SubscriptionState) -> dict[str, Any]:
        """The org's plan is the subscription's (Free once it ended; unchanged while it was never paid)."""
        changes: dict[str, Any] = {}
        if state.status in _ENDED:
            # The subscription is gone: paid features end. Agency mode needs a paid plan.
            free = self._plans.free
            changes["plan_id"] = free.plan_id
            if current.billing_mode is BillingMode.AGENCY and not free.agency_mode_allowed:
                changes["billing_mode"] = BillingMode.BYO.value
        elif state.status not in _NOT_YET:
            changes["plan_id"] = state.plan_id
        if changes.get("plan_id", current.plan_id) != current.plan_id:
            ended = state.status in _ENDED
            changes["catalog_version"] = (not ended and state.catalog_version) or self._plans.catalog_version
            if not self._plans.get(changes["plan_id"]).custom:
                changes["enterprise_terms"] = None  # a contract's terms end with it
        return changes

    def now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)


def _iso_seconds(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")  # Stripe's instants are whole seconds


def _period_begun(previous: SubscriptionState | None, state: SubscriptionState) -> tuple[str, str] | None:
    """(key, end) of the period the invoice run must find by the day it ends, when `state` begins one the
    org did not mirror yet (a new subscription, a renewal, a moved end); None when it has it already, or
    the subscription ended. Listed in the same write as the state (see `apply_subscription`)."""
    if state.status in _ENDED or not state.current_period_end.timestamp():
        return None
    mirrored = previous is not None and previous.subscription_id == state.subscription_id
    if mirrored and previous is not None and previous.status not in _ENDED:
        span = (previous.current_period_start, previous.current_period_end)
        if span == (state.current_period_start, state.current_period_end):
            return None
    return period_key(state.current_period_start), _iso_seconds(state.current_period_end)


def _terms(current: Org, changes: dict[str, Any]) -> Any:
    return None if "enterprise_terms" in changes else current.enterprise_terms


def _state(current: Org, sub: Subscription, at: datetime) -> SubscriptionState:
    """Stripe's subscription as the org keeps it; a dunning episode starts at the first failure we see."""
    base = next((r for i in sub.items if (r := PriceRef.parse(i.lookup_key)) and r.kind == "base"), None)
    extra = sum(i.quantity for i in sub.items if (r := PriceRef.parse(i.lookup_key)) and r.kind == "seat")
    status = SubscriptionStatus(sub.status)
    before = current.subscription
    since = None
    if in_dunning(status):
        same = before is not None and before.subscription_id == sub.subscription_id
        since = before.dunning_since if same and before is not None and before.dunning_since else at
    return SubscriptionState(
        subscription_id=sub.subscription_id,
        status=status,
        plan_id=base.plan_id if base else current.plan_id,
        catalog_version=base.catalog_version if base else None,
        extra_seats=extra,
        current_period_start=_ts(sub.current_period_start),
        current_period_end=_ts(sub.current_period_end),
        billing_anchor=_ts(sub.billing_cycle_anchor),
        cancel_at_period_end=sub.cancel_at_period_end,
        dunning_since=since,
    )


class SeatSync:
    """Keeps the Stripe extra-seat quantity equal to active members above the plan's included seats."""

    def __init__(
        self,
        repo: OrgRepository,
        gateway: StripeGateway,
        prices: StripePrices,
        plans: PlanCatalog,
        mirror: SubscriptionMirror,
    ):
        self._repo = repo
        self._gateway = gateway
        self._prices = prices
        self._plans = plans
        self._mirror = mirror

    def seats_changed(
        self, org_id: str, *, revision: int | None = None, org: Org | None = None, sub: Subscription | None = None
    ) -> None:
        """Brings the Stripe quantity to the org's members now, and mirrors what Stripe answers. Idempotent
        per seat revision: a retry after a crash re-sends the same Stripe request. `revision`: the seat
        change this sync is for (an outbox task); one older than the org's is skipped - the newer change
        wrote its own task, which syncs. `org` and `sub`: as the caller just read and mirrored them."""
        org = org or self._repo.get_org(org_id)
        if org is None or not org.has_live_subscription or org.subscription is None:
            return
        if revision is not None and revision < org.seat_revision:
            return
        plan = org.effective_plan(self._plans.get(org.plan_id))
        if sub is None or sub.subscription_id != org.subscription.subscription_id:
            sub = self._gateway.get_subscription(org.subscription.subscription_id)
        items = seat_items(self._prices, plan, org.currency, sub, org.member_count)
        if not items:
            return  # Stripe bills the members already: nothing to change, nothing new to mirror
        updated = self._gateway.update_subscription(
            sub.subscription_id,
            items=items,
            metadata={"org_id": org_id, "plan_id": plan.plan_id},
            proration_behavior="create_prorations",
            proration_date=None,
            key=f"seats:{org_id}:{sub.subscription_id}:{org.seat_revision}",
        )
        self._mirror.apply(org_id, updated, self._mirror.now_ms())


def extra_seats(plan: Plan, members: int) -> int:
    """Seats billed on top of the plan: members past the included seats, where the plan sells them."""
    if plan.included_seats is None or plan.seat_limit() is not None:
        return 0
    return max(0, members - plan.included_seats)


def seat_items(
    prices: StripePrices, plan: Plan, currency: str, sub: Subscription, members: int, *, switch_price: bool = False
) -> list[dict[str, Any]]:
    """Subscription item changes that bring the seat line to what `plan` bills for `members`."""
    want = extra_seats(plan, members)
    current = next((i for i in sub.items if (r := PriceRef.parse(i.lookup_key)) and r.kind == "seat"), None)
    if current is None:
        return [{"price": prices.price_id(plan, currency, "seat"), "quantity": want}] if want else []
    if want == 0:
        return [{"id": current.item_id, "deleted": True}]
    if switch_price:
        return [{"id": current.item_id, "price": prices.price_id(plan, currency, "seat"), "quantity": want}]
    return [] if current.quantity == want else [{"id": current.item_id, "quantity": want}]


class SubscriptionService:
    def __init__(
        self,
        orgs: OrgService,
        repo: OrgRepository,
        gateway: StripeGateway,
        prices: StripePrices,
        plans: PlanCatalog,
        mirror: SubscriptionMirror,
        clock: Clock,
    ):
        self._orgs = orgs
        self._repo = repo
        self._gateway = gateway
        self._prices = prices
        self._plans = plans
        self._mirror = mirror
        self._clock = clock

    # ------------------------------------------------------------------ reads
    def get(self, caller: Caller, org_id: str) -> Org:
        return self._orgs.access(caller, org_id, READ, support=True).org

    # ------------------------------------------------------------------ checkout and portal
    def start_checkout(
        self, caller: Caller, org_id: str, *, plan_id: str, success_url: str, cancel_url: str, attempt: str
    ) -> tuple[str, str]:
        """A Stripe Checkout Session for a paid plan; the subscription starts when the webhook says the
        session completed. `attempt` (the client's Idempotency-Key or our request id) keys the session."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        plan = self._paid_plan(plan_id)
        if org.has_live_subscription:
            raise ConflictError(
                "The org already has a subscription; change its plan instead.", code="subscription_exists"
            )
        self._orgs.check_fits(org, plan)
        customer = self._customer(org, caller)
        items = [(self._prices.price_id(plan, org.currency, "base"), 1)]
        extra = extra_seats(plan, org.member_count)
        if extra:
            items.append((self._prices.price_id(plan, org.currency, "seat"), extra))
        return self._gateway.create_subscription_checkout(
            customer_id=customer,
            org_id=org_id,
            plan_id=plan.plan_id,
            items=items,
            success_url=success_url,
            cancel_url=cancel_url,
            key=f"checkout:{org_id}:{attempt}",
        )

    def start_pack_checkout(
        self, caller: Caller, org_id: str, *, pack_id: str, success_url: str, cancel_url: str, attempt: str
    ) -> tuple[str, str]:
        """A one-off Checkout payment for a credit pack; credited when Stripe says it was paid."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        pack = self._plans.pack(pack_id)
        if org.currency not in pack.prices:
            raise InvalidRequestError(f"{pack.name} is not sold in {org.currency}.", code="unsupported_currency")
        return self._gateway.create_payment_checkout(
            customer_id=self._customer(org, caller),
            name=f"Layers {pack.name}",
            amount_minor=pack.prices[org.currency],
            currency=org.currency,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"org_id": org_id, "kind": "credit_pack", "pack_id": pack.pack_id, "credits": str(pack.credits)},
            key=f"pack:{org_id}:{attempt}",
        )

    def portal(self, caller: Caller, org_id: str, return_url: str) -> str:
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        if org.stripe_customer_id is None:
            raise ConflictError(
                "The org has no billing account yet; start a subscription first.", code="no_billing_account"
            )
        return self._gateway.create_portal_session(customer_id=org.stripe_customer_id, return_url=return_url)

    def _customer(self, org: Org, caller: Caller) -> str:
        if org.stripe_customer_id:
            return org.stripe_customer_id
        created = self._gateway.create_customer(org_id=org.org_id, name=org.name, email=caller.email)
        return self._repo.link_stripe_customer(org.org_id, created)

    def _paid_plan(self, plan_id: str) -> Plan:
        plan = self._plans.get(plan_id)
        if plan.custom:
            raise ForbiddenError(f"The {plan.name} plan is set up by Layers sales.", code="plan_requires_sales")
        if all(book.base_minor == 0 for book in plan.prices.values()):
            raise InvalidRequestError(f"The {plan.name} plan needs no subscription.", code="plan_not_billable")
        return plan

    # ------------------------------------------------------------------ plan changes
    def preview_change(self, caller: Caller, org_id: str, *, plan_id: str) -> ChangePreview:
        """What changing plan now would charge (upgrade) or refund (downgrade), prorated to the second.
        Confirming with the returned proration_date gives exactly these amounts."""
        org, sub, plan = self._change_context(caller, org_id, plan_id)
        when = self._proration_date(org, None)
        invoice = self._gateway.preview_subscription_change(
            customer_id=sub.customer_id,
            subscription_id=sub.subscription_id,
            items=self._change_items(org, sub, plan),
            proration_date=when,
        )
        return _preview(plan, invoice, when)

    def change_plan(
        self, caller: Caller, org_id: str, *, plan_id: str, proration_date: int | None
    ) -> tuple[Org, ChangePreview]:
        """Upgrades charge the prorated difference now; downgrades credit it and the webhook for the
        resulting invoice refunds it to the card. Refused when the org does not fit the new plan."""
        org, sub, plan = self._change_context(caller, org_id, plan_id)
        when = self._proration_date(org, proration_date)
        fetched = self._mirror.now_ms()
        updated = self._gateway.update_subscription(
            sub.subscription_id,
            items=self._change_items(org, sub, plan),
            metadata={"org_id": org_id, "plan_id": plan.plan_id},
            proration_behavior="always_invoice",
            proration_date=when,
            key=f"plan:{org_id}:{sub.subscription_id}:{plan.plan_id}:{when}",
            error_if_unpaid=True,
        )
        mirrored = self._mirror.apply(org_id, updated, fetched) or self._repo.get_org(org_id)
        invoice = self._gateway.get_invoice(updated.latest_invoice_id) if updated.latest_invoice_id else None
        preview = _preview(plan, invoice, when) if invoice else ChangePreview(plan, org.currency, when, [], 0)
        if mirrored is None:
            raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
        return mirrored, preview

    def _change_context(self, caller: Caller, org_id: str, plan_id: str) -> tuple[Org, Subscription, Plan]:
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        if not org.has_live_subscription or org.subscription is None:
            raise ConflictError("The org has no subscription; start one with checkout.", code="no_subscription")
        if self._plans.get(org.subscription.plan_id).custom:
            raise ConflictError(
                "The org's plan is a contract: Layers support changes or ends it.", code="contract_managed"
            )
        plan = self._paid_plan(plan_id)
        if plan.plan_id == org.plan_id:
            raise ConflictError(f"The org is already on {plan.name}.", code="same_plan")
        self._orgs.check_fits(org, plan)
        return org, self._gateway.get_subscription(org.subscription.subscription_id), plan

    def _change_items(self, org: Org, sub: Subscription, plan: Plan) -> list[dict[str, Any]]:
        base = next(i for i in sub.items if (r := PriceRef.parse(i.lookup_key)) and r.kind == "base")
        items: list[dict[str, Any]] = [{"id": base.item_id, "price": self._prices.price_id(plan, org.currency, "base")}]
        return items + seat_items(self._prices, plan, org.currency, sub, org.member_count, switch_price=True)

    def _proration_date(self, org: Org, requested: int | None) -> int:
        assert org.subscription is not None and org.stripe_customer_id is not None
        now = self._gateway.now_for(org.stripe_customer_id)  # Stripe's clock (test clocks included)
        start = int(org.subscription.current_period_start.timestamp())
        when = now if requested is None else requested
        if not start <= when <= now:
            raise InvalidRequestError(
                "proration_date must lie between the period start and now.", code="invalid_proration_date"
            )
        return when


def _preview(plan: Plan, invoice: Invoice, when: int) -> ChangePreview:
    lines = [(line.description, line.amount_minor) for line in invoice.lines if line.proration]
    net = sum(amount for _, amount in lines)
    return ChangePreview(plan, invoice.currency, when, lines, net)


def _allowances_of(org: Org) -> tuple[object, ...]:
    """What the org's allowances follow: its plan, its subscription's plan, its contract's terms."""
    return (org.plan_id, org.subscription.plan_id if org.subscription else None, org.enterprise_terms)
