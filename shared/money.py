"""Money rules (DESIGN.md section 3): integer minor units, ISO-4217 currency, Decimal rate math,
one rounding rule - half-even to the minor unit, applied per ledger entry / invoice line."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# Currencies the catalog has price books for, with their ISO-4217 minor-unit exponent.
CURRENCY_EXPONENTS: dict[str, int] = {"USD": 2, "EUR": 2}


def quantize_minor(amount_minor: Decimal) -> int:
    """Round a Decimal amount of minor units to an int, half-even."""
    return int(amount_minor.to_integral_value(rounding=ROUND_HALF_EVEN))


def bps_of(amount_minor: int, bps: int) -> int:
    """`bps` basis points of an amount, half-even per call (one call per ledger entry)."""
    return quantize_minor(Decimal(amount_minor) * Decimal(bps) / Decimal(10_000))


def unit_price_total(quantity: int, unit_minor: Decimal) -> int:
    """Total of `quantity` units at a Stripe-style decimal unit price in minor units, half-even."""
    return quantize_minor(Decimal(quantity) * unit_minor)


def format_minor(amount_minor: int, currency: str) -> str:
    """Human form for documents and the demo, e.g. 1900 USD -> '19.00 USD'."""
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    value = Decimal(amount_minor).scaleb(-exp)
    return f"{value:,.{exp}f} {currency}"
