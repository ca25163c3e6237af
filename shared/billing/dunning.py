"""Dunning: what the org is told, and when agency spend stops, as its subscription stops or starts paying.

The rule of what may be used is `shared.orgs.entitlement`; this module acts on its changes:
- each change of standing (grace started, suspended, restored, ended) leaves as one event and one
  notification, written once per dunning episode (a redelivered webhook or a second sweep sends nothing);
- `agency_until`, the instant agency spend stops (end of grace; at once when suspended), is written with
  the subscription's state and copied to the wallet, whose holds check it in their own write;
- a grace period that ends without a webhook (Stripe still retrying: `past_due`) is found by the sweeper
  (`sweep`), which tells the org that the Free limits apply."""

from __future__ import annotations

from datetime import datetime

from shared.catalog import PlanCatalog
from shared.clock import Clock, iso
from shared.orgs.entitlement import Entitlement, Standing, entitlement
from shared.orgs.models import Org, SubscriptionStatus
from shared.orgs.repository import OrgRepository
from shared.outbox import Announcement, Event, Notice, OutboxWriter

STOPPED = "0000-00-00T00:00:00.000Z"  # agency_until for an org with no agency spend: before any instant

_EVENTS = {
    Standing.GRACE: "Subscription.GraceStarted",
    Standing.SUSPENDED: "Subscription.Suspended",
    Standing.PAID: "Subscription.Restored",
    Standing.FREE: "Subscription.Ended",
}


def agency_until(granted: Entitlement) -> str | None:
    """Until when agency spend is allowed: no limit while paid, the end of grace, or stopped."""
    if granted.standing is Standing.PAID:
        return None
    if granted.standing is Standing.GRACE and granted.grace_ends is not None:
        return iso(granted.grace_ends)
    return STOPPED


def _subject_and_text(org: Org, granted: Entitlement) -> tuple[str, str]:
    plan = granted.subscribed.name
    if granted.standing is Standing.GRACE:
        ends = iso(granted.grace_ends) if granted.grace_ends else "soon"
        return (
            "Layers: your subscription payment failed",
            f"We could not collect the payment for {plan}. Stripe retries it; your plan and agency spend stay "
            f"until {ends}. Update your card in the billing portal to keep them.",
        )
    if granted.standing is Standing.SUSPENDED:
        return (
            "Layers: paid features paused",
            f"Your {plan} subscription is unpaid. The Free limits apply to new projects, seats and credits, and "
            "agency spend is stopped (no new holds or top-ups; spend already committed still settles). Nothing "
            "recorded is lost: pay the open invoice in the billing portal and everything is restored.",
        )
    if granted.standing is Standing.PAID:
        return ("Layers: your plan is restored", f"Thank you: {plan} is paid and everything is restored.")
    return ("Layers: your subscription ended", f"{org.name} is on Free now; what was recorded stays.")


class DunningNotices:
    def __init__(self, repo: OrgRepository, outbox: OutboxWriter, plans: PlanCatalog, clock: Clock):
        self._repo = repo
        self._outbox = outbox
        self._plans = plans
        self._clock = clock

    def standing(self, org: Org, at: datetime) -> Entitlement:
        return entitlement(org, self._plans, at)

    def track(self, before: Org, after: Org, at: datetime) -> None:
        """Keeps the grace list the sweeper reads in step with the subscription's state (just written).
        Idempotent: a redelivered webhook, after a crash, lists the org again."""
        was, now = self.standing(before, at), self.standing(after, at)
        if now.standing is Standing.GRACE and now.grace_ends is not None:
            self._repo.track_grace(after.org_id, iso(now.grace_ends))
        elif was.standing is Standing.GRACE:
            self._repo.untrack_grace(after.org_id)

    def announcement(self, before: Org, after: Org, at: datetime) -> Announcement | None:
        """What tells the org its standing changed from `before` to `after` (the state about to be written):
        written with that state, in its transaction - a crash after the write cannot lose it, as a
        redelivered webhook finds the standing unchanged. None when there is nothing to tell."""
        was, now = self.standing(before, at), self.standing(after, at)
        if was.standing is now.standing or (was.standing is Standing.FREE and now.standing is Standing.PAID):
            return None  # no change, or a subscription starting (Checkout tells the customer)
        if now.standing is Standing.FREE and not _ended(after):
            return None  # e.g. one replaced before it was ever paid
        return self._told(after, was, now, episode=_episode(before, after))

    def sweep(self, limit: int = 100) -> int:
        """Grace periods that ended while Stripe still retries: the org is told the Free limits apply (the
        limits themselves follow from the time: shared.orgs.entitlement). Returns how many were ended."""
        now = self._clock.now()
        ended = 0
        for org_id, grace_ends in self._repo.graces_ended(iso(now), limit):
            org = self._repo.get_org(org_id)
            if org is not None and (granted := self.standing(org, now)).standing is Standing.SUSPENDED:
                grace = Entitlement(Standing.GRACE, granted.subscribed, granted.subscribed, granted.grace_ends)
                self._tell(org, grace, granted, episode=_episode(org, org))
                ended += 1
            self._repo.untrack_grace(org_id, grace_ends)  # unless a new episode was tracked meanwhile
        return ended

    def _tell(self, org: Org, was: Entitlement, now: Entitlement, *, episode: str) -> None:
        told = self._told(org, was, now, episode=episode)
        self._outbox.send_once(org.org_id, told.cause, told.messages)

    def _told(self, org: Org, was: Entitlement, now: Entitlement, *, episode: str) -> Announcement:
        """One event and one notice per change of standing, named by the dunning episode (written once)."""
        sub = org.subscription
        subject, text = _subject_and_text(org, now)
        detail = {
            "org_id": org.org_id,
            "subscription_id": sub.subscription_id if sub else "",
            "status": sub.status.value if sub else "none",
            "standing": now.standing.value,
            "previous_standing": was.standing.value,
            "plan_id": now.subscribed.plan_id,
            "grace_ends_at": iso(now.grace_ends) if now.grace_ends else None,
            "agency_spend": "allowed" if now.paid_features else "stopped",
        }
        kind = _EVENTS[now.standing]
        cause = f"standing:{detail['subscription_id']}:{episode}:{now.standing.value}"
        return Announcement(cause, (Event(kind, detail), Notice(kind, subject, text, detail)))


def _ended(org: Org) -> bool:
    return org.subscription is not None and org.subscription.status in (
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.INCOMPLETE_EXPIRED,
    )


def _episode(before: Org, after: Org) -> str:
    """Names one stretch of not paying (from its first failure): each change within it is told once."""
    for org in (after, before):
        sub = org.subscription
        if sub is not None and sub.dunning_since is not None:
            return iso(sub.dunning_since)
    sub = after.subscription
    return f"period-{int(sub.current_period_start.timestamp())}" if sub else "none"
