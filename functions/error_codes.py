"""Every error code an HTTP route can answer, with its status and meaning: the one registry.

The OpenAPI document's error schemas enumerate these codes per status (functions/openapi.py), the
README's error list is generated from them, and tests/unit/test_error_codes.py fails when code raises a
code that is not here (or with another status). Codes are stable: clients branch on them."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

# Stripe's own invalid-request codes pass through as `stripe_<Stripe's code>` (an open set): 422.
STRIPE_CODE_PATTERN = r"^stripe_[a-z0-9_]+$"


@dataclass(frozen=True)
class ErrorCode:
    code: str
    statuses: tuple[int, ...]
    meaning: str


def _e(code: str, meaning: str, *statuses: HTTPStatus) -> ErrorCode:
    return ErrorCode(code, tuple(int(s) for s in statuses), meaning)


_400, _401, _402, _403, _404 = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.PAYMENT_REQUIRED,
    HTTPStatus.FORBIDDEN,
    HTTPStatus.NOT_FOUND,
)
_409, _415, _422, _429, _503 = (
    HTTPStatus.CONFLICT,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    HTTPStatus.UNPROCESSABLE_ENTITY,
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.SERVICE_UNAVAILABLE,
)

ERRORS: tuple[ErrorCode, ...] = (
    # the request itself
    _e("invalid_body", "the body is not UTF-8 text", _400),
    _e("unsupported_media_type", "the body is not sent as `application/json`", _415),
    _e("validation_error", "a field, parameter or header is missing, malformed or out of bounds", _422),
    _e("invalid_cursor", "the cursor is not one this list returned", _422),
    _e("route_not_found", "no such route", _404),
    _e("unauthenticated", "no valid token (or, on internal routes, no signed request)", _401),
    _e("forbidden", "the caller's role may not do this", _403),
    _e("throttled", "DynamoDB or Stripe is throttling: retry with the same idempotency key", _429),
    # lookups (an org the caller is not a member of is not found, like one that does not exist)
    _e("not_found", "the thing asked for does not exist", _404),
    _e("org_not_found", "no such org, or the caller is not a member", _404),
    _e("member_not_found", "no such member", _404),
    _e("project_not_found", "no such project", _404),
    _e("template_not_found", "no such layer template", _404),
    _e("invoice_not_found", "no such invoice", _404),
    _e("statement_not_found", "no such client statement: the id names no period of the org up to now", _404),
    _e("credit_note_not_found", "no such credit note", _404),
    _e("invoice_not_issued", "only an issued invoice can be credited", _409),
    _e("exceeds_creditable", "more than is left to credit on the invoice or line", _409),
    _e("line_not_creditable", "the line is not a charge of the invoice (or is named twice)", _422),
    _e("not_a_bill", "a platform credit is not a bill: it cannot be reversed", _409),
    _e("invoice_in_progress", "the invoice this bill is on is being made: retry once it is issued", _409),
    _e("bill_not_found", "no platform bill with this platform and id was recorded for the org", _404),
    _e("credit_with_hold", "a platform credit (negative amount) names no hold", _422),
    _e("period_not_ended", "the period has not ended and settled: its invoice cannot be made yet", _409),
    _e("document_not_ready", "the invoice's PDF or CSV is not rendered yet", _404),
    _e("reservation_not_found", "no reservation for this workflow run", _404),
    _e("hold_not_found", "no such hold", _404),
    # input the domain refuses
    _e("invalid_request", "the input is well-formed but refused", _422),
    _e("unknown_plan", "no such plan in the catalog", _422),
    _e("unknown_pack", "no such credit pack", _422),
    _e("unknown_platform", "no such ad platform", _422),
    _e("unknown_generation_type", "the template has no such generation type", _422),
    _e("unknown_metric", "not a metered usage (workflow_runs, sdk_events)", _422),
    _e("usage_event_too_old", "the usage happened before the previous period or the 35-day dedupe window", _422),
    _e("usage_before_org", "the usage (an event, a storage snapshot) is dated before its org was created", _422),
    _e("usage_event_in_future", "the usage is dated more than 5 minutes ahead", _422),
    _e("usage_event_id_reserved", "the event id ends like the SDK batch adapter's (`#<period>#<day>`)", _422),
    _e("storage_snapshot_too_old", "the snapshot is older than the previous period or the 35-day window", _422),
    _e("unsupported_currency", "the plan is not sold in this currency", _422),
    _e("currency_mismatch", "the bill is not in the wallet's currency", _422),
    _e("plan_not_billable", "the plan has no Stripe price (free, custom)", _422),
    _e("plan_requires_sales", "Enterprise terms are set by Layers support", _403, _422),
    _e("terms_required", "a custom plan needs its terms", _422),
    _e("terms_not_allowed", "terms only go with a custom plan", _422),
    _e("invalid_proration_date", "proration_date is not between the period's start and now", _422),
    _e("amount_exceeds_deficit", "a wire top-up larger than the wallet's deficit", _422),
    _e("bank_method_unsupported_for_currency", "ACH and wires are US-dollar rails", _422),
    _e("refund_exceeds_refundable", "more than the card payments left to refund", _422),
    _e("refund_too_many_payments", "the refund would span too many payments", _422),
    _e("change_too_large", "more items than one transaction takes", _422),
    _e("hold_expiry_past", "a hold's expires_at is not after now", _422),
    # conflicts with the current state
    _e("conflict", "the request conflicts with the current state", _409),
    _e("concurrent_update", "another change won the race: retry", _409),
    _e("plan_limit_reached", "the plan's limit refuses it", _409),
    _e("seat_limit_reached", "no seat left on the plan", _409),
    _e("agency_mode_not_allowed", "agency mode needs Pro or above", _409),
    _e("org_exists", "the org exists already", _409),
    _e("member_exists", "the person is a member already", _409),
    _e("last_owner", "the last owner stays", _409),
    _e("currency_locked", "money exists in the org's currency", _409),
    _e("use_subscription", "a subscribed org changes plan through its subscription", _409),
    _e("subscription_exists", "the org has a live subscription", _409),
    _e("subscription_required", "a paid plan starts through Checkout: the org has no subscription for it", _409),
    _e("subscription_unpaid", "agency spend is stopped while the subscription is unpaid", _409),
    _e("contract_managed", "an Enterprise contract changes only through Layers support", _409),
    _e("no_subscription", "the org has no live subscription", _409),
    _e("no_billing_account", "the org has no Stripe customer yet", _409),
    _e("same_plan", "the org is on this plan already", _409),
    _e("no_saved_card", "no saved card to charge", _409),
    _e("project_archived", "the project is archived", _409),
    _e("idempotency_key_reused", "the same Idempotency-Key with another request", _409),
    _e("insufficient_credits", "not enough credits available", _409),
    _e("credit_cap_reached", "the monthly credit cap is reached", _409),
    _e("insufficient_wallet_funds", "not enough available in the wallet", _409),
    _e("wallet_paused", "the wallet is paused (below its floor)", _409),
    _e("project_budget_exceeded", "the project's budget this period has not enough left (details: which, left)", _409),
    _e("wallet_not_available", "the org has no wallet (agency mode only)", _409),
    _e("already_settled", "the reservation is settled already", _409),
    _e("already_released", "the reservation is released already", _409),
    _e("already_expired", "the reservation expired", _409),
    _e("already_reserved", "the reservation is still open", _409),
    _e("event_in_progress", "this Stripe event is being handled (webhook)", _409),
    # Stripe
    _e("payment_declined", "the card was declined", _402),
    _e("stripe_unavailable", "Stripe failed or could not be reached: retry", _503),
    _e("stripe_timeout", "Stripe did not answer in time: retry, it is safe", _503),
    # busy
    _e("usage_busy", "concurrent batches kept the usage counters busy: retry after Retry-After, it is safe", _503),
    _e("invalid_signature", "the webhook's signature does not verify (webhook)", _400),
    _e("malformed_event", "a signed webhook body that is not a Stripe event (webhook)", _400),
)

BY_CODE: dict[str, ErrorCode] = {e.code: e for e in ERRORS}


def codes_for(status: int) -> list[str]:
    """The registered codes answered with `status`, in registry order."""
    return [e.code for e in ERRORS if status in e.statuses]
