"""Routes: method, path and the resource method that serves it. Each resource declares its own (`routes()`,
next to its handlers); `collect` gathers them for the server.

Stripe's endpoints (`/v1/...`) take the parameters the pinned API version's contract allows (tests/contract;
checked by the server before routing: contract.py); the handlers add the semantic checks the contract cannot
make. The emulator's own test helpers (`/_emulator/...`) declare the parameters they accept (`helper`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .params import Schema

Handler = Callable[..., dict[str, Any]]

# One path segment (an object id), captured and passed to the handler after the parameters.
ID = r"([^/]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    schema: Schema | None  # None: a Stripe endpoint, whose parameters the contract checks
    handler: Handler


def stripe(method: str, path: str, handler: Handler) -> Route:
    """A Stripe endpoint (`/v1/...`): the contract checks its parameters."""
    return Route(method, re.compile(f"^{path}$"), None, handler)


def helper(method: str, path: str, schema: Schema, handler: Handler) -> Route:
    """An emulator-only test helper (`/_emulator/...`, README) with the parameters it accepts."""
    return Route(method, re.compile(f"^{path}$"), schema, handler)


class Resource(Protocol):
    def routes(self) -> list[Route]: ...


def collect(resources: Iterable[Resource]) -> list[Route]:
    """Every resource's routes, those with fewer ids in their path first: a literal segment wins over an id
    (`POST /v1/invoices/create_preview` is not an update of invoice "create_preview")."""
    routes = [route for resource in resources for route in resource.routes()]
    return sorted(routes, key=lambda route: route.pattern.pattern.count(ID))
