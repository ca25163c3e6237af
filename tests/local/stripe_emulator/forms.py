"""Stripe's form encoding: `items[0][price]=x&metadata[k]=v&expand[]=a` <-> nested dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    """`a[b][0][]` -> ["a", "b", "0", ""]; a key without brackets is a single segment."""
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    rest = key[len(head) :]
    return [head, *_SEGMENT.findall(rest)]


def _listify(node: Any) -> Any:
    """Dicts whose keys are all indexes become lists (ordered by index), recursively."""
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_form(body: str) -> dict[str, Any]:
    """Parse a form body or query string into nested dicts/lists; every leaf stays a string."""
    root: dict[str, Any] = {}
    # `[]` appends: give each occurrence the next index under its parent so it becomes a list.
    append_counters: dict[tuple[int, str], int] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        segments = _split_key(key)
        node = root
        for depth, segment in enumerate(segments):
            name = segment
            last = depth == len(segments) - 1
            if name == "":
                counter_key = (id(node), "[]")
                count = append_counters.get(counter_key, 0)
                # Rails-style `items[][price]=a&items[][qty]=1`: reuse the last element until a key repeats.
                previous = node.get(str(count - 1)) if count else None
                if not last and isinstance(previous, dict) and segments[depth + 1] not in previous:
                    name = str(count - 1)
                else:
                    name = str(count)
                    append_counters[counter_key] = count + 1
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result
