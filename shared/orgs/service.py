"""Org, member and project use cases: authorization by role, plan limits, seat counting.

Every method either completes its write or raises a DomainError having written nothing. Limits are
checked twice: here against a fresh read (for a precise message) and again as a condition in the
DynamoDB write (so concurrent requests can never exceed them). No method calls Stripe: a seat change
writes the task that syncs the Stripe seat quantity in its own transaction (the outbox; see
OrgRepository.add_member)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.auth import Caller
from shared.catalog import Plan, PlanCatalog
from shared.clock import Clock, iso
from shared.credits.periods import Period, period_containing
from shared.errors import ConflictError, ForbiddenError, NotFoundError, PlanLimitError
from shared.ids import new_id
from shared.orgs.entitlement import Entitlement, entitlement
from shared.orgs.models import (
    MANAGE_BILLING,
    MANAGE_MEMBERS,
    MANAGE_ORG,
    MANAGE_PROJECTS,
    READ,
    BillingDetails,
    BillingMode,
    Member,
    Membership,
    Org,
    Project,
    ProjectStatus,
    Role,
    SubscriptionStatus,
)
from shared.orgs.repository import OrgRepository
from shared.pagination import Page
from shared.wallet.account import kept_fee_bps

# How long after a period ends its invoice may be made: Stripe drafts the renewal at the period's end and
# finalizes it about an hour later (our invoice.created handler adds the overage meanwhile); the rest is
# margin for the webhooks and a late spend report of the period's last hours. An invoice made earlier
# would miss the renewal (next month's fee and this month's overage) for good.
SETTLE_WINDOW = timedelta(hours=3)


def period_settled(period_end: datetime, now: datetime) -> bool:
    """Whether a period that ends at `period_end` may be invoiced at `now` (the one rule: the dispatcher
    lists only such periods, and closing any other is refused)."""
    return period_end + SETTLE_WINDOW <= now


def _settled(period_end_iso: str, now: datetime) -> bool:
    return period_settled(datetime.fromisoformat(period_end_iso.replace("Z", "+00:00")), now)


@dataclass(frozen=True)
class OrgAccess:
    """An org as seen by a caller allowed to see it: `role` is None for support staff."""

    org: Org
    role: Role | None


@dataclass(frozen=True)
class OrgView:
    org: Org
    plan: Plan  # the limits that apply now (the entitlement's)
    role: Role | None
    entitlement: Entitlement


def as_subscribed(org: Org) -> Org:
    """The org on the plan of its subscription: once it ended, the org is on Free, but the periods it
    covered are billed at the ended subscription's plan (a contract's own terms ended with it)."""
    sub = org.subscription
    if sub is None or sub.plan_id == org.plan_id:
        return org
    version = sub.catalog_version or org.catalog_version
    return org.model_copy(update={"plan_id": sub.plan_id, "catalog_version": version})


class OrgService:
    def __init__(self, repo: OrgRepository, plans: PlanCatalog, clock: Clock):
        self._repo = repo
        self._plans = plans
        self._clock = clock

    # ------------------------------------------------------------------ access
    def access(self, caller: Caller, org_id: str, allowed: frozenset[Role], *, support: bool = False) -> OrgAccess:
        """The org if the caller may act on it. NotFoundError when the caller is not a member (no
        existence leak); ForbiddenError when a member's role is not in `allowed`."""
        org, member = self._repo.get_org_and_member(org_id, caller.user_id)
        if org is None:
            raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
        if member is None:
            if support and caller.is_support:
                return OrgAccess(org, None)
            raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
        if member.role not in allowed:
            roles = ", ".join(sorted(r.value for r in allowed))
            raise ForbiddenError(f"This needs one of the roles: {roles}. You are {member.role.value}.")
        return OrgAccess(org, member.role)

    def entitlement_of(self, org: Org) -> Entitlement:
        return entitlement(org, self._plans, self._clock.now())

    def plan_of(self, org: Org) -> Plan:
        """The plan whose limits apply now: the subscription's while it pays (or is in grace), else Free."""
        return self.entitlement_of(org).plan

    def subscribed_plan(self, org: Org) -> Plan:
        """The plan the org is billed for (its subscription's), whatever its standing: prices and fees
        of what it used under that subscription."""
        return self.entitlement_of(org).subscribed

    def billed_plan(self, org: Org, period: Period) -> Plan:
        """The plan a period's usage is billed at (its allowances and overage prices): its subscription's,
        also once it was cancelled (its last period is billed at its plan: `OverageBilling.bill_final`), or
        Free for a period no subscription covers: one that began before the subscription did, or after a
        cancelled one ended. After Checkout the org's periods are Stripe's, anchored at Checkout, so the Free
        time before it belongs to the period ending there (and what was counted on Free before Checkout
        stays in the period anchored on the org's creation). Free sells no overage (no price, no payment
        method): usage over a Free period's allowances is counted and shown, never owed."""
        sub = org.subscription
        if sub is None:
            return self.subscribed_plan(org)
        if period.start < sub.billing_anchor.replace(microsecond=0):
            return self._plans.free
        if sub.status is SubscriptionStatus.CANCELED:
            return (
                self._plans.free if period.start >= sub.current_period_end else self.subscribed_plan(as_subscribed(org))
            )
        return self.subscribed_plan(org)

    def view(self, org: Org, role: Role | None) -> OrgView:
        granted = self.entitlement_of(org)
        return OrgView(org, granted.plan, role, granted)

    def _view(self, access: OrgAccess) -> OrgView:
        return self.view(access.org, access.role)

    # ------------------------------------------------------------------ orgs
    def create_org(
        self, caller: Caller, *, name: str, billing_mode: BillingMode, currency: str, plan_id: str
    ) -> OrgView:
        """Creates an org on Free with the caller as its owner (one seat). A paid plan is only ever the
        Stripe subscription's: 409 subscription_required, to subscribe through Checkout once created."""
        free = self._plans.free
        if plan_id != free.plan_id:
            self._plans.get(plan_id)  # 422 unknown_plan first
            raise ConflictError(
                f"Orgs start on {free.name}. Create the org, then subscribe to {plan_id} with "
                "POST /v1/orgs/{org_id}/subscription/checkout: the plan starts when Stripe says it is paid.",
                code="subscription_required",
                details={"plan_id": plan_id},
            )
        free.price_book(currency)
        _check_agency(free, billing_mode)
        now = self._clock.now()
        org = Org(
            org_id=new_id("org"),
            name=name,
            billing_mode=billing_mode,
            currency=currency,
            plan_id=free.plan_id,
            catalog_version=self._plans.catalog_version,
            member_count=1,
            owner_count=1,
            active_project_count=0,
            created_by=caller.user_id,
            created_at=now,
            updated_at=now,
        )
        owner = Member(
            org_id=org.org_id,
            user_id=caller.user_id,
            email=caller.email,
            role=Role.OWNER,
            added_by=caller.user_id,
            added_at=now,
        )
        self._repo.create_org(org, owner)
        self.index_period_of(org, now)
        return self.view(org, Role.OWNER)

    def list_my_orgs(self, caller: Caller, cursor: str | None, limit: int) -> Page[Membership]:
        return self._repo.list_memberships(caller.user_id, cursor, limit)

    def get_org(self, caller: Caller, org_id: str) -> OrgView:
        return self._view(self.access(caller, org_id, READ, support=True))

    def _check_currency_unlocked(self, org: Org) -> None:
        """Once money exists in the org's currency (a Stripe customer, which has one; a subscription; a
        wallet), the currency stays: 409 currency_locked, nothing written."""
        why = (
            "its Stripe customer is billed in it"
            if org.stripe_customer_id
            else "it has a subscription"
            if org.subscription
            else "its wallet holds money in it"
            if self._repo.has_wallet(org.org_id)
            else None
        )
        if why:
            raise ConflictError(
                f"The currency stays {org.currency}: {why}. Wallets and subscriptions hold one currency.",
                code="currency_locked",
            )

    def update_org(
        self,
        caller: Caller,
        org_id: str,
        *,
        name: str | None,
        billing_mode: BillingMode | None,
        currency: str | None,
        billing_details: BillingDetails | None = None,
    ) -> OrgView:
        """Renames (owner/admin) or changes billing mode / currency / billing details (owner/admin/billing).
        Empty billing details remove them."""
        billing_change = billing_mode is not None or currency is not None or billing_details is not None
        allowed = (
            MANAGE_ORG & MANAGE_BILLING
            if name is not None and billing_change
            else (MANAGE_BILLING if billing_change else MANAGE_ORG)
        )
        access = self.access(caller, org_id, allowed)
        org, plan = access.org, self.plan_of(access.org)
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = name
        if billing_mode is not None and billing_mode is not org.billing_mode:
            _check_agency(plan, billing_mode)
            changes["billing_mode"] = billing_mode.value
        if currency is not None and currency != org.currency:
            plan.price_book(currency)
            self._check_currency_unlocked(org)
            changes["currency"] = currency
        if billing_details is not None and billing_details != org.billing_details:
            changes["billing_details"] = billing_details.model_dump(exclude_none=True)
        if not changes:
            return self._view(access)
        changes["updated_at"] = self._clock.now()
        # The plan decides what billing mode is allowed: condition on it so a concurrent plan change
        # cannot slip agency mode past a plan that forbids it.
        leaves_agency = org.billing_mode is BillingMode.AGENCY and "billing_mode" in changes
        updated = self._repo.update_org(
            org_id,
            _stored(changes),
            expected={"plan_id": org.plan_id},
            agency_fee_bps=kept_fee_bps(plan.platform_fee_bps) if leaves_agency else None,
        )
        return self.view(updated, access.role)

    def check_fits(self, org: Org, plan: Plan) -> None:
        """PlanLimitError naming what to archive or remove when the org does not fit `plan`."""
        seats = plan.seat_limit()
        if seats is not None and org.member_count > seats:
            raise PlanLimitError(
                f"The {plan.name} plan includes {seats} seat(s); the org has {org.member_count} members. "
                "Remove members first.",
                details={"limit": "seats", "max": seats, "current": org.member_count},
            )
        if plan.max_active_projects is not None and org.active_project_count > plan.max_active_projects:
            raise PlanLimitError(
                f"The {plan.name} plan allows {plan.max_active_projects} active project(s); the org has "
                f"{org.active_project_count}. Archive projects first.",
                details={
                    "limit": "projects",
                    "max": plan.max_active_projects,
                    "current": org.active_project_count,
                },
            )
        if org.billing_mode is BillingMode.AGENCY:
            _check_agency(plan, BillingMode.AGENCY)

    def periods_due(self, day: date, now: datetime) -> list[tuple[str, str]]:
        """(org, period_key) of the billing periods ending on `day` (UTC) that may be invoiced at `now`:
        ended at least SETTLE_WINDOW ago, and not invoiced yet."""
        return [(org, key) for org, key, end in self._repo.periods_ending(day.isoformat()) if _settled(end, now)]

    def org_periods_due(self, org_id: str, days: Collection[date], now: datetime) -> list[str]:
        """The keys of the org's periods ending on one of `days` (UTC) that may be invoiced at `now`, by the
        dispatcher's rule (`periods_due`), from the org's own listings (one org's run)."""
        ending = {day.isoformat() for day in days}
        return sorted(
            key for key, end in self._repo.listed_periods(org_id) if end[:10] in ending and _settled(end, now)
        )

    def index_period_of(self, org: Org, at: datetime) -> None:
        """Registers the org's period containing `at` for the invoice run, unless it is indexed already (as
        the subscription's mirror wrote it, or taken off the index: invoiced, or re-anchored away)."""
        period = period_containing(org, at)
        self._repo.index_period(org.org_id, period.key, iso(period.end), relist=False)

    # ------------------------------------------------------------------ members
    def list_members(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[Member]:
        self.access(caller, org_id, READ, support=True)
        return self._repo.list_members(org_id, cursor, limit)

    def add_member(self, caller: Caller, org_id: str, *, user_id: str, email: str | None, role: Role) -> Member:
        """Adds a seat. Refused past the plan's seats unless the plan sells extra seats."""
        access = self.access(caller, org_id, MANAGE_MEMBERS)
        _check_may_grant(access.role, role)
        plan = self.plan_of(access.org)
        limit = plan.seat_limit()
        if limit is not None and access.org.member_count >= limit:
            raise PlanLimitError(
                f"The {plan.name} plan includes {limit} seat(s) and all are taken. Upgrade to add members.",
                code="seat_limit_reached",
                details={"limit": "seats", "max": limit},
            )
        member = Member(
            org_id=org_id,
            user_id=user_id,
            email=email,
            role=role,
            added_by=caller.user_id,
            added_at=self._clock.now(),
        )
        self._repo.add_member(
            member, expected_plan_id=access.org.plan_id, max_members=limit, seat_revision=access.org.seat_revision
        )
        return member

    def change_role(self, caller: Caller, org_id: str, user_id: str, role: Role) -> Member:
        """Changes a member's role; only owners grant or take away the owner role; the last owner stays."""
        access = self.access(caller, org_id, MANAGE_MEMBERS)
        current = self._member(org_id, user_id)
        if current.role is role:
            return current
        _check_may_grant(access.role, role)
        _check_may_grant(access.role, current.role)
        return self._repo.change_role(org_id, user_id, current.role, role)

    def remove_member(self, caller: Caller, org_id: str, user_id: str) -> None:
        """Removes a seat. Members may remove themselves; the last owner cannot be removed."""
        access = self.access(caller, org_id, READ if user_id == caller.user_id else MANAGE_MEMBERS)
        current = self._member(org_id, user_id)
        if user_id != caller.user_id:
            _check_may_grant(access.role, current.role)
        self._repo.remove_member(
            org_id, user_id, current.role, seat_revision=access.org.seat_revision, at=self._clock.now()
        )

    def _member(self, org_id: str, user_id: str) -> Member:
        member = self._repo.get_member(org_id, user_id)
        if member is None:
            raise NotFoundError(f"{user_id} is not a member of this org.", code="member_not_found")
        return member

    # ------------------------------------------------------------------ projects
    def list_projects(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[Project]:
        self.access(caller, org_id, READ, support=True)
        return self._repo.list_projects(org_id, cursor, limit)

    def create_project(self, caller: Caller, org_id: str, *, name: str) -> Project:
        """Creates an active project. PlanLimitError (`plan_limit_reached`) past the plan's limit."""
        access = self.access(caller, org_id, MANAGE_PROJECTS)
        plan = self.plan_of(access.org)
        self._check_project_room(access.org, plan)
        now = self._clock.now()
        project = Project(
            org_id=org_id,
            project_id=new_id("prj"),
            name=name,
            status=ProjectStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
        self._repo.create_project(project, expected_plan_id=access.org.plan_id, max_projects=plan.max_active_projects)
        return project

    def set_project_status(self, caller: Caller, org_id: str, project_id: str, status: ProjectStatus) -> Project:
        """Archives (frees a slot) or reactivates (takes one, within the limit) a project."""
        access = self.access(caller, org_id, MANAGE_PROJECTS)
        project = self._repo.get_project(org_id, project_id)
        if project is None:
            raise NotFoundError(f"Project {project_id} was not found.", code="project_not_found")
        if project.status is status:
            return project
        plan = self.plan_of(access.org)
        if status is ProjectStatus.ACTIVE:
            self._check_project_room(access.org, plan)
        touched = project.model_copy(update={"updated_at": self._clock.now()})
        self._repo.set_project_status(
            touched, status, expected_plan_id=access.org.plan_id, max_projects=plan.max_active_projects
        )
        return touched.model_copy(update={"status": status})

    @staticmethod
    def _check_project_room(org: Org, plan: Plan) -> None:
        limit = plan.max_active_projects
        if limit is not None and org.active_project_count >= limit:
            raise PlanLimitError(
                f"The {plan.name} plan allows {limit} active project(s) and {org.active_project_count} are active. "
                "Archive a project or upgrade the plan.",
                details={"limit": "projects", "max": limit, "current": org.active_project_count},
            )


def _check_agency(plan: Plan, billing_mode: BillingMode) -> None:
    if billing_mode is BillingMode.AGENCY and not plan.agency_mode_allowed:
        raise PlanLimitError(
            f"Agency mode needs the Pro plan or above; this org is on {plan.name}.",
            code="agency_mode_not_allowed",
            details={"plan_id": plan.plan_id},
        )


def _check_may_grant(actor: Role | None, role: Role) -> None:
    if role is Role.OWNER and actor is not Role.OWNER:
        raise ForbiddenError("Only an owner can grant, change or remove the owner role.")


def _stored(changes: dict[str, object]) -> dict[str, object]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in changes.items()}
