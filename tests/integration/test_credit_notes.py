"""Issue 15: corrections end to end over HTTP - credit notes against an issued invoice (support only,
numbered LBCN-<year>-<n> without gaps, money back the way it came, PDF and CSV, once per key) and a
platform bill reversed onto the next invoice. The clock is where production would be: past the period's
end and settle window (time-machine), since an invoice is made only then."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
import time_machine

from shared.orgs.service import SETTLE_WINDOW
from tests.helpers import ApiClient, invoice_steps, new_user
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration
SPEND_FEED = devtokens.service_token("spend-ingestion")
SUPPORT = ("support",)


def _fund(org_id: str, amount: int) -> None:
    from functions.internal.handler import services

    services().wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{org_id}", payment_intent_id=f"pi-{org_id}", charge_id=None, amount_minor=amount
    )


def _bill(api: ApiClient, org_id: str, project: str, bill_id: str, amount: int, billed_on: date) -> None:
    body = {
        "org_id": org_id,
        "platform": "meta",
        "bill_id": bill_id,
        "project_id": project,
        "amount_minor": amount,
        "currency": "USD",
        "billed_on": billed_on.isoformat(),
    }
    reply = api.call("POST", "/v1/internal/wallet/bills", token=SPEND_FEED, json=body)
    assert reply.status == 200, reply.body


def _period(api: ApiClient, org_id: str, owner: str) -> tuple[str, datetime]:
    credits = api.call("GET", f"/v1/orgs/{org_id}/credits", as_user=owner).body
    return credits["period_key"], datetime.fromisoformat(credits["period_end"].replace("Z", "+00:00"))


def _wallet_balance(api: ApiClient, org_id: str, owner: str) -> int:
    return int(api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body["balance_minor"])


def _download(api: ApiClient, path: str, user: str, groups: tuple[str, ...] = ()) -> bytes:
    link = api.call("GET", path, as_user=user, groups=groups)
    assert link.status == 200, link.body
    return requests.get(link.body["url"], timeout=30).content


@pytest.fixture
def issued(api: ApiClient, stack: Any, table: Any) -> dict[str, Any]:
    return issued_invoice(api, stack, table)


def issued_invoice(api: ApiClient, stack: Any, table: Any) -> dict[str, Any]:
    """An agency org whose first invoice is issued: 12,000 of Meta spend (+ 5 % fee) and Stripe's Pro fee."""
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Corrected Co")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "=cmd|' /C calc'!A0"})
    _fund(org_id, 50_000)
    period_key, period_end = _period(api, org_id, owner)
    _bill(api, org_id, project.body["project_id"], "b-1", 12_000, datetime.now(UTC).date())
    invoice_steps(org_id, period_key)
    after = period_end + SETTLE_WINDOW + timedelta(minutes=5)
    invoice_id = api.call("GET", f"/v1/orgs/{org_id}/invoices", as_user=owner).body["items"]
    return {
        "org_id": org_id,
        "owner": owner,
        "project": project.body["project_id"],
        "after": after,
        "invoices": invoice_id,
    }


def test_a_credit_note_returns_wallet_money_once_with_documents_and_gapless_numbers(
    api: ApiClient, issued: dict[str, Any]
) -> None:
    org_id, owner = issued["org_id"], issued["owner"]
    (invoice,) = issued["invoices"]
    lines = invoice["lines"]
    fee_line = next(i for i, line in enumerate(lines) if line["description"].startswith("Platform fee"))
    url = f"/v1/orgs/{org_id}/invoices/{invoice['invoice_id']}/credit-notes"
    with time_machine.travel(issued["after"], tick=True):
        before = _wallet_balance(api, org_id, owner)
        # A member cannot issue one; an org the caller is not in is 404
        attempt = {"reason": "Wrong bill", "amount_minor": 1}
        denied = api.call("POST", url, as_user=owner, json=attempt, headers={"Idempotency-Key": "k0"})
        assert (denied.status, denied.code) == (403, "forbidden")
        stranger = api.call("POST", url, as_user=new_user(), json=attempt, headers={"Idempotency-Key": "k0"})
        assert stranger.status == 404
        # Support credits the whole platform fee line (600)
        body = {"reason": "Fee waived: onboarding", "lines": [{"line": fee_line}]}
        first = api.call(
            "POST", url, as_user=new_user("staff"), groups=SUPPORT, json=body, headers={"Idempotency-Key": "cn-1"}
        )
        assert first.status == 201, first.body
        note = first.body
        assert (note["amount_minor"], note["to_wallet_minor"], note["to_stripe_minor"]) == (600, 600, 0)
        assert re.fullmatch(r"LBCN-\d{4}-\d{6}", note["number"])
        assert _wallet_balance(api, org_id, owner) == before + 600
        # The replay by key changes nothing and answers the same note
        again = api.call(
            "POST", url, as_user=new_user("staff"), groups=SUPPORT, json=body, headers={"Idempotency-Key": "cn-1"}
        )
        assert (again.status, again.body["number"], again.body["replayed"]) == (201, note["number"], True)
        assert _wallet_balance(api, org_id, owner) == before + 600
        # The same key for another request is refused; the line cannot be credited twice
        reused = api.call(
            "POST",
            url,
            as_user=new_user("staff"),
            groups=SUPPORT,
            json={"reason": "Another one", "amount_minor": 5},
            headers={"Idempotency-Key": "cn-1"},
        )
        assert (reused.status, reused.code) == (409, "idempotency_key_reused")
        twice = api.call(
            "POST", url, as_user=new_user("staff"), groups=SUPPORT, json=body, headers={"Idempotency-Key": "cn-2"}
        )
        assert (twice.status, twice.code) == (409, "exceeds_creditable")
        # An amount is taken from the charged lines in order; the next number follows without a gap
        second = api.call(
            "POST",
            url,
            as_user=new_user("staff"),
            groups=SUPPORT,
            json={"reason": "Goodwill", "amount_minor": 1_000},
            headers={"Idempotency-Key": "cn-3"},
        )
        assert second.status == 201, second.body
        series, n = note["number"].rsplit("-", 1)
        assert second.body["number"] == f"{series}-{int(n) + 1:06d}"
        # Members see them and download the documents
        listed = api.call("GET", f"/v1/orgs/{org_id}/credit-notes", as_user=owner).body["items"]
        assert [c["number"] for c in listed] and {c["number"] for c in listed} == {
            note["number"],
            second.body["number"],
        }
        pdf = _download(api, f"/v1/orgs/{org_id}/credit-notes/{note['credit_note_id']}/pdf", owner)
        assert pdf.startswith(b"%PDF")
        raw = _download(api, f"/v1/orgs/{org_id}/credit-notes/{note['credit_note_id']}/csv", owner)
        assert raw.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
        assert sum(int(r["amount_minor"]) for r in rows) == 600
        assert all(not r["description"].startswith(("=", "+", "-", "@")) for r in rows)
        missing = api.call("GET", f"/v1/orgs/{org_id}/credit-notes/cn_{'0' * 24}/pdf", as_user=owner)
        assert (missing.status, missing.code) == (404, "credit_note_not_found")


def test_a_reversed_bill_is_on_the_next_invoice_and_a_replay_changes_nothing(
    api: ApiClient, issued: dict[str, Any]
) -> None:
    org_id, owner = issued["org_id"], issued["owner"]
    url = f"/v1/orgs/{org_id}/wallet/bills/meta/b-1/reversal"
    with time_machine.travel(issued["after"], tick=True):
        before = _wallet_balance(api, org_id, owner)
        assert api.call("POST", url, as_user=owner, json={"reason": "Wrong bill"}).status == 403
        unknown = api.call(
            "POST",
            f"/v1/orgs/{org_id}/wallet/bills/meta/nope/reversal",
            as_user=new_user("s"),
            groups=SUPPORT,
            json={"reason": "Wrong bill"},
        )
        assert (unknown.status, unknown.code) == (404, "bill_not_found")
        done = api.call("POST", url, as_user=new_user("staff"), groups=SUPPORT, json={"reason": "Billed twice"})
        assert done.status == 200 and (done.body["amount_minor"], done.body["fee_minor"]) == (-12_000, -600)
        replay = api.call("POST", url, as_user=new_user("staff"), groups=SUPPORT, json={"reason": "Billed twice"})
        assert replay.body["replayed"] is True
        assert _wallet_balance(api, org_id, owner) == before + 12_600
        next_key, next_end = _period(api, org_id, owner)
    invoice_steps(org_id, next_key)
    with time_machine.travel(next_end + SETTLE_WINDOW + timedelta(minutes=5), tick=True):
        newest = api.call("GET", f"/v1/orgs/{org_id}/invoices", as_user=owner).body["items"][0]
        assert newest["invoice_id"] == "inv_" + next_key.replace("-", "").replace(":", "")
        amounts = {line["description"].split(":")[0]: line["amount_minor"] for line in newest["lines"]}
        assert (amounts["Reversed or credited ad spend"], amounts["Platform fee given back"]) == (-12_000, -600)
        raw = _download(api, f"/v1/orgs/{org_id}/invoices/{newest['invoice_id']}/csv", owner)
        assert b"Reversed or credited ad spend" in raw
        numbers = [i["number"] for i in api.call("GET", f"/v1/orgs/{org_id}/invoices", as_user=owner).body["items"]]
        assert len(numbers) == 2 and all(numbers)
    assert datetime.now(UTC) < next_end  # back at the real time
