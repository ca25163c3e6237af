"""DynamoDB layout of project budgets (the org's partition of BillingTable; keys in shared/keys.py):

  SK=BUDGET#<project_id>                 the project's limits (ad_spend_minor, platforms_minor, credits)
                                         and `rev`, bumped by every change of them
  SK=BUDGETP#<period_key>#<project_id>   what the project used in the period: spent (bills), the same per
                                         platform (`pspent#<platform>`), credits_used; and committed /
                                         pcommitted#<platform> / credits_committed (= used, + what holds
                                         and reservations made before BUDGETH counted here still hold);
                                         kept for every project, with a budget or not, so a budget set
                                         mid-period counts what was committed before it
  SK=BUDGETH#<project_id>                what the project's open holds and reservations still hold, whatever
                                         period they were made in (an open hold is a commitment now):
                                         held, pheld#<platform>, credits_reserved

The counters are changed only inside the wallet's and the credit account's own transactions
(`touch_items`). A new hold or reservation adds to the open counter conditional on `held <= limit -
amount - committed this period` for each limited budget, with a check that this period's `committed`
is still the value read (a bill in between: read again) and that the limits are the ones read (`rev`):
committed this period + held now + amount <= limit, so concurrent holds of one project can never exceed
its budget. Bills and settles add without a condition (always recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import keys
from shared.budgets.models import OPEN, BudgetGuard, BudgetTouch
from shared.budgets.rules import AD_SPEND, CREDITS, BudgetUsage, ProjectBudget, platform_budget
from shared.dynamo import Item, TransactionConditionFailed, TxItem, dynamo_errors, org_items, plain
from shared.ledger import Named
from shared.outbox import Message, outbox_puts

BUDGET = "budget"  # the name of the usage item in a change's transaction (its failed condition: no room)
BUDGET_RULE = "budget_rule"  # the limits' item: changed since read (read them again)
BUDGET_PERIOD = "budget_period"  # this period's committed: changed since read (a bill: read again)
BUDGET_NAMES = frozenset({BUDGET, BUDGET_RULE, BUDGET_PERIOD})
BUDGET_CHANGED = frozenset({BUDGET_RULE, BUDGET_PERIOD})


class BudgetRefused(Exception):
    """The project's budget has no room for the hold or reservation: nothing was written."""


class BudgetChanged(Exception):
    """The project's budget limits changed since they were read: read them again. Nothing was written."""


def budget_failure(names: frozenset[str]) -> Exception | None:
    """What the failed conditions of a change's transaction mean for its budget items (None: nothing, or
    another condition failed too: that one decides, e.g. a replay)."""
    if names - BUDGET_NAMES:
        return None
    if names & BUDGET_CHANGED:
        return BudgetChanged()
    if BUDGET in names:
        return BudgetRefused()
    return None


_COUNTERS = {  # counter -> its attribute for ad spend, for credits, and the prefix of a platform's
    "committed": ("committed", "credits_committed", "pcommitted#"),  # a period's item
    "held": ("held", "credits_reserved", "pheld#"),  # the open counter (BUDGETH#)
}


def committed_attribute(budget: str) -> str:
    """The period's counter a budget's guard checks is unchanged."""
    return _attribute(budget, "committed")


def held_attribute(budget: str) -> str:
    """The open counter a budget's guard caps."""
    return _attribute(budget, "held")


def _attribute(budget: str, counter: str) -> str:
    ad_spend, credits, platform = _COUNTERS[counter]
    if budget == AD_SPEND:
        return ad_spend
    return credits if budget == CREDITS else platform + budget.removeprefix(AD_SPEND + ":")


def _sum(one: Item, other: Item, prefix: str) -> dict[str, int]:
    names = {k for item in (one, other) for k in item if k.startswith(prefix)}
    return {k.removeprefix(prefix): int(one.get(k, 0)) + int(other.get(k, 0)) for k in names}


def budget_key(org_id: str, project_id: str) -> keys.Key:
    return keys.key(org_id, keys.budget_sk(project_id))


def budget_of(project_id: str, item: Item | None) -> ProjectBudget:
    """The project's limits of its budget item as read (None: none, rev 0: never set)."""
    return _budget(plain(item)) if item else ProjectBudget(project_id)


def _budget(item: Item) -> ProjectBudget:
    return ProjectBudget(
        project_id=str(item["project_id"]),
        ad_spend_minor=int(item["ad_spend_minor"]) if "ad_spend_minor" in item else None,
        platforms_minor={str(k): int(v) for k, v in (item.get("platforms_minor") or {}).items()},
        credits=int(item["credits"]) if "credits" in item else None,
        rev=int(item.get("rev", 0)),
        updated_at=str(item.get("updated_at", "")),
        updated_by=str(item.get("updated_by", "")),
    )


def _usage(period_key: str, item: Item, held: Item) -> BudgetUsage:
    """The period's usage (`item`) with what is held now (`held`, the open counter; the period's own held
    counters: holds made before it, still counted where they were made)."""
    return BudgetUsage(
        period_key=period_key,
        spent=int(item.get("spent", 0)),
        held=int(item.get("held", 0)) + int(held.get("held", 0)),
        platform_spent=_sum(item, {}, "pspent#"),
        platform_held=_sum(item, held, "pheld#"),
        credits_used=int(item.get("credits_used", 0)),
        credits_reserved=int(item.get("credits_reserved", 0)) + int(held.get("credits_reserved", 0)),
    )


class BudgetRepository:
    def __init__(self, table: Any):
        self._table = table
        self._name: str = table.name

    # ------------------------------------------------------------------ reads
    def budget(self, org_id: str, project_id: str) -> ProjectBudget:
        """The project's limits (none, rev 0, if never set)."""
        with dynamo_errors():
            got = self._table.get_item(Key=budget_key(org_id, project_id), ConsistentRead=True)
        return budget_of(project_id, got.get("Item"))

    def usage(self, org_id: str, project_id: str, period_key: str) -> BudgetUsage:
        """What the project used in the period and what its open holds and reservations hold now."""
        return _usage(
            period_key, self._get(org_id, keys.budget_period_sk(period_key, project_id)), self._open(org_id, project_id)
        )

    def period_committed(self, org_id: str, project_id: str, period_key: str) -> dict[str, int]:
        """The period's committed counters by budget name (what a new hold's guard checks is unchanged)."""
        item = self._get(org_id, keys.budget_period_sk(period_key, project_id))
        found = {
            k: int(v) for k, v in item.items() if k in ("committed", "credits_committed") or k.startswith("pcommitted#")
        }
        return {_budget_of(k): v for k, v in found.items()}

    def _open(self, org_id: str, project_id: str) -> Item:
        return self._get(org_id, keys.budget_open_sk(project_id))

    def _get(self, org_id: str, sk: str) -> Item:
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, sk), ConsistentRead=True)
        return plain(got.get("Item") or {})

    def budgets(self, org_id: str) -> list[ProjectBudget]:
        """Every project budget of the org that was ever set."""
        return [_budget(i) for i in org_items(self._table, org_id, keys.BUDGET_PREFIX)]

    def usages(self, org_id: str, period_key: str) -> dict[str, BudgetUsage]:
        """What each project committed in the period, by project id (projects with nothing: absent)."""
        items = {str(i["project_id"]): i for i in org_items(self._table, org_id, keys.budget_period_prefix(period_key))}
        held = {str(i["project_id"]): i for i in org_items(self._table, org_id, keys.BUDGET_OPEN_PREFIX)}
        return {p: _usage(period_key, items.get(p, {}), held.get(p, {})) for p in sorted(set(items) | set(held))}

    # ------------------------------------------------------------------ writes
    def put_budget(self, org_id: str, budget: ProjectBudget, at: datetime, actor: str) -> ProjectBudget:
        """Replaces the project's limits; bumps `rev` (holds and reservations that read the old limits
        fail their check and read them again). Returns what is stored now."""
        update = self._put_update(org_id, budget, at, actor)
        with dynamo_errors():
            got = self._table.update_item(**update, ReturnValues="ALL_NEW")
        return _budget(plain(got["Attributes"]))

    def put_budget_announced(
        self, org_id: str, budget: ProjectBudget, at: datetime, actor: str, read: ProjectBudget, messages: list[Message]
    ) -> ProjectBudget:
        """As `put_budget`, with the crossings the new limits announce (`messages`) in the same transaction
        (the outbox), if the limits are still the ones `read` (else BudgetChanged: read them again). A put that
        crashed after its write and is retried finds its limits stored, and announces nothing twice."""
        update = self._put_update(org_id, budget, at, actor) | {"TableName": self._name}
        update["ConditionExpression"] = "attribute_not_exists(rev)" if read.rev == 0 else "rev = :read"
        if read.rev:
            update["ExpressionAttributeValues"][":read"] = read.rev
        cause = f"budget:{budget.project_id}:{read.rev + 1}"
        try:
            with dynamo_errors():
                self._table.meta.client.transact_write_items(
                    TransactItems=[{"Update": update}, *outbox_puts(self._name, org_id, cause, messages, at)]
                )
        except TransactionConditionFailed:
            raise BudgetChanged() from None
        return self.budget(org_id, budget.project_id)

    def _put_update(self, org_id: str, budget: ProjectBudget, at: datetime, actor: str) -> dict[str, Any]:
        values: dict[str, Any] = {":p": budget.project_id, ":at": at.isoformat(), ":by": actor, ":zero": 0, ":one": 1}
        values |= {":pl": dict(budget.platforms_minor), ":t": "project_budget"}
        sets = ["project_id = :p", "updated_at = :at", "updated_by = :by", "platforms_minor = :pl", "#t = :t"]
        removes = []
        for attribute, value in (("ad_spend_minor", budget.ad_spend_minor), ("credits", budget.credits)):
            if value is None:
                removes.append(attribute)
            else:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value
        sets.append("rev = if_not_exists(rev, :zero) + :one")
        return {
            "Key": keys.key(org_id, keys.budget_sk(budget.project_id)),
            "UpdateExpression": "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else ""),
            "ExpressionAttributeNames": {"#t": "type"},
            "ExpressionAttributeValues": values,
        }

    def touch_items(self, org_id: str, touch: BudgetTouch) -> list[Named]:
        """The items a change's transaction carries for `touch`: the counters' update (for a guarded touch,
        conditional on room: BUDGET) and, for a guarded touch, the checks that this period's committed
        counters (BUDGET_PERIOD) and the limits (BUDGET_RULE) are the ones it read."""
        adds = _adds(touch)
        names = {f"#a{i}": k for i, k in enumerate(adds)}
        values: dict[str, Any] = {f":a{i}": v for i, v in enumerate(adds.values())}
        values |= {":p": touch.project_id, ":k": touch.period_key, ":t": "project_budget_usage"}
        sk = keys.budget_open_sk(touch.project_id) if touch.period_key == OPEN else None
        update: dict[str, Any] = {
            "TableName": self._name,
            "Key": keys.key(org_id, sk or keys.budget_period_sk(touch.period_key, touch.project_id)),
            "UpdateExpression": "SET project_id = :p, period_key = :k, #type = :t"
            + (" ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds))) if adds else ""),
        }
        names["#type"] = "type"
        items = []
        guard = touch.guard
        if guard is not None:
            condition = _at_most(guard.held_caps(), held_attribute, names, values)
            if condition:
                update["ConditionExpression"] = condition
            if guard.caps:
                items.append(Named(BUDGET_PERIOD, self._period_check(org_id, touch.project_id, guard)))
            items.append(Named(BUDGET_RULE, self._rule_check(org_id, touch.project_id, guard.rev)))
        update |= {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        return [Named(BUDGET, {"Update": update}), *items]

    def _period_check(self, org_id: str, project_id: str, guard: BudgetGuard) -> TxItem:
        """This period's committed counters are the ones the guard read (absent when read as 0)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        conditions = []
        for i, budget in enumerate(sorted(guard.caps)):
            names[f"#u{i}"], values[f":u{i}"] = committed_attribute(budget), guard.committed.get(budget, 0)
            absent = f"attribute_not_exists(#u{i}) OR " if values[f":u{i}"] == 0 else ""
            conditions.append(f"({absent}#u{i} = :u{i})")
        check: dict[str, Any] = {
            "TableName": self._name,
            "Key": keys.key(org_id, keys.budget_period_sk(guard.period_key, project_id)),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        return {"ConditionCheck": check}

    def _rule_check(self, org_id: str, project_id: str, rev: int) -> TxItem:
        check: dict[str, Any] = {"TableName": self._name, "Key": keys.key(org_id, keys.budget_sk(project_id))}
        if rev == 0:
            check["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            check |= {"ConditionExpression": "rev = :rev", "ExpressionAttributeValues": {":rev": rev}}
        return {"ConditionCheck": check}


def _at_most(caps: dict[str, int], attribute: Any, names: dict[str, str], values: dict[str, Any]) -> str:
    """The condition that each budget's counter is at most its cap (below 0 nothing fits, even with nothing
    counted yet: the attribute absent fails it too)."""
    conditions = []
    for i, (budget, cap) in enumerate(sorted(caps.items())):
        names[f"#c{i}"], values[f":c{i}"] = attribute(budget), cap
        absent = f"attribute_not_exists(#c{i}) OR " if cap >= 0 else ""
        conditions.append(f"({absent}#c{i} <= :c{i})")
    return " AND ".join(conditions)


def _budget_of(attribute: str) -> str:
    """The budget a committed counter counts for."""
    if attribute == "committed":
        return AD_SPEND
    if attribute == "credits_committed":
        return CREDITS
    return platform_budget(attribute.removeprefix("pcommitted#"))


def _adds(touch: BudgetTouch) -> dict[str, int]:
    """The counters a touch changes (zeros left out): the open counter only what is held and reserved."""
    if touch.period_key == OPEN:
        p = touch.platform
        held = {"held": touch.held, f"pheld#{p}": touch.held if p else 0, "credits_reserved": touch.credits_reserved}
        return {k: v for k, v in held.items() if v}
    spend = touch.spent + touch.held
    p = touch.platform
    found = {
        "spent": touch.spent,
        "held": touch.held,
        "committed": spend,
        f"pspent#{p}": touch.spent if p else 0,
        f"pheld#{p}": touch.held if p else 0,
        f"pcommitted#{p}": spend if p else 0,
        "credits_used": touch.credits_used,
        "credits_reserved": touch.credits_reserved,
        "credits_committed": touch.credits_used + touch.credits_reserved,
    }
    return {k: v for k, v in found.items() if v}
