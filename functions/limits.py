"""The bounds of everything a request may carry, in one place: the request models use these types, and
the README's limits table is generated from `LIMITS` (tests/unit/test_readme_reference.py keeps it so).

Why bounds at all: a number past DynamoDB's 38 digits is a 500 in the SDK, a year-9999 date a 500 in
the period arithmetic, a NUL byte in a name a stored surprise for every reader after us. Refused input
is a 422 `validation_error` naming the field, and nothing is written."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, StringConstraints

from shared.clock import FUTURE_SKEW, in_future

# Money in minor units: far past any real amount (10,000,000,000.00 in a two-decimal currency), far inside
# DynamoDB's 38 digits, 2**63 and what Stripe accepts for one charge is lower still (checked by Stripe).
MAX_MINOR = 10**12
MAX_CREDITS = 10**9  # credits in one request (an adjustment, a cap)
MAX_CONTRACT_BASE_MINOR = 99_999_999  # an Enterprise base fee: Stripe's largest unit_amount
MAX_STORAGE_BYTES = 10**18  # an exabyte
TOP_UP_MIN_MINOR, TOP_UP_MAX_MINOR = 100, 100_000_000  # one top-up: 1.00 to 1,000,000.00
MAX_QUANTITY = 1000  # generations in one reservation
MAX_BATCH_EVENTS, MAX_EVENT_COUNT = 20_000, 1_000_000  # SDK events: entries per batch, count per entry
MAX_USAGE_EVENTS = 5_000  # metered usage events per request or EventBridge event (each one marker write)
PAST_WINDOW = timedelta(days=400)  # usage and bills older than this are a caller's bug, not late data
BILL_DATE_AHEAD = timedelta(days=1)  # a platform's billing day may be ahead of UTC
# A proration_date (Unix seconds) is checked against the period by the service; these only keep the number sane.
PRORATION_DATE_MIN, PRORATION_DATE_MAX = 946_684_800, 4_102_444_800  # 2000-01-01, 2100-01-01

# No control characters (C0, DEL, C1): they reach names on invoices, CSV cells and logs.
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
USER_ID_PATTERN = r"^[A-Za-z0-9_:@\-|][A-Za-z0-9_:@.\-|]{0,127}$"  # not "." or "..": paths normalise them
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII: idempotency keys, bill ids
STRIPE_ID_PATTERN = r"^[A-Za-z0-9_]{1,255}$"  # pm_..., as Stripe names its objects
CURSOR_PATTERN = r"^[A-Za-z0-9_\-]{1,512}$"  # base64url, unpadded
URL_PATTERN = r"^https?://[^\s\x00-\x1f\x7f-\x9f]+$"
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]+$"


def text(max_length: int, min_length: int = 1) -> object:
    """Constraints of free text: trimmed, `min_length`..`max_length` characters, no control characters."""
    return StringConstraints(
        strip_whitespace=True, min_length=min_length, max_length=max_length, pattern=rf"^{_PRINTABLE}*$"
    )


def _visible(value: str) -> str:
    """No invisible format characters (zero-width, bidi overrides, BOM: Unicode category Cf), and at least
    one character that shows: a name must read the same on an invoice as in the app."""
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        raise ValueError("must not contain invisible or text-direction characters")
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in value):
        raise ValueError("must contain a visible character")
    return value


Name = Annotated[str, text(100), AfterValidator(_visible)]
MAX_ADDRESS_LINES = 6
AddressLine = Annotated[str, text(100), AfterValidator(_visible)]  # one line of a postal address
TaxId = Annotated[str, text(40), AfterValidator(_visible)]  # VAT / GST / EIN as the authority writes it
Reason = Annotated[str, text(200, min_length=3), AfterValidator(_visible)]
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
StripeId = Annotated[str, StringConstraints(pattern=STRIPE_ID_PATTERN)]
HttpUrl = Annotated[str, StringConstraints(pattern=URL_PATTERN, max_length=2000)]
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254), AfterValidator(_visible)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]  # ISO-4217
UNIT_PRICE_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,6})?$"  # below 1,000,000 minor units (EnterpriseTerms' bound)
# An overage unit price in minor units, as a decimal string (never a float): "0.9" is 0.9 cents.
UnitPrice = Annotated[str, StringConstraints(pattern=UNIT_PRICE_PATTERN)]


def _happened(at: datetime) -> datetime:
    """An instant with its offset (a naive time is ambiguous), in UTC, within the event window."""
    now = datetime.now(UTC)
    if in_future(at, now):
        raise ValueError("must not be in the future")
    if at < now - PAST_WINDOW:
        raise ValueError(f"must be within the last {PAST_WINDOW.days} days")
    return at.astimezone(UTC)


def _bill_day(day: date) -> date:
    today = datetime.now(UTC).date()
    if not today - PAST_WINDOW <= day <= today + BILL_DATE_AHEAD:
        raise ValueError(f"must be within the last {PAST_WINDOW.days} days, and not after tomorrow")
    return day


def _reported(at: datetime) -> datetime:
    """An instant with its offset, in UTC, whatever its date: for records whose dates the services judge
    one by one (an EventBridge usage item dated outside the metering window is refused alone)."""
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:  # (year 1 or 9999 with an offset: past what UTC can hold)
        raise ValueError("must be an instant UTC can hold") from exc


# When usage happened: ISO 8601 with an offset (Z or +hh:mm), within the window.
Instant = Annotated[AwareDatetime, AfterValidator(_happened)]
# The same, any date: the service refuses it if outside its window (the record alone, the rest counting).
ReportedInstant = Annotated[AwareDatetime, AfterValidator(_reported)]
BillDate = Annotated[date, AfterValidator(_bill_day)]


@dataclass(frozen=True)
class Limit:
    what: str
    rule: str
    where: str


def _n(value: int) -> str:
    return f"{value:,}"


LIMITS: tuple[Limit, ...] = (
    Limit(
        "money (minor units)",
        f"strict integer, 0 to {_n(MAX_MINOR)} (refunds and holds from 1; "
        f"a top-up {_n(TOP_UP_MIN_MINOR)} to {_n(TOP_UP_MAX_MINOR)})",
        "wallet settings, top-ups, refunds, holds, bills, Enterprise terms",
    ),
    Limit(
        "credits",
        f"strict integer, -{_n(MAX_CREDITS)} to {_n(MAX_CREDITS)}; an adjustment of 0 is refused; a cap from 1",
        "credit adjustments, the monthly cap, Enterprise terms",
    ),
    Limit(
        "Enterprise terms",
        f"base fee 0 to {_n(MAX_CONTRACT_BASE_MINOR)} (Stripe's largest price); overage unit prices as decimal "
        f"strings `{UNIT_PRICE_PATTERN}`; `days_until_due` 1 to 365",
        "`PUT /plan` (support)",
    ),
    Limit("generation quantity", f"strict integer, 1 to {_n(MAX_QUANTITY)} (a settle from 0)", "credit reservations"),
    Limit(
        "SDK events",
        f"1 to {_n(MAX_BATCH_EVENTS)} per batch, each count 1 to {_n(MAX_EVENT_COUNT)}",
        "SDK event batches",
    ),
    Limit(
        "usage events",
        f"1 to {_n(MAX_USAGE_EVENTS)} per request, each quantity 1 to {_n(MAX_EVENT_COUNT)}; `occurred_at` within "
        "the 35-day dedupe window and not before the previous period (else 422 `usage_event_too_old`), not before "
        "the org was created (else 422 `usage_before_org`), at most "
        f"{int(FUTURE_SKEW.total_seconds() // 60)} minutes ahead (else 422 `validation_error`); on "
        "`Usage.EventsReported` such an item is refused alone (`usage_event_too_old`, `usage_before_org`, "
        "`usage_event_in_future`)",
        "`POST /v1/internal/usage/events`, `Usage.EventsReported`",
    ),
    Limit("storage", f"strict integer, 0 to {_n(MAX_STORAGE_BYTES)} bytes", "storage snapshots"),
    Limit(
        "event times",
        f"ISO 8601 with an offset, within the last {PAST_WINDOW.days} days, "
        f"at most {int(FUTURE_SKEW.total_seconds() // 60)} minutes ahead",
        "settles, SDK events, storage snapshots",
    ),
    Limit("bill dates", f"within the last {PAST_WINDOW.days} days, at most 1 day ahead", "platform bills"),
    Limit(
        "proration_date",
        "Unix seconds from the preview, between the period's start and now (else 422 `invalid_proration_date`)",
        "plan changes",
    ),
    Limit(
        "names",
        "1 to 100 characters after trimming, no control or invisible format characters, one visible at least",
        "orgs, projects",
    ),
    Limit("reasons", "3 to 200 characters, the same characters as names", "credit adjustments, refunds"),
    Limit(
        "billing details",
        f"address: 1 to {MAX_ADDRESS_LINES} lines of 1 to 100 characters (as names); tax id 1 to 40; "
        "an e-mail as members' (`null` removes the details)",
        "`PATCH /v1/orgs/{org_id}` `billing_details`",
    ),
    Limit("ids", f"`{ID_PATTERN}`", "org, project, plan, pack, template, platform ids"),
    Limit("user ids", f"`{USER_ID_PATTERN}`", "members"),
    Limit("idempotency keys, bill ids", f"`{KEY_PATTERN}`", "`Idempotency-Key` header, platform bills"),
    Limit("URLs", "http(s), up to 2,000 characters, no spaces or control characters", "Checkout, portal"),
    Limit("lists", f"`limit` 1 to 100; `cursor` as returned (`{CURSOR_PATTERN}`)", "every list"),
    Limit("bodies", "UTF-8 JSON (`Content-Type: application/json`, or none)", "every route with a body"),
)
