"""Delayed-notification payments: ACH Direct Debit (`us_bank_account`) and bank transfers into the customer's
cash balance (`customer_balance`, US bank transfer / wire), with their test helpers.

- ACH: confirming puts the intent in `processing` with a `pending` charge; it settles ACH_SETTLEMENT seconds later
  on the customer's test clock (or via POST /_emulator/payment_intents/{id}/settle).
- Bank transfer: confirming shows `display_bank_transfer_instructions`; funds arrive with Stripe's test helper
  POST /v1/test_helpers/customers/{id}/fund_cash_balance and are applied to the customer's open intents.
"""

from __future__ import annotations

import secrets
import string
import time

from .. import fixtures
from ..errors import invalid, param_missing
from ..params import (
    ANY,
    get_dict,
    get_enum,
    get_str,
    req_int,
    req_str,
)
from ..routes import ID, Route, helper, stripe
from ..store import Obj, Store
from .charges_refunds_disputes import Charges
from .customers import Customers
from .payment_methods import BANK_FAILURE_MESSAGES, TEST_ROUTING_NUMBER, BankAccount, Card, PaymentMethods

# An ACH debit settles this long after confirmation on a test clock (Stripe: about 4 business days).
ACH_SETTLEMENT = 4 * 86_400
# The failure of a settle helper call with outcome=failed on an account that would have succeeded.
_FORCED_FAILURE = "insufficient_funds"
_OPEN_TRANSFER = "requires_action"


class BankPayments:
    def __init__(self, store: Store, customers: Customers, payment_methods: PaymentMethods, charges: Charges) -> None:
        self.store = store
        self.customers = customers
        self.payment_methods = payment_methods
        self.charges = charges
        # Processing ACH intent -> settlement time on its customer's clock (None: no clock, only the helper).
        self.ach_settle_at: dict[str, int | None] = {}
        self.mandates: dict[str, str] = {}  # payment method -> its latest mandate
        self.cash_applied: dict[str, int] = {}  # customer_balance intent -> amount applied so far
        self.transfer_references: dict[str, str] = {}  # customer_balance intent -> its transfer reference
        self.virtual_accounts: dict[str, str] = {}  # customer -> their virtual account number

    def confirm(self, pi: Obj, pm: Obj, params: Obj) -> None:
        """Confirm with a delayed-notification payment method (us_bank_account, customer_balance)."""
        if pm["type"] == "us_bank_account":
            self._confirm_ach(pi, pm, params)
        elif pm["type"] == "customer_balance":
            self._confirm_bank_transfer(pi, pm)
        else:
            raise invalid(f"Payment method type {pm['type']} is not emulated.", param="payment_method")

    def _confirm_ach(self, pi: Obj, pm: Obj, params: Obj) -> None:
        bank = self.payment_methods.banks[pm["id"]]
        customer = pi["customer"]
        mandate_data = get_dict(params, "mandate_data")
        mandate_id = self._new_mandate(pi, pm, mandate_data) if mandate_data else self.mandates.get(pm["id"])
        now = self.store.now(customer)
        pi.update(
            payment_method=pm["id"],
            status="processing",
            last_payment_error=None,
            next_action=None,
        )
        charge = self.charges.new_delayed_charge(pi, pm, "pending")
        charge["payment_method_details"] = {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": pm["us_bank_account"]["account_holder_type"],
                "account_type": pm["us_bank_account"]["account_type"],
                "bank_name": pm["us_bank_account"]["bank_name"],
                "expected_debit_date": time.strftime("%Y-%m-%d", time.gmtime(now)),
                "fingerprint": pm["us_bank_account"]["fingerprint"],
                "last4": bank.last4,
                "mandate": mandate_id,
                "payment_reference": None,
                "routing_number": TEST_ROUTING_NUMBER,
            },
        }
        pi["latest_charge"] = charge["id"]
        if pi["setup_future_usage"] and customer and pm["customer"] is None:
            self.payment_methods.attach(pm, customer)
        self.store.emit("charge.pending", charge)
        self.store.emit("payment_intent.processing", pi)
        has_clock = self.store.clock_of(customer) is not None
        self.ach_settle_at[pi["id"]] = now + ACH_SETTLEMENT if has_clock and bank.settles else None

    def _new_mandate(self, pi: Obj, pm: Obj, data: Obj) -> str:
        acceptance = get_dict(data, "customer_acceptance")
        kind = get_enum(acceptance, "type", ("online", "offline"))
        if kind is None:
            raise param_missing("mandate_data[customer_acceptance][type]")
        online = get_dict(acceptance, "online")
        multi = pi["setup_future_usage"] is not None
        mandate = fixtures.base(
            "mandate",
            id=fixtures.new_id("mandate_"),
            customer_acceptance={
                "accepted_at": self.store.now(pi["customer"]),
                "type": kind,
                **(
                    {"online": {"ip_address": online.get("ip_address"), "user_agent": online.get("user_agent")}}
                    if kind == "online"
                    else {"offline": {}}
                ),
            },
            multi_use={} if multi else None,
            single_use=None if multi else {"amount": pi["amount"], "currency": pi["currency"]},
            payment_method=pm["id"],
            payment_method_details={"type": "us_bank_account", "us_bank_account": {}},  # no paper mandate
            status="active",
            type="multi_use" if multi else "single_use",
        )
        if not multi:
            mandate.pop("multi_use")
        self.store.add(mandate)
        self.mandates[pm["id"]] = mandate["id"]
        return str(mandate["id"])

    def next_settlement(self, customers: set[str], until: int) -> tuple[int, Obj] | None:
        """The earliest ACH settlement due by `until` among intents of `customers` (for clock advances)."""
        due = [
            (at, self.store.objects[pi_id])
            for pi_id, at in self.ach_settle_at.items()
            if at is not None and at <= until and self.store.objects[pi_id]["customer"] in customers
        ]
        return min(due, key=lambda d: (d[0], d[1]["created"]), default=None)

    def settle_ach(self, pi: Obj, outcome: str | None = None) -> None:
        """The debit settles (`succeeded`) or is returned by the bank (`failed`)."""
        self.ach_settle_at.pop(pi["id"], None)
        pm = self.store.objects[pi["payment_method"]]
        bank = self.payment_methods.banks.get(pm["id"], BankAccount("6789"))
        if outcome is None:
            outcome = "failed" if bank.failure_code else "succeeded"
        charge = self.store.objects[pi["latest_charge"]]
        if outcome == "succeeded":
            charge.update(status="succeeded", paid=True)
            charge["outcome"].update(seller_message="Payment complete.")
            pi.update(status="succeeded", amount_received=pi["amount"])
            self.store.emit("charge.succeeded", charge)
            self.store.emit("payment_intent.succeeded", pi)
            if bank.dispute:
                self.charges.create_dispute({"reason": "general"}, charge["id"])
            return
        code = bank.failure_code or _FORCED_FAILURE
        message = BANK_FAILURE_MESSAGES[code]
        charge.update(
            status="failed",
            paid=False,
            captured=False,
            amount_captured=0,
            balance_transaction=None,
            failure_code=code,
            failure_message=message,
        )
        charge["outcome"].update(
            network_status="declined_by_network",
            reason=code,
            seller_message=message,
            type="issuer_declined",
        )
        pi.update(
            status="requires_payment_method",
            payment_method=None,
            last_payment_error={
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "charge": charge["id"],
                "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
                "payment_method": self.store.render(pm),
            },
        )
        self.store.emit("charge.failed", charge)
        self.store.emit("payment_intent.payment_failed", pi)

    def settle_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        """Test helper: a processing ACH debit (or emulated delayed card payment) settles now (`outcome`
        defaults to the test account's)."""
        pi = self.store.get("payment_intent", pi_id)
        pm = self.store.objects.get(pi["payment_method"] or "")
        if pi["status"] != "processing" or pm is None or pm["type"] not in ("us_bank_account", "card"):
            raise invalid(
                f"Only a processing us_bank_account or card PaymentIntent can be settled; {pi_id} is {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        outcome = get_enum(params, "outcome", ("succeeded", "failed"))
        if pm["type"] == "card":
            self._settle_card(pi, pm, outcome or "succeeded")
        else:
            self.settle_ach(pi, outcome)
        return pi

    def _settle_card(self, pi: Obj, pm: Obj, outcome: str) -> None:
        charge = self.store.objects[pi["latest_charge"]]
        if outcome == "succeeded":
            charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
            pi.update(status="succeeded", amount_received=pi["amount"])
            self.store.emit("charge.succeeded", charge)
            self.store.emit("payment_intent.succeeded", pi)
            return
        card = Card("visa", "1881", "generic_decline")
        charge.update(status="failed", failure_code="card_declined", failure_message="Your card was declined.")
        pi.update(
            status="requires_payment_method", last_payment_error=self.payment_methods.card_error(card, charge["id"], pm)
        )
        self.store.emit("charge.failed", charge)
        self.store.emit("payment_intent.payment_failed", pi)

    def check_confirmable(self, pm: Obj, customer: str | None, options: Obj) -> None:
        if pm["type"] != "customer_balance":
            return
        if customer is None:
            raise invalid(
                "A customer is required to use the customer_balance payment method.",
                param="customer",
                code="payment_intent_invalid_parameter",
            )
        options = options.get("customer_balance") or {}
        if options.get("funding_type") is None:
            raise param_missing("payment_method_options[customer_balance][funding_type]")
        if options["funding_type"] != "bank_transfer":
            raise invalid(
                "Invalid payment_method_options[customer_balance][funding_type]: must be bank_transfer",
                param="payment_method_options[customer_balance][funding_type]",
            )
        transfer = options.get("bank_transfer") or {}
        if transfer.get("type") is None:
            raise param_missing("payment_method_options[customer_balance][bank_transfer][type]")
        if transfer["type"] != "us_bank_transfer":
            raise invalid(
                f"Only us_bank_transfer is emulated, not {transfer['type']}.",
                param="payment_method_options[customer_balance][bank_transfer][type]",
            )

    def _confirm_bank_transfer(self, pi: Obj, pm: Obj) -> None:
        pi.update(payment_method=pm["id"], last_payment_error=None)
        self.cash_applied[pi["id"]] = 0
        self.transfer_references[pi["id"]] = fixtures.new_id("", 12).upper()
        customer = self.store.objects[pi["customer"]]
        if self._apply_cash(customer, pi):  # the cash balance already covered it
            return
        pi["status"] = _OPEN_TRANSFER
        self._set_instructions(pi)
        self.store.emit("payment_intent.requires_action", pi)

    def _set_instructions(self, pi: Obj) -> None:
        remaining = pi["amount"] - self.cash_applied[pi["id"]]
        wanted = pi["payment_method_options"]["customer_balance"]["bank_transfer"]["requested_address_types"]
        if pi["customer"] not in self.virtual_accounts:
            self.virtual_accounts[pi["customer"]] = "".join(secrets.choice(string.digits) for _ in range(12))
        account = self.virtual_accounts[pi["customer"]]
        holder_address = {
            "city": "San Francisco",
            "country": "US",
            "line1": "354 Oyster Point Blvd",
            "line2": None,
            "postal_code": "94080",
            "state": "CA",
        }
        bank_address = {
            "city": "Salt Lake City",
            "country": "US",
            "line1": "1 Test Bank Plaza",
            "line2": None,
            "postal_code": "84101",
            "state": "UT",
        }
        addresses: list[Obj] = []
        if "aba" in wanted:
            addresses.append(
                {
                    "type": "aba",
                    "aba": {
                        "account_holder_address": holder_address,
                        "account_holder_name": "Stripe Test Account",
                        "account_number": account,
                        "account_type": "checking",
                        "bank_address": bank_address,
                        "bank_name": "STRIPE TEST BANK",
                        "routing_number": TEST_ROUTING_NUMBER,
                    },
                    "supported_networks": ["ach", "domestic_wire_us"],
                }
            )
        if "swift" in wanted:
            addresses.append(
                {
                    "type": "swift",
                    "swift": {
                        "account_holder_address": holder_address,
                        "account_holder_name": "Stripe Test Account",
                        "account_number": account,
                        "account_type": "checking",
                        "bank_address": bank_address,
                        "bank_name": "STRIPE TEST BANK",
                        "swift_code": "TSTEZ122",
                    },
                    "supported_networks": ["swift"],
                }
            )
        pi["next_action"] = {
            "type": "display_bank_transfer_instructions",
            "display_bank_transfer_instructions": {
                "amount_remaining": remaining,
                "currency": pi["currency"],
                "financial_addresses": addresses,
                "hosted_instructions_url": f"{self.store.base_url}/bank_transfer_instructions/{pi['id']}",
                "reference": self.transfer_references[pi["id"]],
                "type": "us_bank_transfer",
            },
        }

    def _apply_cash(self, customer: Obj, pi: Obj) -> bool:
        """Apply the customer's available cash to an open customer_balance intent; True when it is now paid."""
        available = self.customers.cash.get(customer["id"], {}).get(pi["currency"], 0)
        remaining = pi["amount"] - self.cash_applied[pi["id"]]
        applied = min(available, remaining)
        if applied <= 0:
            return False
        self.customers.cash_transaction(
            customer, pi["currency"], -applied, "applied_to_payment", {"payment_intent": pi["id"]}
        )
        self.cash_applied[pi["id"]] += applied
        if applied < remaining:
            if pi["status"] == _OPEN_TRANSFER:
                self._set_instructions(pi)
                self.store.emit("payment_intent.partially_funded", pi)
            return False
        pm = self.store.objects[pi["payment_method"]]
        charge = self.charges.new_delayed_charge(pi, pm, "succeeded")
        charge["payment_method_details"] = {"type": "customer_balance", "customer_balance": {}}
        pi.update(status="succeeded", amount_received=pi["amount"], next_action=None, latest_charge=charge["id"])
        self.store.emit("charge.succeeded", charge)
        self.store.emit("payment_intent.succeeded", pi)
        return True

    def fund_cash_balance(self, params: Obj, customer_id: str) -> Obj:
        """Stripe's test helper: a bank transfer from the customer arrives in their cash balance. The funds are
        applied to their open customer_balance intents: the one whose reference matches first, then oldest."""
        customer = self.store.get("customer", customer_id)
        amount = req_int(params, "amount")
        if amount <= 0:
            raise invalid("Invalid positive integer", param="amount", code="parameter_invalid_integer")
        currency = req_str(params, "currency").lower()
        reference = get_str(params, "reference")
        funded = self.customers.cash_transaction(
            customer,
            currency,
            amount,
            "funded",
            {
                "bank_transfer": {
                    "reference": reference,
                    "type": "us_bank_transfer",
                    "us_bank_transfer": {"network": "domestic_wire_us", "sender_name": customer["name"]},
                }
            },
        )
        funded = self.store.render(funded)  # as it was at funding time
        open_intents = [
            pi
            for pi in self.store.all("payment_intent")
            if pi["customer"] == customer_id
            and pi["status"] == _OPEN_TRANSFER
            and pi["currency"] == currency
            and pi["id"] in self.cash_applied
        ]
        open_intents.sort(key=lambda pi: self.transfer_references.get(pi["id"]) != reference)  # stable: oldest next
        for pi in open_intents:
            if self.customers.cash[customer_id].get(currency, 0) <= 0:
                break
            self._apply_cash(customer, pi)
        if self.customers.cash[customer_id].get(currency, 0) > 0:
            self.store.emit("cash_balance.funds_available", self.customers.cash_balance(customer_id))
        return funded

    def on_cancel(self, pi: Obj) -> None:
        """A canceled intent never settles; a partly funded bank-transfer intent returns its funds to the cash
        balance."""
        pi_id = pi["id"]
        self.ach_settle_at.pop(pi_id, None)
        applied = self.cash_applied.pop(pi_id, 0)
        pi["next_action"] = None
        if applied:
            self.customers.cash_transaction(
                self.store.objects[pi["customer"]],
                pi["currency"],
                applied,
                "unapplied_from_payment",
                {"payment_intent": pi_id},
            )

    def routes(self) -> list[Route]:
        return [
            stripe("GET", f"/v1/mandates/{ID}", lambda p, i: self.store.get("mandate", i)),
            stripe("POST", f"/v1/test_helpers/customers/{ID}/fund_cash_balance", self.fund_cash_balance),
            helper("POST", f"/_emulator/payment_intents/{ID}/settle", {"outcome": ANY}, self.settle_payment_intent),
        ]
