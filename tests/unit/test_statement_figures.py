"""A client statement's money rules (shared/invoices/figures.py): the markup (half-even, once, on the
subtotal) and the credits' cost (overage at the plan's unit price, half-even), by hand."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.invoices.figures import credits_cost_minor, markup_minor
from shared.invoices.statements import period_start_of


def test_markup_is_half_even_on_the_subtotal() -> None:
    assert markup_minor(21_364, 1_250) == 2_670  # 2,670.5: to the even neighbour
    assert markup_minor(21_372, 1_250) == 2_672  # 2,671.5 -> 2,672
    assert markup_minor(21_370, 1_250) == 2_671  # 2,671.25
    assert markup_minor(-800, 1_250) == -100  # a period of credits back: the markup follows
    assert markup_minor(99_999, 0) == 0


def test_credits_cost_prices_only_the_overage_at_the_plans_unit_price() -> None:
    assert credits_cost_minor(1_234, Decimal("1.8")) == 2_221  # 2,221.2
    assert credits_cost_minor(5, Decimal("0.5")) == 2  # 2.5 -> 2
    assert credits_cost_minor(0, Decimal("1.8")) == 0
    assert credits_cost_minor(50, None) == 0  # the plan sells no overage


@settings(max_examples=300, deadline=None)  # no timing in unit tests: a loaded machine is slow
@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=0, max_value=100_000))
def test_the_markup_is_within_half_a_minor_unit_of_the_exact_rate(subtotal: int, bps: int) -> None:
    exact = Decimal(subtotal) * bps / 10_000
    assert abs(markup_minor(subtotal, bps) - exact) <= Decimal("0.5")


def test_a_statement_id_names_a_period_start_or_nothing() -> None:
    assert period_start_of("stmt_20280229T235959Z") is not None
    assert period_start_of("stmt_20270229T000000Z") is None  # no 29 February in 2027
    assert period_start_of("inv_20280229T235959Z") is None
