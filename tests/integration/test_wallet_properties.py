"""Stateful property test of the wallet on DynamoDB Local and the Stripe emulator: any sequence of
top-ups, webhook replays, holds, draws (bills against holds: each takes its amount from the hold, the
rest stays held), releases, bare bills and support refunds keeps `sum(entries) == balance`, applies no
entry twice and never makes `held` negative."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.auth import Caller
from shared.errors import InvalidRequestError
from shared.wallet.account import available
from shared.wallet.service import Bill, InsufficientWalletFundsError
from tests.helpers import new_user
from tests.integration.wallet_kit import WalletKit, agency_org, ledger_lines, wallet_kit

pytestmark = pytest.mark.integration
SUPPORT = Caller("support_bot", None, frozenset({"support"}))


def machine_for(stack: Any) -> type[RuleBasedStateMachine]:
    class WalletMachine(RuleBasedStateMachine):
        kit: WalletKit

        @initialize()
        def open_wallet(self) -> None:
            self.kit = wallet_kit(stack, datetime(2026, 11, 20, tzinfo=UTC))
            self.org_id, self.project, _ = agency_org(self.kit)
            customer = self.kit.gateway.create_customer(org_id=self.org_id, name="prop", email=None)
            self.kit.org_repo.link_stripe_customer(self.org_id, customer)
            self.card = self.kit.gateway._client.v1.payment_methods.attach(
                "pm_card_visa", params={"customer": customer}
            ).id
            self.customer = customer
            self.balance = 0
            self.holds: dict[str, int] = {}
            self.credited: list[tuple[str, str, str, int]] = []  # (topup, intent, charge, amount)
            self.refundable = 0
            self.paused = False
            self.n = 0

        def _moved(self) -> None:
            """The model of the low-balance states: paused below the floor (0) until the balance is back
            at the low-balance threshold (the default, 10,000)."""
            if self.balance < 0:
                self.paused = True
            elif self.paused and self.balance >= 10_000:
                self.paused = False

        def _next(self, prefix: str) -> str:
            self.n += 1
            return f"{prefix}-{self.n}-{new_user()}"

        @rule(amount=st.integers(100, 50_000))
        def top_up(self, amount: int) -> None:
            topup = self._next("tu")
            intent_id = self.kit.gateway.charge_card(
                customer_id=self.customer,
                payment_method=self.card,
                amount_minor=amount,
                currency="USD",
                metadata={"org_id": self.org_id},
                key=topup,
            )
            charge = str(self.kit.gateway._client.v1.payment_intents.retrieve(intent_id).latest_charge)
            assert self.kit.wallet.topup_succeeded(
                org_id=self.org_id, topup_id=topup, payment_intent_id=intent_id, charge_id=charge, amount_minor=amount
            )
            self.credited.append((topup, intent_id, charge, amount))
            self.balance += amount
            self.refundable += amount
            self._moved()

        @precondition(lambda self: bool(self.credited))
        @rule(data=st.data())
        def replay_a_payment_webhook(self, data: st.DataObject) -> None:
            topup, intent_id, charge, amount = data.draw(st.sampled_from(self.credited))
            assert not self.kit.wallet.topup_succeeded(
                org_id=self.org_id, topup_id=topup, payment_intent_id=intent_id, charge_id=charge, amount_minor=amount
            )

        @rule(amount=st.integers(1, 20_000))
        def hold(self, amount: int) -> None:
            hold_id = self._next("h")
            try:
                self.kit.wallet.hold(
                    org_id=self.org_id, hold_id=hold_id, project_id=self.project, platform="meta", amount_minor=amount
                )
            except InsufficientWalletFundsError:
                assert self.paused or self.balance - sum(self.holds.values()) < amount
                return
            self.holds[hold_id] = amount

        @precondition(lambda self: bool(self.holds))
        @rule(data=st.data(), spent=st.integers(0, 25_000), replays=st.integers(1, 3))
        def draw_on_a_hold_with_a_bill(self, data: st.DataObject, spent: int, replays: int) -> None:
            hold_id = data.draw(st.sampled_from(sorted(self.holds)))
            bill_id = self._next("bill")
            for _ in range(replays):  # a redelivered bill debits once (and draws on its hold once)
                self.kit.wallet.record_bill(
                    Bill(
                        org_id=self.org_id,
                        platform="meta",  # the hold's: a bill draws on the hold of its project and platform
                        bill_id=bill_id,
                        project_id=self.project,
                        amount_minor=spent,
                        currency="USD",
                        billed_on=date(2026, 11, 20),
                        hold_id=hold_id,
                        actor="prop",
                    )
                )
            left = max(0, self.holds[hold_id] - spent)  # the hold stays open with the rest; at 0 it is exhausted
            if left:
                self.holds[hold_id] = left
            else:
                del self.holds[hold_id]
            self.balance -= spent + _fee(spent)
            self._moved()

        @precondition(lambda self: bool(self.holds))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            hold_id = data.draw(st.sampled_from(sorted(self.holds)))
            self.kit.wallet.release_hold(org_id=self.org_id, hold_id=hold_id)
            self.kit.wallet.release_hold(org_id=self.org_id, hold_id=hold_id)  # twice: once
            del self.holds[hold_id]

        @rule(spent=st.integers(0, 30_000))
        def bill_without_a_hold(self, spent: int) -> None:
            self.kit.wallet.record_bill(
                Bill(
                    org_id=self.org_id,
                    platform="apple_search_ads",
                    bill_id=self._next("b"),
                    project_id=self.project,
                    amount_minor=spent,
                    currency="USD",
                    billed_on=date(2026, 11, 20),
                    hold_id=None,
                    actor="prop",
                )
            )
            self.balance -= spent + _fee(spent)
            self._moved()

        @rule(amount=st.integers(1, 30_000))
        def support_refund(self, amount: int) -> None:
            key = self._next("refund")
            try:
                self.kit.wallet.refund(
                    SUPPORT, self.org_id, amount_minor=amount, reason="property", idempotency_key=key
                )
            except InvalidRequestError:  # what running holds reserve stays in the wallet
                assert amount > min(self.refundable, self.balance - sum(self.holds.values()))
                return
            assert amount <= min(self.refundable, self.balance - sum(self.holds.values()))
            self.kit.wallet.refund(SUPPORT, self.org_id, amount_minor=amount, reason="property", idempotency_key=key)
            self.balance -= amount
            self.refundable -= amount
            self._moved()

        @invariant()
        def the_books_balance(self) -> None:
            if not hasattr(self, "kit"):
                return
            stored = self.kit.repo.get(self.org_id)
            balance = stored.account.balance if stored else 0
            entries = ledger_lines(self.kit.repo._table, self.org_id)
            assert sum(int(e["amount"]) for e in entries) == balance == self.balance
            assert not stored or stored.account.held == sum(self.holds.values()) >= 0
            # the copy holds keep arithmetically is always the rule: balance - held - floor
            assert not stored or stored.stored_available == available(
                stored.account.balance, stored.account.held, stored.account.floor
            )
            assert not stored or (stored.account.status.value == "paused") == self.paused
            keys = [(e["idempotency_key"], e["kind"], e.get("ref")) for e in entries if e.get("idempotency_key")]
            assert len(keys) == len(set(keys)), "an entry was applied twice"

    return WalletMachine


def _fee(amount: int) -> int:
    from shared.money import bps_of

    return bps_of(amount, 500)  # Pro


def test_wallet_state_machine(stack: Any) -> None:
    machine = machine_for(stack)
    machine.TestCase.settings = settings(
        max_examples=8, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine.TestCase().runTest()
