"""The plan and template catalogs carry the published Layers numbers."""

from __future__ import annotations

import pytest

from shared.catalog import plan_catalog, template_catalog
from shared.errors import InvalidRequestError, NotFoundError


@pytest.mark.parametrize(
    ("plan_id", "price", "credits", "seats", "projects", "agency"),
    [
        ("starter", 1900, 1000, 1, 1, False),
        ("pro", 4900, 3000, 3, 3, True),
        ("scale", 19900, 15000, None, None, True),
    ],
)
def test_published_tiers(
    plan_id: str, price: int, credits: int, seats: int | None, projects: int | None, agency: bool
) -> None:
    plan = plan_catalog().get(plan_id)
    assert plan.price_book("USD").base_minor == price
    assert (plan.included_credits, plan.included_seats, plan.max_active_projects) == (
        credits,
        seats,
        projects,
    )
    assert plan.agency_mode_allowed is agency


def test_free_has_no_overage_and_enterprise_is_custom() -> None:
    catalog = plan_catalog()
    assert catalog.get("free").price_book("USD").credit_overage_unit_minor is None
    assert catalog.get("enterprise").custom
    with pytest.raises(InvalidRequestError):
        catalog.get("platinum")
    with pytest.raises(InvalidRequestError):
        catalog.get("pro").price_book("JPY")


def test_seat_limit_is_hard_only_where_extra_seats_are_not_sold() -> None:
    catalog = plan_catalog()
    assert catalog.get("starter").seat_limit() == 1
    assert catalog.get("pro").seat_limit() is None  # extra seats sold
    assert catalog.get("scale").seat_limit() is None  # unlimited


def test_template_costs_default_and_override() -> None:
    catalog = template_catalog()
    assert catalog.default_credit_costs["short_form_video"] == 120
    assert catalog.default_credit_costs["slideshow"] == 50
    assert catalog.credit_costs(catalog.get("social-content"))["short_form_video"] == 120
    assert catalog.credit_costs(catalog.get("ugc-video"))["short_form_video"] == 150
    with pytest.raises(NotFoundError):
        catalog.get("nope")
