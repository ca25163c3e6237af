"""Pure arithmetic shared by invoices, previews and prorations: billing periods, proration, formatting."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

_SECONDS = {"day": 86_400, "week": 7 * 86_400}


def add_interval(anchor: int, interval: str, count: int) -> int:
    """`anchor` moved by `count` intervals. Months keep the anchor's day-of-month, clamped to the month's last
    day (UTC), so an anchor on Jan 31 gives Feb 28/29, Mar 31, Apr 30, ... as Stripe does."""
    if interval in _SECONDS:
        return anchor + _SECONDS[interval] * count
    months = count * (12 if interval == "year" else 1)
    start = datetime.fromtimestamp(anchor, UTC)
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month0 + 1)[1])
    return int(start.replace(year=year, month=month0 + 1, day=day).timestamp())


def round_half_even(value: Decimal) -> int:
    """Round to the minor unit (cents), ties to even (banker's rounding)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def prorate(unit_amount: Decimal, quantity: int, remaining: int, period: int) -> int:
    """unit_amount x quantity x remaining / period, in minor units, rounded half-even."""
    return round_half_even(unit_amount * quantity * remaining / Decimal(period))


def usage_amount(unit_amount: Decimal, usage: Decimal) -> int:
    return round_half_even(unit_amount * usage)


# Stripe's minimum charge amounts (docs.stripe.com/currencies#minimum-and-maximum-charge-amounts), minor units.
# An automatically collected invoice whose amount due is below it is not charged (see Billing.finalize).
_MINIMUM_CHARGE = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}


def minimum_charge(currency: str) -> int:
    """Stripe's minimum charge for `currency` in minor units. Currencies outside Stripe's table have the
    equivalent of USD 0.50 in the settlement currency; the emulator uses 50 minor units for them."""
    return _MINIMUM_CHARGE.get(currency.lower(), 50)


_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}


def format_unit(currency: str, unit_amount: Decimal) -> str:
    """Minor units to a display price: 2000 -> "$20.00", Decimal("0.5") -> "$0.005"."""
    major = unit_amount / 100
    text = f"{major:.2f}" if major == major.quantize(Decimal("0.01")) else f"{major.normalize():f}"
    symbol = _SYMBOLS.get(currency.lower())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def format_date(ts: int) -> str:
    """Stripe's proration descriptions use e.g. "10 Jan 2025" (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y").lstrip("0")


def format_quantity(value: Decimal) -> str:
    return f"{value.normalize():f}" if value != value.to_integral_value() else str(int(value))
