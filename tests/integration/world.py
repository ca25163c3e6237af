"""A small world for API tests: org A (Pro through a Stripe Checkout, agency) with one person per role
and two projects, and org B (Free) owned by a stranger. Built through the public API, like the web app
would: create on Free, subscribe, then grow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.helpers import ApiClient, new_user
from tests.paid import paid_org_over_http


@dataclass
class World:
    org_id: str
    other_org_id: str
    people: dict[str, str]  # role -> user id (plus "stranger", "spare")
    project_id: str
    archived_project_id: str
    invoice_id: str = ""
    credit_note_id: str = ""

    def user(self, role: str) -> str:
        return self.people[role]


def build_world(api: ApiClient, stack: Any, table: Any) -> World:
    people = {r: new_user(r) for r in ("owner", "admin", "billing", "member", "spare", "stranger")}
    org_id = paid_org_over_http(api, stack, table, people["owner"], name="Acme Growth", plan_id="pro")
    for role, user in people.items():
        if role in ("owner", "stranger"):
            continue
        reply = api.call(
            "POST",
            f"/v1/orgs/{org_id}/members",
            as_user=people["owner"],
            json={"user_id": user, "role": "member" if role == "spare" else role},
        )
        assert reply.status == 201, reply.body
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=people["owner"], json={"name": "Launch"})
    archived = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=people["owner"], json={"name": "Old"})
    assert project.status == archived.status == 201
    archived_id = archived.body["project_id"]
    assert api.call("POST", f"/v1/orgs/{org_id}/projects/{archived_id}/archive", as_user=people["owner"]).status == 200
    other = api.call("POST", "/v1/orgs", as_user=people["stranger"], json={"name": "Other Co"})
    assert other.status == 201
    return World(org_id, other.body["org_id"], people, project.body["project_id"], archived_id)
