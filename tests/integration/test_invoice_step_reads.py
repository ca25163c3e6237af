"""Each step of the invoice run is its own Lambda invocation and reads what it needs in one round trip:
the invoice with the period's listing (and the org, for the steps that need it) in one BatchGetItem. A
rerun of the issued period's steps writes nothing (the close finds the invoice past its draft, the issue
finds its period off the index), and a step cut short after its write still does what is left on a rerun.
DynamoDB calls are counted through botocore's event hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.credits.periods import Period, period_containing
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.helpers import dynamo_calls
from tests.integration.wallet_kit import WalletKit, agency_org, fund, raw_item, wallet_kit

pytestmark = pytest.mark.integration

STEPS = ("close", "collect", "finalize", "render", "issue")
WRITES = {"PutItem", "UpdateItem", "TransactWriteItems", "DeleteItem", "BatchWriteItem"}


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, datetime(2027, 3, 10, 9, 30, tzinfo=UTC))


def _calls(kit: WalletKit) -> AbstractContextManager[list[tuple[str, str]]]:
    """The DynamoDB calls made inside the block: (operation, its parameters as text)."""
    return dynamo_calls(kit.repo._table)


@contextmanager
def _crash_after(kit: WalletKit, operation: str) -> Iterator[None]:
    """The first `operation` is written, then the Lambda dies (a timeout right after the write)."""
    events, crashed = kit.repo._table.meta.client.meta.events, []

    def crash(**_: Any) -> None:
        if not crashed:
            crashed.append(1)
            raise RuntimeError("the Lambda timed out right after its write")

    events.register(f"after-call.dynamodb.{operation}", crash)
    try:
        yield
    finally:
        events.unregister(f"after-call.dynamodb.{operation}", crash)


def _billed_period(kit: WalletKit) -> tuple[str, Period, Period]:
    """An agency org with spend in its first period, the clock past that period's settle window."""
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"r-{org_id}")
    bill = Bill(org_id, "meta", f"b-{org_id}", project, 12_345, "USD", date(2027, 3, 11), None, "spend-feed")
    kit.wallet.record_bill(bill)
    org = kit.org_repo.require_org(org_id)
    first = period_containing(org, kit.clock.now())
    kit.clock.at = first.end + SETTLE_WINDOW + timedelta(minutes=1)
    return org_id, first, period_containing(org, first.end)


def _step(kit: WalletKit, name: str) -> Callable[[str, str], str]:
    step: Callable[[str, str], str] = getattr(kit.services.invoices, name)
    return step


def _listed(kit: WalletKit, org_id: str, period_key: str) -> bool:
    item = raw_item(kit, org_id, f"PERIODIDX#{period_key}")
    return item is not None and "GSI2PK" in item


def test_each_step_reads_the_invoice_once_and_a_rerun_reads_one_batch_per_step(kit: WalletKit) -> None:
    org_id, period, following = _billed_period(kit)
    assert not _listed(kit, org_id, following.key)
    made: dict[str, list[tuple[str, str]]] = {}
    for name in STEPS:
        with _calls(kit) as calls:
            _step(kit, name)(org_id, period.key)
        made[name] = list(calls)
    invoice_sk = f"INVOICE#{period.key}"
    for name, calls in made.items():  # the invoice is read once per step, by the step's first call
        reads = [op for op, params in calls if op not in WRITES and invoice_sk in params]
        assert reads and calls[0][0] == reads[0], (name, calls)
        assert len(reads) == 1, (name, calls)
    assert [op for op, _ in made["close"]] == ["BatchGetItem", "PutItem", "PutItem"]  # org + listing + invoice
    assert [op for op, _ in made["finalize"]] == ["BatchGetItem", "TransactWriteItems"]  # + the year's counter
    assert [op for op, _ in made["issue"]] == ["BatchGetItem", "TransactWriteItems", "UpdateItem"]
    collect_org_reads = [op for op, params in made["collect"] if '"ORG"' in params]
    assert collect_org_reads == ["BatchGetItem"], made["collect"]  # with the invoice, in one round trip
    assert _listed(kit, org_id, following.key) and not _listed(kit, org_id, period.key)
    issued = kit.services.invoices.stored(org_id, period.key)
    assert issued is not None and issued.status == "issued"

    with _calls(kit) as calls:
        statuses = [_step(kit, name)(org_id, period.key) for name in STEPS]
    assert statuses == ["issued"] * 5
    assert [op for op, _ in calls] == ["BatchGetItem", "BatchGetItem", "BatchGetItem", "GetItem", "BatchGetItem"]
    assert kit.services.invoices.stored(org_id, period.key) == issued


def test_a_close_cut_short_after_its_draft_lists_the_next_period_on_its_rerun(kit: WalletKit) -> None:
    org_id, period, following = _billed_period(kit)
    with _crash_after(kit, "PutItem"), pytest.raises(RuntimeError):
        _step(kit, "close")(org_id, period.key)
    draft = kit.services.invoices.stored(org_id, period.key)
    assert draft is not None and draft.status == "draft"
    assert not _listed(kit, org_id, following.key)
    with _calls(kit) as calls:
        assert _step(kit, "close")(org_id, period.key) == "draft"
    assert [op for op, _ in calls] == ["BatchGetItem", "PutItem"]  # the listing; the draft stays as it was
    assert _listed(kit, org_id, following.key)
    assert kit.services.invoices.stored(org_id, period.key) == draft


def test_an_issue_cut_short_after_its_transaction_unlists_the_period_on_its_rerun(kit: WalletKit) -> None:
    org_id, period, _ = _billed_period(kit)
    for name in STEPS[:-1]:
        _step(kit, name)(org_id, period.key)
    with _crash_after(kit, "TransactWriteItems"), pytest.raises(RuntimeError):
        _step(kit, "issue")(org_id, period.key)
    assert _listed(kit, org_id, period.key)
    with _calls(kit) as calls:
        assert _step(kit, "issue")(org_id, period.key) == "issued"
    assert [op for op, _ in calls] == ["BatchGetItem", "UpdateItem"]  # no second announcement, then unlisted
    assert not _listed(kit, org_id, period.key)


def test_a_number_taken_between_the_read_and_the_finalize_is_not_reused_nor_skipped(stack: Any) -> None:
    """The counter read with the invoice is stale once another invoice takes a number first: the transaction's
    condition refuses it, the counter is read again, and the invoice takes the next number (no gap, no twin).
    (Its own year, 2031: no other test numbers invoices in it.)"""
    kit = wallet_kit(stack, datetime(2031, 3, 10, 9, 30, tzinfo=UTC))
    org_id, period, _ = _billed_period(kit)
    for name in STEPS[:2]:
        _step(kit, name)(org_id, period.key)
    table, counter = kit.repo._table, {"PK": "INVOICE_NUMBERS", "SK": "YEAR#2031"}
    before = int(table.get_item(Key=counter, ConsistentRead=True).get("Item", {}).get("last", 0))
    events, taken = table.meta.client.meta.events, []

    def another_finalize_first(**_: Any) -> None:
        if not taken:
            taken.append(1)
            table.update_item(
                Key=counter,
                UpdateExpression="ADD #l :one",
                ExpressionAttributeNames={"#l": "last"},
                ExpressionAttributeValues={":one": 1},
            )

    events.register("before-call.dynamodb.TransactWriteItems", another_finalize_first)
    try:
        with _calls(kit) as calls:
            assert _step(kit, "finalize")(org_id, period.key) == "finalized"
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", another_finalize_first)
    ops = [op for op, _ in calls if op != "UpdateItem"]  # less the other finalize's write
    assert ops == ["BatchGetItem", "TransactWriteItems", "GetItem", "TransactWriteItems"]
    finalized = kit.services.invoices.stored(org_id, period.key)
    assert finalized is not None and finalized.number == f"LB-2031-{before + 2:06d}"
    assert int(table.get_item(Key=counter, ConsistentRead=True)["Item"]["last"]) == before + 2


def test_an_empty_period_cut_short_before_its_unlisting_is_unlisted_on_its_rerun(kit: WalletKit) -> None:
    """A period with nothing to bill is recorded `empty` and taken off the index; a finalize that dies between
    the two leaves it listed: its rerun (the day's run again) takes it off, and numbers nothing."""
    org_id, _, _ = agency_org(kit)
    org = kit.org_repo.require_org(org_id)
    first = period_containing(org, kit.clock.now())
    kit.clock.at = first.end + SETTLE_WINDOW + timedelta(hours=5, minutes=17, seconds=3)
    for name in ("close", "collect"):
        _step(kit, name)(org_id, first.key)
    assert _listed(kit, org_id, first.key)
    with _crash_after(kit, "PutItem"), pytest.raises(RuntimeError):
        _step(kit, "finalize")(org_id, first.key)
    assert _listed(kit, org_id, first.key)
    assert _step(kit, "finalize")(org_id, first.key) == "empty"
    assert not _listed(kit, org_id, first.key)
    invoice = kit.services.invoices._repo.get(org_id, first.key)
    assert invoice is not None and invoice.status == "empty" and invoice.number is None
