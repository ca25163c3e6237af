"""The sweeper's packs of one wallet's expired holds (shared/wallet/repository.py `hold_packs`): each fits
one transaction (the wallet, a close each, a budget item per project-period: at most 100 items) and
writes a project-period's budget item once (one platform each)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.wallet.models import Hold
from shared.wallet.repository import MAX_HOLDS_ENDED, freed_budget, hold_packs


def _hold(n: int, project: str, platform: str, period: str | None, remaining: int) -> Hold:
    made = "2027-01-31T21:47:13.000Z"
    return Hold(f"h{n}", project, platform, 5_000, "pending", made, made, remaining, 5_000 - remaining, period)


holds = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"] + [f"q{i}" for i in range(60)]),
        st.sampled_from(["meta", "tiktok", "google_ads"]),
        st.sampled_from(["2027-01-31", "2026-12-31", None]),
        st.integers(0, 5_000),
    ),
    max_size=MAX_HOLDS_ENDED,
).map(lambda found: [_hold(n, *fields) for n, fields in enumerate(found)])


@settings(max_examples=300, deadline=None)  # no timing in unit tests: a loaded machine is slow
@given(holds)
def test_every_hold_is_in_one_pack_and_each_pack_fits_one_transaction(listed: list[Hold]) -> None:
    packs = hold_packs(listed)
    assert sorted(h.hold_id for pack in packs for h in pack) == sorted(h.hold_id for h in listed)
    for pack in packs:
        touches = [t for h in pack if (t := freed_budget(h)) is not None]
        platforms = {t.place: {u.platform for u in touches if u.place == t.place} for t in touches}
        assert all(len(names) == 1 for names in platforms.values())
        assert 1 + len(pack) + len(platforms) <= 100


def test_holds_of_one_project_on_two_platforms_take_two_packs_and_a_hundred_distinct_ones_two() -> None:
    same = [_hold(0, "p", "meta", "2027-01-31", 10), _hold(1, "p", "tiktok", "2027-01-31", 10)]
    assert [[h.hold_id for h in pack] for pack in hold_packs(same)] == [["h0"], ["h1"]]
    distinct = [_hold(n, f"p{n}", "meta", "2027-01-31", 10) for n in range(MAX_HOLDS_ENDED)]
    assert [len(pack) for pack in hold_packs(distinct)] == [49, 49, 1]  # 1 + 49 + 49 = 99 items each
    drawn_out = [_hold(n, f"p{n}", "meta", "2027-01-31", 0) for n in range(MAX_HOLDS_ENDED)]
    assert [len(pack) for pack in hold_packs(drawn_out)] == [MAX_HOLDS_ENDED]  # nothing to give back
