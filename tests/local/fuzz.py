"""`make fuzz`: schemathesis over the OpenAPI document the local API serves, against the local stack.

Starts the stack (DynamoDB Local, moto, the Stripe emulator), seeds one org through the API as a user
would (Pro, agency mode, a project, a second member, a subscription paid by card, a funded wallet),
mints that owner's token, and runs schemathesis with these checks: no server error, every status
documented, the documented content type, every body in its documented schema. Path ids are pinned to
the seeded org's (a random org id is a 404 before any logic runs); everything else is generated.

Seeded and bounded: the same seed generates the same cases, and the run stops within `--max-time`.
Exits non-zero on any failure; the report (JUnit XML and the failures' reproductions) goes to
.local/fuzz/.

    python -m tests.local.fuzz [--seed 19] [--max-examples 40] [--max-time 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from tests.local import devtokens
from tests.local.stack import start_local_stack

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".local" / "fuzz"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
URLS = {"success_url": "https://app.layers.test/ok", "cancel_url": "https://app.layers.test/cancel"}


class _Client:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, *, ok: int = 200, key: str | None = None) -> Any:
        headers = self.headers | ({"Idempotency-Key": key} if key else {})
        reply = requests.request(method, self.base_url + path, json=body, headers=headers, timeout=60)
        if reply.status_code != ok:
            raise SystemExit(f"fuzz seed: {method} {path} answered {reply.status_code}: {reply.text}")
        return reply.json() if reply.content else None


def seed_org(stack: Any, base_url: str, owner: str) -> dict[str, str]:
    """The org the fuzzer works on, with money and a subscription; returns its path ids."""
    api = _Client(base_url, devtokens.mint(owner, email=f"{owner}@example.com"))
    org_id = api.call("POST", "/v1/orgs", {"name": "Fuzz"}, ok=201)["org_id"]  # on Free: Pro starts at Checkout
    session = api.call("POST", f"/v1/orgs/{org_id}/subscription/checkout", {"plan_id": "pro", **URLS}, ok=201)
    stripe_base = stack.env["STRIPE_API_BASE"]
    done = requests.post(
        f"{stripe_base}/_emulator/checkout/sessions/{session['checkout_session_id']}/complete",
        data={"payment_method": "pm_card_visa"},
        headers={"Authorization": "Bearer sk_test_local"},
        timeout=30,
    )
    if done.status_code != 200:
        raise SystemExit(f"fuzz seed: checkout completion failed: {done.text}")
    stack.stripe.wait_for_deliveries()
    api.call("PATCH", f"/v1/orgs/{org_id}", {"billing_mode": "agency"}, ok=200)
    project_id = api.call("POST", f"/v1/orgs/{org_id}/projects", {"name": "Fuzzed"}, ok=201)["project_id"]
    api.call("POST", f"/v1/orgs/{org_id}/members", {"user_id": "fuzz_member", "role": "member"}, ok=201)
    api.call("POST", f"/v1/orgs/{org_id}/wallet/top-ups", {"amount_minor": 50_000, "method": "card"}, ok=202, key="s")
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return {"org_id": org_id, "project_id": project_id, "user_id": "fuzz_member"}


def write_config(ids: dict[str, str]) -> Path:
    """schemathesis.toml: the seeded ids for the path parameters of that name."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "schemathesis.toml"
    lines = ["[parameters]"] + [f'"path.{name}" = "{value}"' for name, value in sorted(ids.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_schemathesis(base_url: str, token: str, config: Path, args: argparse.Namespace) -> int:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--seed",
        str(args.seed),
        "--max-examples",
        str(args.max_examples),
        "--max-time",
        str(args.max_time),
        "--workers",
        "1",  # the API answers one request at a time anyway (INVOCATION_LOCK); two threads trip CPython 3.11
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(OUT),
    ]
    return subprocess.run(command, cwd=OUT, check=False).returncode


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fuzz the local API with schemathesis.")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--max-examples", type=int, default=40, help="cases per operation and phase")
    parser.add_argument("--max-time", type=int, default=200, help="seconds for schemathesis at most")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with start_local_stack() as stack:
        stack.apply_env()  # before the API imports any handler module
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # refusals are the point here; tracebacks still show
        _, base_url = stack.serve_api()
        owner = "fuzz_owner"
        ids = seed_org(stack, base_url, owner)
        print(f"fuzz: stack up and org {ids['org_id']} seeded in {time.monotonic() - started:.0f} s", flush=True)
        code = run_schemathesis(base_url, devtokens.mint(owner), write_config(ids), args)
    print(f"fuzz: done in {time.monotonic() - started:.0f} s (schemathesis exit {code})", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
