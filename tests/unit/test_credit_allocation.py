"""Attack probe (issue 15): the credit-note rule `allocate_credit` looks only at positive lines, so an
invoice whose lines net below their positive sum (a Stripe proration credit, or a bill reversed in the
same period: 'Reversed or credited ad spend') can be credited for more than it charged."""

from __future__ import annotations

from shared.errors import ConflictError
from shared.invoices.credit_notes import CreditNoteRequest, allocate_credit
from shared.invoices.models import InvoiceLine


def _line(description: str, amount: int, via: str, section: str) -> InvoiceLine:
    return InvoiceLine(section=section, description=description, amount_minor=amount, paid_via=via)


def _over_credit(lines: list[InvoiceLine], amount: int) -> bool:
    try:
        allocate_credit(lines, {}, CreditNoteRequest(reason="probe", amount_minor=amount))
    except ConflictError:
        return False
    return True


def test_a_proration_credit_limits_what_a_stripe_invoice_can_be_credited() -> None:
    # A plan change: Stripe charged 5,000 - 2,000 (unused time) = 3,000.
    lines = [
        _line("Remaining time on Scale", 5_000, "stripe", "subscription"),
        _line("Unused time on Pro", -2_000, "stripe", "subscription"),
    ]
    # SHOULD: at most the 3,000 charged can be credited.
    assert not _over_credit(lines, 5_000)


def test_a_bill_reversed_in_the_same_period_is_not_creditable_again() -> None:
    # Bill recorded and reversed within the same period: the invoice nets to 0 from the wallet.
    lines = [
        _line("Ad spend: Meta, Launch", 12_000, "wallet", "ad_spend"),
        _line("Platform fee: Meta, Launch", 600, "wallet", "ad_spend"),
        _line("Reversed or credited ad spend: Meta, Launch", -12_000, "wallet", "ad_spend"),
        _line("Platform fee given back: Meta, Launch", -600, "wallet", "ad_spend"),
    ]
    # SHOULD: nothing left to credit (the wallet was not charged on net).
    assert not _over_credit(lines, 12_600)
