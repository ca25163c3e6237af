"""DynamoDB layout of project budgets (the org's partition of BillingTable; keys in shared/keys.py):

  SK=BUDGET#<project_id>                 the project's limits (ad_spend_minor, platforms_minor, credits)
                                         and `rev`, bumped by every change of them
  SK=BUDGETP#<period_key>#<project_id>   what the project committed in the period: spent, held,
                                         committed (= spent + held), the same per platform
                                         (`pspent#<platform>` ...), credits_used, credits_reserved,
                                         credits_committed (= used + reserved); kept for every project,
                                         with a budget or not, so a budget set mid-period counts what was
                                         committed before it

The counters are changed only inside the wallet's and the credit account's own transactions
(`touch_items`): a new hold or reservation adds its item conditional on `committed <= limit - amount`
for each limited budget and on the limits it read being the stored ones (`rev`), so concurrent holds
of one project can never exceed its budget and need no read of the counters; bills and settles add
without a condition (always recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Key

from shared import keys
from shared.budgets.models import BudgetTouch
from shared.budgets.rules import AD_SPEND, CREDITS, BudgetUsage, ProjectBudget
from shared.dynamo import Item, TransactionConditionFailed, TxItem, dynamo_errors, plain
from shared.ledger import Named
from shared.outbox import Message, outbox_puts

BUDGET = "budget"  # the name of the usage item in a change's transaction (its failed condition: no room)
BUDGET_RULE = "budget_rule"  # the limits' item: changed since read (read them again)
BUDGET_NAMES = frozenset({BUDGET, BUDGET_RULE})


class BudgetRefused(Exception):
    """The project's budget has no room for the hold or reservation: nothing was written."""


class BudgetChanged(Exception):
    """The project's budget limits changed since they were read: read them again. Nothing was written."""


def budget_failure(names: frozenset[str]) -> Exception | None:
    """What the failed conditions of a change's transaction mean for its budget items (None: nothing, or
    another condition failed too: that one decides, e.g. a replay)."""
    if names - BUDGET_NAMES:
        return None
    if BUDGET_RULE in names:
        return BudgetChanged()
    if BUDGET in names:
        return BudgetRefused()
    return None


def committed_attribute(budget: str) -> str:
    """The counter a budget's condition reads."""
    if budget == AD_SPEND:
        return "committed"
    if budget == CREDITS:
        return "credits_committed"
    return f"pcommitted#{budget.removeprefix(AD_SPEND + ':')}"


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


def _usage(period_key: str, item: Item) -> BudgetUsage:
    def per_platform(prefix: str) -> dict[str, int]:
        return {k.removeprefix(prefix): int(v) for k, v in item.items() if k.startswith(prefix)}

    return BudgetUsage(
        period_key=period_key,
        spent=int(item.get("spent", 0)),
        held=int(item.get("held", 0)),
        platform_spent=per_platform("pspent#"),
        platform_held=per_platform("pheld#"),
        credits_used=int(item.get("credits_used", 0)),
        credits_reserved=int(item.get("credits_reserved", 0)),
    )


class BudgetRepository:
    def __init__(self, table: Any):
        self._table = table
        self._name: str = table.name

    # ------------------------------------------------------------------ reads
    def budget(self, org_id: str, project_id: str) -> ProjectBudget:
        """The project's limits (none, rev 0, if never set)."""
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, keys.budget_sk(project_id)), ConsistentRead=True)
        item = got.get("Item")
        return _budget(plain(item)) if item else ProjectBudget(project_id)

    def usage(self, org_id: str, project_id: str, period_key: str) -> BudgetUsage:
        with dynamo_errors():
            got = self._table.get_item(
                Key=keys.key(org_id, keys.budget_period_sk(period_key, project_id)), ConsistentRead=True
            )
        return _usage(period_key, plain(got.get("Item") or {}))

    def budgets(self, org_id: str) -> list[ProjectBudget]:
        """Every project budget of the org that was ever set."""
        return [_budget(i) for i in self._query(org_id, keys.BUDGET_PREFIX)]

    def usages(self, org_id: str, period_key: str) -> dict[str, BudgetUsage]:
        """What each project committed in the period, by project id (projects with nothing: absent)."""
        items = self._query(org_id, keys.budget_period_prefix(period_key))
        return {str(i["project_id"]): _usage(period_key, i) for i in items if "project_id" in i}

    def _query(self, org_id: str, prefix: str) -> list[Item]:
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(prefix),
            "ConsistentRead": True,
        }
        items: list[Item] = []
        with dynamo_errors():
            while True:
                resp = self._table.query(**query)
                items += [plain(i) for i in resp["Items"]]
                if "LastEvaluatedKey" not in resp:
                    return items
                query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

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
        """The items a change's transaction carries for `touch`: the counters' update (conditional on room
        for a guarded touch: BUDGET) and, for a guarded touch, the check that the limits are the ones it
        read (BUDGET_RULE)."""
        adds = _adds(touch)
        names = {f"#a{i}": k for i, k in enumerate(adds)}
        values: dict[str, Any] = {f":a{i}": v for i, v in enumerate(adds.values())}
        values |= {":p": touch.project_id, ":k": touch.period_key, ":t": "project_budget_usage"}
        update: dict[str, Any] = {
            "TableName": self._name,
            "Key": keys.key(org_id, keys.budget_period_sk(touch.period_key, touch.project_id)),
            "UpdateExpression": "SET project_id = :p, period_key = :k, #type = :t"
            + (" ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds))) if adds else ""),
        }
        names["#type"] = "type"
        items = []
        if touch.guard is not None:
            conditions = []
            for i, (budget, cap) in enumerate(sorted(touch.guard.caps.items())):
                names[f"#c{i}"] = committed_attribute(budget)
                values[f":c{i}"] = cap
                # below 0 nothing fits, even with nothing committed yet (the attribute absent fails it too)
                absent = f"attribute_not_exists(#c{i}) OR " if cap >= 0 else ""
                conditions.append(f"({absent}#c{i} <= :c{i})")
            if conditions:
                update["ConditionExpression"] = " AND ".join(conditions)
            items.append(Named(BUDGET_RULE, self._rule_check(org_id, touch.project_id, touch.guard.rev)))
        update |= {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        return [Named(BUDGET, {"Update": update}), *items]

    def _rule_check(self, org_id: str, project_id: str, rev: int) -> TxItem:
        check: dict[str, Any] = {"TableName": self._name, "Key": keys.key(org_id, keys.budget_sk(project_id))}
        if rev == 0:
            check["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            check |= {"ConditionExpression": "rev = :rev", "ExpressionAttributeValues": {":rev": rev}}
        return {"ConditionCheck": check}


def _adds(touch: BudgetTouch) -> dict[str, int]:
    """The counters a touch changes (zeros left out)."""
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
