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
from typing import Any

from . import fixtures
from .core import Obj
from .errors import invalid, missing, param_missing
from .params import get_dict, get_enum, get_str, req_int, req_str
from .payments import BANK_FAILURE_MESSAGES, TEST_ROUTING_NUMBER, BankAccount, Card, Payments

# An ACH debit settles this long after confirmation on a test clock (Stripe: about 4 business days).
ACH_SETTLEMENT = 4 * 86_400
# The failure of a settle helper call with outcome=failed on an account that would have succeeded.
_FORCED_FAILURE = "insufficient_funds"
_OPEN_TRANSFER = "requires_action"


class Delayed(Payments):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Processing ACH intent -> settlement time on its customer's clock (None: no clock, only the helper).
        self.ach_settle_at: dict[str, int | None] = {}
        self.mandates: dict[str, str] = {}  # payment method -> its latest mandate
        self.cash: dict[str, dict[str, int]] = {}  # customer -> currency -> available cash balance
        self.cash_applied: dict[str, int] = {}  # customer_balance intent -> amount applied so far
        self.transfer_references: dict[str, str] = {}  # customer_balance intent -> its transfer reference
        self.virtual_accounts: dict[str, str] = {}  # customer -> their virtual account number

    def confirm_delayed(self, pi: Obj, pm: Obj, params: Obj) -> None:
        if pm["type"] == "us_bank_account":
            self._confirm_ach(pi, pm, params)
        elif pm["type"] == "customer_balance":
            self._confirm_bank_transfer(pi, pm)
        else:
            super().confirm_delayed(pi, pm, params)

    # ================================================================ ACH
    def _confirm_ach(self, pi: Obj, pm: Obj, params: Obj) -> None:
        bank = self.banks[pm["id"]]
        customer = pi["customer"]
        mandate_data = get_dict(params, "mandate_data")
        mandate_id = self._new_mandate(pi, pm, mandate_data) if mandate_data else self.mandates.get(pm["id"])
        now = self.now(customer)
        pi.update(
            payment_method=pm["id"],
            status="processing",
            last_payment_error=None,
            next_action=None,
        )
        charge = self._delayed_charge(pi, pm, "pending")
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
            self._attach(pm, customer)
        self.emit("charge.pending", charge)
        self.emit("payment_intent.processing", pi)
        has_clock = self.clock_of(customer) is not None
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
                "accepted_at": self.now(pi["customer"]),
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
        self.add(mandate)
        self.mandates[pm["id"]] = mandate["id"]
        return str(mandate["id"])

    def next_settlement(self, customers: set[str], until: int) -> tuple[int, Obj] | None:
        """The earliest ACH settlement due by `until` among intents of `customers` (for clock advances)."""
        due = [
            (at, self.objects[pi_id])
            for pi_id, at in self.ach_settle_at.items()
            if at is not None and at <= until and self.objects[pi_id]["customer"] in customers
        ]
        return min(due, key=lambda d: (d[0], d[1]["created"]), default=None)

    def settle_ach(self, pi: Obj, outcome: str | None = None) -> None:
        """The debit settles (`succeeded`) or is returned by the bank (`failed`)."""
        self.ach_settle_at.pop(pi["id"], None)
        pm = self.objects[pi["payment_method"]]
        bank = self.banks.get(pm["id"], BankAccount("6789"))
        if outcome is None:
            outcome = "failed" if bank.failure_code else "succeeded"
        charge = self.objects[pi["latest_charge"]]
        if outcome == "succeeded":
            charge.update(status="succeeded", paid=True)
            charge["outcome"].update(seller_message="Payment complete.")
            pi.update(status="succeeded", amount_received=pi["amount"])
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", pi)
            if bank.dispute:
                self.create_dispute({"reason": "general"}, charge["id"])
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
                "payment_method": self.render(pm),
            },
        )
        self.emit("charge.failed", charge)
        self.emit("payment_intent.payment_failed", pi)

    def settle_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        """Test helper: a processing ACH debit (or emulated delayed card payment) settles now (`outcome`
        defaults to the test account's)."""
        pi = self.get("payment_intent", pi_id)
        pm = self.objects.get(pi["payment_method"] or "")
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
        charge = self.objects[pi["latest_charge"]]
        if outcome == "succeeded":
            charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
            pi.update(status="succeeded", amount_received=pi["amount"])
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", pi)
            return
        card = Card("visa", "1881", "generic_decline")
        charge.update(status="failed", failure_code="card_declined", failure_message="Your card was declined.")
        pi.update(status="requires_payment_method", last_payment_error=self.card_error(card, charge["id"], pm))
        self.emit("charge.failed", charge)
        self.emit("payment_intent.payment_failed", pi)

    # ====================================================== bank transfers
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
        customer = self.objects[pi["customer"]]
        if self._apply_cash(customer, pi):  # the cash balance already covered it
            return
        pi["status"] = _OPEN_TRANSFER
        self._set_instructions(pi)
        self.emit("payment_intent.requires_action", pi)

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
                "hosted_instructions_url": f"{self.base_url}/bank_transfer_instructions/{pi['id']}",
                "reference": self.transfer_references[pi["id"]],
                "type": "us_bank_transfer",
            },
        }

    def _cash_transaction(self, customer: Obj, currency: str, amount: int, kind: str, details: Obj) -> Obj:
        balances = self.cash.setdefault(customer["id"], {})
        balances[currency] = balances.get(currency, 0) + amount
        txn = fixtures.base(
            "customer_cash_balance_transaction",
            id=fixtures.new_id("ccsbtxn_"),
            created=self.now(customer["id"]),
            currency=currency,
            customer=customer["id"],
            ending_balance=balances[currency],
            net_amount=amount,
            type=kind,
        )
        txn.pop("funded", None)
        txn[kind] = details
        self.add(txn)
        self.emit("customer_cash_balance_transaction.created", txn)
        return txn

    def _apply_cash(self, customer: Obj, pi: Obj) -> bool:
        """Apply the customer's available cash to an open customer_balance intent; True when it is now paid."""
        available = self.cash.get(customer["id"], {}).get(pi["currency"], 0)
        remaining = pi["amount"] - self.cash_applied[pi["id"]]
        applied = min(available, remaining)
        if applied <= 0:
            return False
        self._cash_transaction(customer, pi["currency"], -applied, "applied_to_payment", {"payment_intent": pi["id"]})
        self.cash_applied[pi["id"]] += applied
        if applied < remaining:
            if pi["status"] == _OPEN_TRANSFER:
                self._set_instructions(pi)
                self.emit("payment_intent.partially_funded", pi)
            return False
        pm = self.objects[pi["payment_method"]]
        charge = self._delayed_charge(pi, pm, "succeeded")
        charge["payment_method_details"] = {"type": "customer_balance", "customer_balance": {}}
        pi.update(status="succeeded", amount_received=pi["amount"], next_action=None, latest_charge=charge["id"])
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", pi)
        return True

    def fund_cash_balance(self, params: Obj, customer_id: str) -> Obj:
        """Stripe's test helper: a bank transfer from the customer arrives in their cash balance. The funds are
        applied to their open customer_balance intents: the one whose reference matches first, then oldest."""
        customer = self.get("customer", customer_id)
        amount = req_int(params, "amount")
        if amount <= 0:
            raise invalid("Invalid positive integer", param="amount", code="parameter_invalid_integer")
        currency = req_str(params, "currency").lower()
        reference = get_str(params, "reference")
        funded = self._cash_transaction(
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
        funded = self.render(funded)  # as it was at funding time
        open_intents = [
            pi
            for pi in self.all("payment_intent")
            if pi["customer"] == customer_id
            and pi["status"] == _OPEN_TRANSFER
            and pi["currency"] == currency
            and pi["id"] in self.cash_applied
        ]
        open_intents.sort(key=lambda pi: self.transfer_references.get(pi["id"]) != reference)  # stable: oldest next
        for pi in open_intents:
            if self.cash[customer_id].get(currency, 0) <= 0:
                break
            self._apply_cash(customer, pi)
        if self.cash[customer_id].get(currency, 0) > 0:
            self.emit("cash_balance.funds_available", self._cash_balance(customer_id))
        return funded

    def _cash_balance(self, customer_id: str) -> Obj:
        return {
            "object": "cash_balance",
            "available": {c: a for c, a in self.cash.get(customer_id, {}).items() if a},
            "customer": customer_id,
            "customer_account": None,
            "livemode": False,
            "settings": {"reconciliation_mode": "automatic", "using_merchant_default": True},
        }

    def retrieve_cash_balance(self, params: Obj, customer_id: str) -> Obj:
        self.get("customer", customer_id)
        return self._cash_balance(customer_id)

    def list_cash_balance_transactions(self, params: Obj, customer_id: str) -> Obj:
        self.get("customer", customer_id)
        items = [t for t in self.all("customer_cash_balance_transaction") if t["customer"] == customer_id]
        return self.paginate(items, f"/v1/customers/{customer_id}/cash_balance_transactions", params)

    def retrieve_cash_balance_transaction(self, params: Obj, customer_id: str, txn_id: str) -> Obj:
        txn = self.get("customer_cash_balance_transaction", txn_id)
        if txn["customer"] != customer_id:
            raise missing("customer cash balance transaction", txn_id)
        return txn

    # ============================================================ common
    def cancel_payment_intent(self, params: Obj, pi_id: str) -> Obj:
        """Cancelling a partly funded bank-transfer intent returns its funds to the cash balance."""
        pi = super().cancel_payment_intent(params, pi_id)
        self.ach_settle_at.pop(pi_id, None)
        applied = self.cash_applied.pop(pi_id, 0)
        pi["next_action"] = None
        if applied:
            self._cash_transaction(
                self.objects[pi["customer"]],
                pi["currency"],
                applied,
                "unapplied_from_payment",
                {"payment_intent": pi_id},
            )
        return pi

    def create_dispute(self, params: Obj, charge_id: str) -> Obj:
        charge = self.get("charge", charge_id)
        if charge["status"] == "pending":
            raise invalid(f"Charge {charge_id} is still pending; only settled payments can be disputed.")
        dispute = super().create_dispute(params, charge_id)
        kind = charge["payment_method_details"]["type"]
        if kind != "card":
            dispute["payment_method_details"] = {"type": kind}
        return dispute

    def _delayed_charge(self, pi: Obj, pm: Obj, status: str) -> Obj:
        charge_id = fixtures.new_id("py_")
        charge = fixtures.base(
            "charge",
            id=charge_id,
            amount=pi["amount"],
            amount_captured=pi["amount"],
            amount_refunded=0,
            balance_transaction=fixtures.new_id("txn_"),
            billing_details=pm["billing_details"],
            captured=True,
            created=self.now(pi["customer"]),
            currency=pi["currency"],
            customer=pi["customer"],
            description=pi["description"],
            disputed=False,
            failure_code=None,
            failure_message=None,
            metadata=dict(pi["metadata"]),
            outcome={
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "not_assessed",
                "seller_message": "Payment complete." if status == "succeeded" else "The payment is pending.",
                "type": "authorized",
            },
            paid=status == "succeeded",
            payment_intent=pi["id"],
            payment_method=pm["id"],
            receipt_url=f"{self.base_url}/receipts/{charge_id}",
            refunded=False,
            refunds=None,
            shipping=None,
            source=None,
            status=status,
            transfer_data=None,
        )
        return self.add(charge)
