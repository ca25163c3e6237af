"""Issue 21 part 3: the runway over HTTP on DynamoDB Local - a simulated month of daily bills (time-machine)
alerts at 14, 7, 3 and 1 days exactly once each; the daily evaluation alerts when only the days moved;
rising re-arms; the wallet view's runway, next alert and funding suggestion by hand computation."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import time_machine

from tests.helpers import ApiClient, capture_events, drain, new_user, org_items
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration
ALERTS = {"detail-type": ["Wallet.RunwayAlert"]}


def _fund(org_id: str, amount: int, ref: str) -> None:
    from functions.internal.handler import services

    services().wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{ref}", payment_intent_id=f"pi-{ref}", charge_id=None, amount_minor=amount
    )


def _bill(api: ApiClient, org_id: str, project: str, bill_id: str, amount: int, billed_on: date) -> None:
    body = {"org_id": org_id, "platform": "meta", "bill_id": bill_id, "project_id": project}
    body |= {"amount_minor": amount, "currency": "USD", "billed_on": billed_on.isoformat()}
    feed = devtokens.service_token("spend-ingestion")  # made now: a token expires, and the test travels
    reply = api.call("POST", "/v1/internal/wallet/bills", token=feed, json=body)
    assert reply.status == 200, reply.body


def _agency_org(api: ApiClient, stack: Any, table: Any) -> tuple[str, str, str]:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Runway Co")  # Pro: a 5 % platform fee
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "Client A"})
    return owner, org_id, str(project.body["project_id"])


def _at(day: date) -> datetime:
    """A random time of that day (UTC)."""
    return datetime.combine(day, time(random.randrange(24), random.randrange(60), random.randrange(60)), UTC)


def _alerts(stack: Any, queue: str, org_id: str) -> list[tuple[int, int]]:
    """The org's runway alerts that reached EventBridge (the daily evaluation also alerts other tests' orgs)."""
    events = drain(stack, queue)
    return [
        (e["detail"]["stage_days"], e["detail"]["runway_tenths"]) for e in events if e["detail"]["org_id"] == org_id
    ]


def _notices(table: Any, org_id: str) -> list[dict[str, Any]]:
    outbox = [i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#") and i["kind"] == "notice"]
    return [body for body in (json.loads(i["body"]) for i in outbox) if body["kind"] == "Wallet.RunwayAlert"]


def test_a_simulated_month_alerts_each_stage_exactly_once(api: ApiClient, stack: Any, table: Any) -> None:
    owner, org_id, project = _agency_org(api, stack, table)
    queue = capture_events(stack, ALERTS)
    start = datetime.now(UTC).date() + timedelta(days=1)
    with time_machine.travel(_at(start), tick=True):
        _fund(org_id, 300_000, f"{org_id}-0")
    # Day n: a 10,000 bill of that day (+ 500 fee). From day 8 the rate is 10,500 a day and the funds
    # 300,000 - 10,500 n: the runway 28.57 - n days -> at or below 14 on day 15 (13.57), 7 on day 22
    # (6.57), 3 on day 26 (2.57), 1 on day 28 (0.57); overdrawn from day 29 (0, no new stage)
    seen: dict[int, Any] = {}
    for n in range(1, 31):
        day = start + timedelta(days=n)
        with time_machine.travel(_at(day), tick=True):
            _bill(api, org_id, project, f"b-{n}", 10_000, day)
            if n in (15, 22):
                _bill(api, org_id, project, f"b-{n}", 10_000, day)  # the feed redelivers it: nothing twice
            seen[n] = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
    assert _alerts(stack, queue, org_id) == [(14, 135), (7, 65), (3, 25), (1, 5)]
    assert sorted(n["details"]["stage_days"] for n in _notices(table, org_id)) == [1, 3, 7, 14]
    assert (seen[1]["runway_tenths"], seen[1]["next_alert_days"]) == (None, 14)  # no complete day of spend yet
    assert (seen[14]["runway_tenths"], seen[14]["next_alert_days"]) == (145, 14)
    assert (seen[15]["runway_tenths"], seen[15]["runway_days"], seen[15]["next_alert_days"]) == (135, 13, 7)
    assert (seen[15]["daily_rate_minor"], seen[15]["avg_daily_spend_minor"]) == (10_500, 10_500)
    # to 7 days: 73,500 - 142,500 < 0 on day 15; on day 22, 73,500 - 69,000 = 4,500 by card (no ACH)
    assert seen[15]["funding_suggestion"] is None
    assert seen[22]["funding_suggestion"] == {"amount_minor": 4_500, "method": "card", "restores_days": 7}
    assert (seen[30]["runway_tenths"], seen[30]["next_alert_days"]) == (0, None)


def test_the_daily_evaluation_alerts_when_only_the_days_moved_and_rising_re_arms(
    api: ApiClient, stack: Any, table: Any
) -> None:
    from functions.api.container import services

    owner, org_id, project = _agency_org(api, stack, table)
    queue = capture_events(stack, ALERTS)
    day1 = datetime.now(UTC).date() + timedelta(days=2)
    with time_machine.travel(_at(day1), tick=True):
        _fund(org_id, 20_000, f"{org_id}-1")
        _bill(api, org_id, project, "b-1", 10_000, day1)  # funds 9,500; no complete day yet: no runway
        assert api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body["runway_tenths"] is None
    with time_machine.travel(_at(day1 + timedelta(days=1)), tick=True):
        # Nothing written: day 1 is complete now, 10,500 / 7 = 1,500 a day; 9,500 / 1,500 = 6.33 days
        assert services().wallet.runway.daily() >= 1
        services().wallet.runway.daily()  # the schedule's later firing: no second alert
        assert _alerts(stack, queue, org_id) == [(7, 63)]
        _fund(org_id, 100_000, f"{org_id}-2")  # 109,500 / 1,500 = 73 days: above every stage, all re-armed
        assert _alerts(stack, queue, org_id) == []
        _bill(api, org_id, project, "b-2", 100_000, day1 + timedelta(days=1))  # 4,500 / 1,500 = 3.0 days
        assert _alerts(stack, queue, org_id) == [(3, 30)]  # the deepest stage crossed, once
        wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
        assert (wallet["runway_tenths"], wallet["next_alert_days"]) == (30, 1)


def test_holds_and_pending_ach_count_and_the_suggestion_is_hand_computable(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, project = _agency_org(api, stack, table)
    today = datetime.now(UTC).date() + timedelta(days=3)
    with time_machine.travel(_at(today), tick=True):
        _fund(org_id, 100_000, f"{org_id}-1")
        for back in range(1, 8):  # 7 complete days of 7,000 (+ 350 fee): 7,350 a day
            _bill(api, org_id, project, f"b-{back}", 7_000, today - timedelta(days=back))
        hold = {"org_id": org_id, "hold_id": f"h-{org_id}", "project_id": project, "platform": "tiktok"}
        placed = api.call(
            "POST",
            "/v1/internal/wallet/holds",
            token=devtokens.service_token("ad-optimizer"),
            json=hold | {"amount_minor": 3_000},
        )
        assert placed.status == 201, placed.body
        wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
        # F = 100,000 - 51,450 = 48,550 (the 3,000 held counted once: its hold spends it); R = 7,350; the
        # 24 h hold spends 3,000 in its day: 10,350 on day 1, then 7,350 a day: 1 + 38,200 / 7,350 = 6.19
        # days. 7 days spend 7 x 7,350 + 3,000 = 54,450: 5,900 more, by card
        assert (wallet["avg_daily_spend_minor"], wallet["daily_rate_minor"]) == (7_350, 10_350)
        assert (wallet["runway_tenths"], wallet["runway_days"], wallet["next_alert_days"]) == (61, 6, 3)
        assert wallet["funding_suggestion"] == {"amount_minor": 5_900, "method": "card", "restores_days": 7}
        ach = {"amount_minor": 5_000, "method": "ach", "payment_method_id": "pm_usBankAccount_success"}
        started = api.call(
            "POST", f"/v1/orgs/{org_id}/wallet/top-ups", as_user=owner, json=ach, headers={"Idempotency-Key": "ach-1"}
        )
        assert started.status == 202 and started.body["status"] == "pending", started.body
        wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
        # pending 5,000 counts: 1 + 43,200 / 7,350 = 6.87 days; 54,450 - 53,550 = 900, by ACH now
        assert (wallet["pending_minor"], wallet["runway_tenths"]) == (5_000, 68)
        assert wallet["funding_suggestion"] == {"amount_minor": 900, "method": "ach", "restores_days": 7}
        key = {"PK": f"ORG#{org_id}", "SK": "WRUNWAY"}
        assert table.get_item(Key=key, ConsistentRead=True)["Item"]["stage"] == 7  # alerted as the bills landed
        # The hold released: 53,550 / 7,350 = 7.28 days, above 7 again: the 7-day stage is re-armed
        release = f"/v1/internal/wallet/holds/{hold['hold_id']}/release"
        freed = api.call("POST", release, token=devtokens.service_token("ad-optimizer"), json={"org_id": org_id})
        assert freed.status == 200, freed.body
        assert table.get_item(Key=key, ConsistentRead=True)["Item"]["stage"] == 14


def test_runway_alert_stages_are_settings_validated_and_role_gated(api: ApiClient, stack: Any, table: Any) -> None:
    owner, org_id, _ = _agency_org(api, stack, table)
    path = f"/v1/orgs/{org_id}/wallet/settings"
    base = {"low_threshold_minor": 10_000}
    for bad in ([], [7, 7], [0, 3], [91], [1, 2, 3, 4, 5, 6, 7], ["7"], [2.5]):
        refused = api.call("PUT", path, as_user=owner, json=base | {"runway_alert_days": bad})
        assert refused.status == 422, (bad, refused.body)
    assert api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body["runway_alert_days"] == [14, 7, 3, 1]
    done = api.call("PUT", path, as_user=owner, json=base | {"runway_alert_days": [2, 10]})
    assert done.status == 200 and done.body["runway_alert_days"] == [10, 2] and done.body["next_alert_days"] == 10
    kept = api.call("PUT", path, as_user=owner, json=base)  # left out: unchanged
    assert kept.body["runway_alert_days"] == [10, 2]
    stranger = api.call("PUT", path, as_user=new_user(), json=base | {"runway_alert_days": [5]})
    assert stranger.status == 404
    unknown = api.call("PUT", "/v1/orgs/org_nope/wallet/settings", as_user=owner, json=base)
    assert unknown.status == 404


def _hold(api: ApiClient, org_id: str, project: str, hold_id: str, amount: int, expires_at: datetime) -> None:
    body = {"org_id": org_id, "hold_id": hold_id, "project_id": project, "platform": "meta"}
    body |= {"amount_minor": amount, "expires_at": expires_at.isoformat()}
    placed = api.call("POST", "/v1/internal/wallet/holds", token=devtokens.service_token("ad-optimizer"), json=body)
    assert placed.status == 201, placed.body


def test_held_money_counts_once_and_bills_drawn_from_holds_are_not_background_spend(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id, project = _agency_org(api, stack, table)
    now = _at(datetime.now(UTC).date() + timedelta(days=4))
    with time_machine.travel(now, tick=False):
        _fund(org_id, 40_000, f"{org_id}-1")
        _hold(api, org_id, project, f"camp-{org_id}", 14_000, now + timedelta(days=7))  # the campaign
        _hold(api, org_id, project, f"burst-{org_id}", 6_000, now + timedelta(days=2))
        for back in range(1, 8):  # each complete day: 1,000 drawn from the campaign's hold, 2,000 not (+ 5 %)
            day = now.date() - timedelta(days=back)
            body = {"org_id": org_id, "platform": "meta", "bill_id": f"c-{back}", "project_id": project}
            body |= {"amount_minor": 1_000, "currency": "USD", "billed_on": day.isoformat()}
            body |= {"hold_id": f"camp-{org_id}"}
            feed = devtokens.service_token("spend-ingestion")
            assert api.call("POST", "/v1/internal/wallet/bills", token=feed, json=body).status == 200
            _bill(api, org_id, project, f"b-{back}", 2_000, day)
        wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
    # F = 40,000 - 7 x 3,150 = 17,950 (the 13,000 still held counted once); R = 3,150 - 1,000 drawn = 2,150;
    # the campaign's 7,000 left over 7 days: 1,000 a day; the burst's 6,000 over 2 days: 3,000 a day.
    # Days 0-2: 6,150 a day -> 12,300; then 3,150 a day: 5,650 / 3,150 = 1.79 -> T = 3.79 days.
    # 7 days spend 7 x 2,150 + 7,000 + 6,000 = 28,050: 10,100 restores them.
    assert wallet["held_minor"] == 13_000
    assert (wallet["avg_daily_spend_minor"], wallet["daily_rate_minor"]) == (2_150, 6_150)
    assert (wallet["runway_tenths"], wallet["next_alert_days"]) == (37, 3)
    assert wallet["funding_suggestion"] == {"amount_minor": 10_100, "method": "card", "restores_days": 7}


def test_the_daily_evaluation_alerts_an_org_whose_only_activity_is_an_open_hold(
    api: ApiClient, stack: Any, table: Any
) -> None:
    from functions.api.container import services

    _, org_id, project = _agency_org(api, stack, table)
    queue = capture_events(stack, ALERTS)
    placed = _at(datetime.now(UTC).date() + timedelta(days=5))
    with time_machine.travel(placed, tick=False):
        _fund(org_id, 10_000, f"{org_id}-1")
        _hold(api, org_id, project, f"h-{org_id}", 10_000, placed + timedelta(days=20))  # 500 a day: 20 days
    with time_machine.travel(placed + timedelta(days=1), tick=False):
        # the platform reports 2,000 of spend no bill covers yet (no wallet movement, no evaluation)
        body = {"org_id": org_id, "platform": "meta", "project_id": project, "amount_minor": 2_000}
        body |= {"day": (placed + timedelta(days=1)).date().isoformat(), "currency": "USD", "report_id": new_user("r")}
        engine = devtokens.service_token("workflow-engine")
        assert api.call("POST", "/v1/internal/wallet/spend-reports", token=engine, json=body).status == 200
    assert _alerts(stack, queue, org_id) == []
    with time_machine.travel(placed + timedelta(days=8), tick=False):
        # 8 days on, no wallet movement for 8 days: F = 10,000 - 2,000 = 8,000; the hold's 10,000 over its
        # last 12 days is 833.33 a day: 8,000 / 833.33 = 9.6 days -> the 14-day alert, from the daily run
        services().wallet.runway.daily()
        assert _alerts(stack, queue, org_id) == [(14, 96)]
