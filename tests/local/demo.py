"""`make demo`: the billing walk-through on the local stack, driven over HTTP as the web app would.

Each later issue extends this script until it runs a whole billing month."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from shared.money import format_minor
from tests.local import devtokens
from tests.local.stack import LocalStack, start_local_stack


def say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    print(f"  - {title} ...", end="", flush=True)
    started = time.monotonic()
    yield
    print(f" ok ({time.monotonic() - started:.1f}s)", flush=True)


class WebApp:
    """What the Layers web app does: call the API with the signed-in person's token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def call(self, user: str, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        token = devtokens.mint(user, email=f"{user}@northwind.example")
        resp = self.http.request(
            method, self.base_url + path, json=body, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        data = resp.json() if resp.content else None
        if expect is not None and resp.status_code != expect:
            raise SystemExit(f"demo: {method} {path} returned {resp.status_code}, expected {expect}: {data}")
        return data


def money(minor: int | None) -> str:
    return "n/a" if minor is None else format_minor(minor, "USD")


def main() -> int:
    say("Layers Billing demo - local stack, HTTP API, real handlers")
    say()
    say("Starting the local stack")
    with step("DynamoDB Local (tables from template.yaml) and moto server"):
        stack = start_local_stack()
        stack.apply_env()
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # keep the walk-through readable
    with step("local HTTP API (JWT authorizer), Stripe emulator sending webhooks to it"):
        _, base_url = stack.serve_api()
    try:
        run(WebApp(base_url), stack)
    finally:
        stack.stop()
    return 0


def run(web: WebApp, stack: LocalStack) -> None:
    alice, bob, carol, dan = "alice", "bob", "carol", "dan"

    say()
    say("1. The plan catalog (public: GET /v1/plans)")
    plans = web.http.get(web.base_url + "/v1/plans", timeout=30).json()["plans"]
    for p in plans:
        usd = p["prices"]["USD"]
        seats = "unlimited" if p["included_seats"] is None else p["included_seats"]
        projects = "unlimited" if p["max_active_projects"] is None else p["max_active_projects"]
        say(
            f"   {p['name']:<11} {money(usd['base_minor']):>9}/mo  {p['included_credits']:>6} credits  "
            f"seats {seats!s:<9} projects {projects!s:<9} agency {'yes' if p['agency_mode_allowed'] else 'no'}"
        )

    say()
    say("2. Alice creates an agency-mode org")
    refused = web.call(
        alice,
        "POST",
        "/v1/orgs",
        {"name": "Northwind", "billing_mode": "agency", "plan_id": "starter"},
        expect=409,
    )
    say(f"   on Starter -> refused: {refused['error']['code']}: {refused['error']['message']}")
    org = web.call(
        alice,
        "POST",
        "/v1/orgs",
        {"name": "Northwind Growth", "billing_mode": "agency", "plan_id": "pro"},
        expect=201,
    )
    org_id = org["org_id"]
    say(f"   picks Pro -> created {org_id} ({org['billing_mode']} mode, platform fee {org['platform_fee_bps']} bps)")

    say()
    say("3. Alice adds her team (each active member is a seat)")
    for user, role in ((bob, "admin"), (carol, "billing"), (dan, "member")):
        web.call(alice, "POST", f"/v1/orgs/{org_id}/members", {"user_id": user, "role": role}, expect=201)
        say(f"   + {user} as {role}")
    forbidden = web.call(dan, "POST", f"/v1/orgs/{org_id}/members", {"user_id": "eve"}, expect=403)
    say(f"   dan (member) tries to add eve -> {forbidden['error']['code']}: {forbidden['error']['message']}")

    say()
    say("4. Bob (admin) creates projects up to the plan's limit")
    for name in ("Spring launch", "Always-on UGC", "Retargeting"):
        project = web.call(bob, "POST", f"/v1/orgs/{org_id}/projects", {"name": name}, expect=201)
        say(f"   + {project['name']} ({project['project_id']})")
    limit = web.call(bob, "POST", f"/v1/orgs/{org_id}/projects", {"name": "Black Friday"}, expect=409)
    say(f"   + Black Friday -> refused: {limit['error']['code']}")
    say(f'     "{limit["error"]["message"]}"')

    summary = web.call(alice, "GET", f"/v1/orgs/{org_id}", expect=200)
    seats = summary["seats"]
    say()
    say("Org summary")
    say(f"   {summary['name']} ({summary['org_id']})")
    say(
        f"   plan        {summary['plan']['name']} (catalog {summary['plan']['catalog_version']}), "
        f"billing mode {summary['billing_mode']}, currency {summary['currency']}"
    )
    say(
        f"   seats       {seats['used']} used, {seats['included']} included, extra seats at "
        f"{money(seats['extra_seat_minor'])}/mo each"
    )
    say(f"   projects    {summary['projects']['active']} active of {summary['projects']['limit']}")
    say(f"   agency fee  {summary['platform_fee_bps']} bps of ad spend")
    say()
    say("Demo finished.")


if __name__ == "__main__":
    sys.exit(main())
