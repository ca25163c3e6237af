"""A small world for API tests: org A (Pro, agency) with one person per role and two projects,
and org B owned by a stranger. Built through the public API, like the web app would."""

from __future__ import annotations

from dataclasses import dataclass

from tests.helpers import ApiClient, new_user


@dataclass
class World:
    org_id: str
    other_org_id: str
    people: dict[str, str]  # role -> user id (plus "stranger", "spare")
    project_id: str
    archived_project_id: str
    invoice_id: str = ""

    def user(self, role: str) -> str:
        return self.people[role]


def build_world(api: ApiClient) -> World:
    people = {r: new_user(r) for r in ("owner", "admin", "billing", "member", "spare", "stranger")}
    created = api.call(
        "POST",
        "/v1/orgs",
        as_user=people["owner"],
        json={"name": "Acme Growth", "billing_mode": "agency", "plan_id": "pro"},
    )
    assert created.status == 201, created.body
    org_id = created.body["org_id"]
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
