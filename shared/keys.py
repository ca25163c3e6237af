"""Every storage key of the ledgers and the wallet: the one module that spells PK / SK / GSI strings
(BillingTable is single-table; each org's money lives in its own partition ORG#<org_id>)."""

from __future__ import annotations

import zlib

ORG_SK = "ORG"
WALLET_SK = "WALLET"
CREDITS_SK = "CREDITS"
WALLET_ENTRY_PREFIX = "WLEDGER#"
CREDIT_ENTRY_PREFIX = "CLEDGER#"
CAUSE_PREFIX = "IDEM#"
HOLD_PREFIX = "HOLD#"
TOPUP_PREFIX = "TOPUP#"
RESERVATION_PREFIX = "RESV#"
PERIOD_PREFIX = "PERIOD#"
WALLET_PERIOD_PREFIX = "WPERIOD#"

# GSI2: sparse lists of open records, sorted by when they fall due. Each list is sharded: an entry's
# partition is `<list>#<shard>`, the shard from its id, so no list is one hot index partition (1,000
# WCU/s each; an entry is written twice: listed, then unlisted). The sweeper queries every shard.
ACTIVE_HOLDS = "HOLD#ACTIVE"
ACTIVE_RESERVATIONS = "RESV#ACTIVE"
AUTO_IN_FLIGHT = "AUTO#INFLIGHT"
OUTBOX_UNSENT = "OUTBOX#UNSENT"
OUTBOX_RETRY = "OUTBOX#RETRY"  # tasks to perform again, by due time
INDEX_SHARDS = 16


def listed_pk(listed: str, entry_id: str) -> str:
    """The GSI2 partition of an entry of `listed`: a stable shard from its id (CRC-32, not Python's hash)."""
    return f"{listed}#{zlib.crc32(entry_id.encode()) % INDEX_SHARDS:02d}"


def listed_pks(listed: str) -> list[str]:
    """Every partition of `listed`, and the unsharded key entries written before sharding still hold."""
    return [listed, *(f"{listed}#{shard:02d}" for shard in range(INDEX_SHARDS))]


Key = dict[str, str]


def org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def org_id_of(pk: str) -> str:
    return pk.removeprefix("ORG#")


def key(org_id: str, sk: str) -> Key:
    return {"PK": org_pk(org_id), "SK": sk}


def org_key(org_id: str) -> Key:
    return key(org_id, ORG_SK)


def entry_sk(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:012d}"


def cause_sk(cause: str) -> str:
    return f"{CAUSE_PREFIX}{cause}"


def hold_sk(hold_id: str) -> str:
    return f"{HOLD_PREFIX}{hold_id}"


def topup_sk(topup_id: str) -> str:
    return f"{TOPUP_PREFIX}{topup_id}"


REFUSED_BILL_PREFIX = "BILLREFUSED#"


def refused_bill_sk(platform: str, bill_id: str) -> str:
    return f"{REFUSED_BILL_PREFIX}{platform}#{bill_id}"


def reservation_sk(run_id: str) -> str:
    return f"{RESERVATION_PREFIX}{run_id}"


def period_sk(period_key: str) -> str:
    return f"{PERIOD_PREFIX}{period_key}"


def project_period_prefix(period_key: str) -> str:
    return f"{PERIOD_PREFIX}{period_key}#PRJ#"


def project_period_sk(period_key: str, project_id: str) -> str:
    return f"{project_period_prefix(period_key)}{project_id}"


USAGE_PREFIX = "USAGE#"
USAGE_EVENT_PREFIX = "USAGEEVT#"
USAGE_WARNING_PREFIX = "USAGEWARN#"


def usage_prefix(period_key: str) -> str:
    """The metered usage of a period, one item per metric (its total and its daily series)."""
    return f"{USAGE_PREFIX}{period_key}#"


def usage_sk(period_key: str, metric: str) -> str:
    return f"{usage_prefix(period_key)}{metric}"


def usage_event_key(org_id: str, metric: str, event_id: str) -> Key:
    """A metered event's dedupe marker: its own partition (a busy org's markers are spread over many),
    removed by the table's TTL after the dedupe window."""
    return {"PK": f"{USAGE_EVENT_PREFIX}{org_id}#{metric}#{event_id}", "SK": "EVENT"}


def usage_warning_sk(period_key: str, metric: str, threshold_pct: int) -> str:
    """The record that a period's allowance warning was sent (once per crossing; kept, no TTL)."""
    return f"{USAGE_WARNING_PREFIX}{period_key}#{metric}#{threshold_pct}"


def wallet_period_prefix(period_key: str) -> str:
    return f"{WALLET_PERIOD_PREFIX}{period_key}#"


def wallet_period_sk(period_key: str, platform: str, project_id: str, late_for: str | None = None) -> str:
    """A period's spend per platform and project; `late_for`: the spend of an earlier period whose invoice
    was issued before it was recorded (carried to this period's invoice, apart)."""
    late = f"LATE#{late_for}#" if late_for else ""
    return f"{wallet_period_prefix(period_key)}{late}{platform}#{project_id}"


def wallet_statement_key(org_id: str, period_key: str) -> Key:
    """The wallet's movements by kind that a period's invoice covers (its statement)."""
    return key(org_id, f"WSTMT#{period_key}")


def invoice_key(org_id: str, period_key: str) -> Key:
    return key(org_id, f"INVOICE#{period_key}")


def invoice_sk(period_key: str) -> str:
    return f"INVOICE#{period_key}"


def invoice_lines_prefix(period_key: str, digest: str) -> str:
    """The chunks of one stored set of an invoice's lines (`digest`: their sha256), in order."""
    return f"INVLINES#{period_key}#{digest}#"


def invoice_lines_sk(period_key: str, digest: str, seq: int) -> str:
    return f"{invoice_lines_prefix(period_key, digest)}{seq:05d}"


def invoice_lines_marker_sk(period_key: str, digest: str) -> str:
    """Written after every chunk of the set: its presence means the set is complete."""
    return f"INVLINES#{period_key}#{digest}"


def charge_link_key(charge_id: str) -> Key:
    """Which org and top-up a Stripe charge paid (disputes name only the charge)."""
    return {"PK": f"CHARGE#{charge_id}", "SK": "LINK"}


def period_index_key(org_id: str, period_key: str) -> Key:
    """The item that lists a billing period for the invoice run (GSI2 PERIODEND#<day>) until its invoice
    is issued."""
    return {"PK": f"ORG#{org_id}", "SK": f"PERIODIDX#{period_key}"}


# ---------------------------------------------------------------------- reconciliation (shared/reconcile)
DISCREPANCY_PREFIX = "DISCREP#"
SPEND_REPORT_PREFIX = "SPENDRPT#"
OPEN_DISCREPANCIES = "RECON#OPEN"  # GSI2: the orgs with open discrepancies, while open
GLOBAL_RECON_PK = "RECON#GLOBAL"  # discrepancies of no one org (invoice number series)


def discrepancy_key(org_id: str, kind: str, scope: str) -> Key:
    pk = org_pk(org_id) if org_id else GLOBAL_RECON_PK
    return {"PK": pk, "SK": f"{DISCREPANCY_PREFIX}{kind}#{scope}"}


def spend_report_sk(day: str, platform: str, project_id: str) -> str:
    return f"{SPEND_REPORT_PREFIX}{day}#{platform}#{project_id}"


def reports_of_day(day: str) -> str:
    """GSI2 list of the orgs a platform reported spend for on `day` (the daily run's orgs)."""
    return f"SPENDRPT#DAY#{day}"


WALLET_ACTIVITY_PREFIX = "WACTIVITY#"


def wallet_activity_sk(day: str) -> str:
    """The org's marker of a day its wallet ledger moved (one item a day, overwritten by each movement)."""
    return f"{WALLET_ACTIVITY_PREFIX}{day}"


def wallet_activity_of_day(day: str) -> str:
    """GSI2 list of the orgs whose wallet ledger moved on `day` (the daily run's orgs that only spent)."""
    return f"WACTIVITY#DAY#{day}"


def recon_run_pk(run_id: str) -> str:
    return f"RECONRUN#{run_id}"


# ---------------------------------------------------------------------- project budgets (shared/budgets)
BUDGET_PREFIX = "BUDGET#"
BUDGET_PERIOD_PREFIX = "BUDGETP#"
BUDGET_OPEN_PREFIX = "BUDGETH#"


def budget_open_sk(project_id: str) -> str:
    """What a project's open holds and reservations still hold, whatever period they were made in."""
    return f"{BUDGET_OPEN_PREFIX}{project_id}"


def budget_sk(project_id: str) -> str:
    """A project's budget settings (its limits; `rev` bumped by every change)."""
    return f"{BUDGET_PREFIX}{project_id}"


def budget_period_prefix(period_key: str) -> str:
    return f"{BUDGET_PERIOD_PREFIX}{period_key}#"


def budget_period_sk(period_key: str, project_id: str) -> str:
    """What a project committed in a period against its budget: spent, held, credits used and reserved."""
    return f"{budget_period_prefix(period_key)}{project_id}"


WALLET_RUNWAY_SK = "WRUNWAY"  # the runway's alert stages and the stage last alerted (shared/wallet/runway_watch.py)


def statement_settings_sk(project_id: str) -> str:
    """A project's client-statement settings as kept before they were versioned (in effect until the first
    version): shared/invoices/statements.py."""
    return f"PROJSTMT#{project_id}"


def statement_versions_prefix(project_id: str) -> str:
    return f"PROJSTMT#{project_id}#V#"


def statement_version_sk(project_id: str, from_period_key: str, made_at: str, version_id: str) -> str:
    """One version of a project's statement settings, in effect from the period `from_period_key` on
    (append-only; sorted by the period, then by when it was made)."""
    return f"{statement_versions_prefix(project_id)}{from_period_key}#{made_at}#{version_id}"
