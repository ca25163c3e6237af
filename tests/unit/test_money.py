"""Money math: integer minor units, half-even per call, Decimal unit prices."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.money import bps_of, format_minor, quantize_minor, unit_price_total


def test_half_even_rounding_on_ties() -> None:
    assert quantize_minor(Decimal("2.5")) == 2
    assert quantize_minor(Decimal("3.5")) == 4
    assert quantize_minor(Decimal("-2.5")) == -2
    assert bps_of(10, 500) == 0  # 0.5 -> 0
    assert bps_of(30, 500) == 2  # 1.5 -> 2
    assert bps_of(12_345, 500) == 617  # 617.25


def test_unit_price_totals_use_decimal_unit_prices() -> None:
    assert unit_price_total(1_234, Decimal("1.8")) == 2221  # 2221.2
    assert unit_price_total(250_000, Decimal("0.002")) == 500
    assert unit_price_total(0, Decimal("2")) == 0


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10_000))
def test_fee_is_within_half_a_minor_unit_of_the_exact_value(amount: int, bps: int) -> None:
    fee = bps_of(amount, bps)
    exact = Decimal(amount) * bps / 10_000
    assert isinstance(fee, int)
    assert abs(Decimal(fee) - exact) <= Decimal("0.5")
    assert 0 <= fee <= amount


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_format_is_exact_for_any_amount(amount: int) -> None:
    text = format_minor(amount, "USD")
    assert Decimal(text.removesuffix(" USD").replace(",", "")) * 100 == amount
