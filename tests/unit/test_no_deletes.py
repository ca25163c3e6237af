"""The billing table allows no deletes but a member's (template.yaml: BillingTableWritePolicy has no
DeleteItem; the API function alone may delete, for `remove_member`). IAM is not enforced locally, so this
keeps the code inside what AWS will allow: a list entry that is done is unlisted, never deleted."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_only_delete_in_the_code_is_a_members() -> None:
    found = []
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("functions/**/*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bdelete_item\(|[\"']Delete[\"']\s*:", line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert len(found) == 1 and found[0].startswith("shared/orgs/repository.py"), found
    source = (ROOT / "shared/orgs/repository.py").read_text()
    line = int(found[0].split(":")[1])
    assert "def remove_member" in "\n".join(source.splitlines()[line - 10 : line])
    template = (ROOT / "template.yaml").read_text()
    assert template.count("dynamodb:DeleteItem") == 2  # the API's RemoveMembers; the idempotency table (webhook)
