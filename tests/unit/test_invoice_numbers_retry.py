"""Finalize retries the invoice-number counter's transaction conflicts with backoff (one counter item per
year is written by every finalize, so a scaled-out run conflicts on it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shared.errors import ConcurrentUpdateError
from shared.invoices import service as invoice_service
from shared.invoices.repository import Counter
from shared.invoices.service import InvoiceService
from tests.integration.credit_kit import ManualClock


class _Repo:
    def __init__(self, conflicts: int, draft: Any):
        self.conflicts, self.calls, self.invoice = conflicts, 0, draft
        self.counters: list[Counter | None] = []  # the counter each attempt was given (None: it reads it)

    def get_to_number(self, org_id: str, period_key: str) -> tuple[Any, dict[int, Counter]]:
        return self.invoice, {2026: Counter(41, True)}

    def finalize(self, invoice: Any, year: int, counter: Counter | None = None) -> bool:
        self.calls += 1
        self.counters.append(counter)
        if self.calls <= self.conflicts:
            raise ConcurrentUpdateError("TransactionConflict")
        self.invoice = invoice.model_copy(update={"status": "finalized"})
        return True


class _Draft:
    status, period_end = "draft", "2026-10-01T00:00:00+00:00"
    stripe_invoice_ids, lines, totals = ["in_1"], [], None  # something to bill: it is numbered
    wallet_statement = None

    def __init__(self, status: str = "draft"):
        self.status = status

    def model_copy(self, update: dict[str, Any]) -> _Draft:
        return _Draft(update.get("status", self.status))


def _service(repo: _Repo) -> InvoiceService:
    service = object.__new__(InvoiceService)
    service._repo = cast(Any, repo)
    service._clock = ManualClock(datetime(2026, 10, 2, tzinfo=UTC))
    return service


def test_finalize_retries_counter_conflicts() -> None:
    repo = _Repo(conflicts=5, draft=_Draft())
    assert _service(repo).finalize("org_1", "2026-09-01T00:00:00Z") == "finalized"
    assert repo.calls == 6
    assert repo.counters == [Counter(41, True)] + [None] * 5  # read with the invoice for the first attempt only


def test_finalize_gives_up_after_its_attempts() -> None:
    repo = _Repo(conflicts=100, draft=_Draft())
    with pytest.raises(ConcurrentUpdateError):
        _service(repo).finalize("org_1", "2026-09-01T00:00:00Z")
    assert repo.calls == invoice_service.FINALIZE_ATTEMPTS
