"""Credit math properties: no sequence of reserve / settle / release / expire / grant / packs / new
period makes `available` wrong or counts a credit twice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.credits.account import CreditAccount, CreditCapReachedError, EntryKind, InsufficientCreditsError


def fresh(included: int, overage_allowed: bool, cap: int | None = None) -> CreditAccount:
    account = CreditAccount(
        period_key="",
        included=0,
        included_used=0,
        packs=0,
        reserved=0,
        overage=0,
        overage_allowed=overage_allowed,
        cap=cap,
    )
    return account.open_period("P0", included)[0]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 400)),
        st.tuples(st.just("settle"), st.integers(0, 500)),
        st.tuples(st.just("release"), st.just(0)),
        st.tuples(st.just("expire"), st.just(0)),
        st.tuples(st.just("grant"), st.integers(1, 300)),
        st.tuples(st.just("claw_back"), st.integers(1, 300)),
        st.tuples(st.just("pack"), st.integers(1, 1000)),
        st.tuples(st.just("new_period"), st.integers(0, 3000)),
        st.tuples(st.just("suspend"), st.integers(0, 200)),  # paid features paused: the plan's part capped
        st.tuples(st.just("restore"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 3000), st.booleans(), st.one_of(st.none(), st.integers(1, 5000)))
def test_no_sequence_breaks_the_books(
    sequence: list[tuple[str, int]], included: int, overage: bool, cap: int | None
) -> None:
    account = fresh(included, overage, cap)
    holds: list[int] = []  # open reservations, oldest first
    deltas = account.available  # the opening grant
    used_this_period = packs_bought = packs_total_used = overrun = 0
    period = 0
    for op, n in sequence:
        before = account
        try:
            if op == "reserve":
                account, entries = account.reserve(n)
                holds.append(n)
            elif op == "settle" and holds:
                held = holds.pop(0)
                account, entries, split = account.settle(held, n)
                overrun += max(0, n - held)  # the engine used more than it reserved
                assert split.included + split.packs + split.overage == n
                used_this_period += n
                packs_total_used += split.packs
            elif op in ("release", "expire") and holds:
                account, entries = account.release(holds.pop(0))
            elif op == "grant":
                account, entries = account.grant(n)
            elif op == "claw_back":
                account, entries = account.claw_back(n)
            elif op == "pack":
                account, entries = account.add_packs(n)
                packs_bought += n
            elif op == "suspend":
                account, entries = account.limit_included(n)
            elif op == "restore":
                account, entries = account.limit_included(None)
            elif op == "new_period":
                period += 1
                # Holds carry into the new period, which may not cover them: settled there, they are
                # that period's usage, and overage past what it includes (found by hypothesis:
                # reserve 1, new period of 0 included, settle 1).
                overrun += sum(holds)
                account, entries = account.open_period(f"P{period}", n)
                used_this_period = 0
            else:
                continue
        except (InsufficientCreditsError, CreditCapReachedError):
            assert account == before  # a refusal changes nothing
            continue
        if not entries:  # a ceiling that changed nothing usable: nothing to record
            assert account.available == before.available
            continue
        # Every entry says what it did to `available`, and the last one where it ended.
        for entry in entries:
            deltas += entry.delta
            assert entry.credits >= 0
        assert entries[-1].balance_after == account.available == deltas
        # The books: available is exactly what is left, nothing is negative, nothing counted twice.
        assert account.available == account.included_remaining + account.packs - account.reserved
        assert account.reserved == sum(holds) >= 0
        assert account.packs == packs_bought - packs_total_used >= 0
        assert 0 <= account.included_used <= account.included
        assert account.used == used_this_period  # every settled credit counted once, in its period
        if not account.overage_allowed:
            assert account.overage <= overrun  # without overage, only a settle past its hold overruns


def test_reserve_refuses_past_available_without_overage() -> None:
    account = fresh(100, overage_allowed=False)
    account, _ = account.reserve(100)
    with pytest.raises(InsufficientCreditsError) as err:
        account.reserve(1)
    assert err.value.details == {"available": 0, "requested": 1}


def test_overage_plans_reserve_past_included_until_the_cap() -> None:
    account = fresh(100, overage_allowed=True, cap=150)
    account, _ = account.reserve(140)
    with pytest.raises(CreditCapReachedError):
        account.reserve(11)
    account, _ = account.reserve(10)
    assert account.available == -50


def test_settle_uses_included_then_packs_then_overage() -> None:
    account, _ = fresh(100, overage_allowed=True).add_packs(50)
    account, _ = account.reserve(200)
    account, entries, split = account.settle(200, 180)
    assert (split.included, split.packs, split.overage) == (100, 50, 30)
    assert entries[0].kind is EntryKind.USAGE and entries[0].credits == 180
    assert (account.available, account.overage, account.packs) == (0, 30, 0)


def test_a_new_period_resets_included_and_keeps_packs_and_holds() -> None:
    account, _ = fresh(100, overage_allowed=True).add_packs(40)
    account, _ = account.reserve(30)
    account, _, _ = account.settle(30, 30)
    account, _ = account.reserve(20)
    account, entries = account.open_period("P1", 100)
    assert (account.included_used, account.overage, account.packs, account.reserved) == (0, 0, 40, 20)
    assert entries[0].kind is EntryKind.GRANT and entries[0].balance_after == 100 + 40 - 20


def test_a_pause_caps_the_plans_included_credits_never_support_grants() -> None:
    account, _ = fresh(3000, overage_allowed=True).grant(250)
    paused, entries = account.limit_included(100)  # Free's included, while unpaid
    assert paused.available == 100 + 250 and entries[0].delta == -2900
    assert paused.grant(50)[0].available == 400  # a grant while paused is usable
    restored, entries = paused.limit_included(None)
    assert restored.available == 3250 and entries[0].delta == 2900


def test_what_was_reserved_before_a_pause_settles_against_included() -> None:
    account, _ = fresh(3000, overage_allowed=True).reserve(2000)
    paused, _ = account.limit_included(100)
    settled, _, split = paused.settle(2000, 2100)  # 100 more than reserved: within the paused cap
    assert (split.included, split.packs, split.overage) == (2000, 0, 100)
    assert settled.available == 0
