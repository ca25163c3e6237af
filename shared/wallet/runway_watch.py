"""Watches the runway (shared/wallet/runway.py) and raises its staged alerts.

When: after every committed wallet change (a bill, a top-up credited or on its way, a refund, a
reversal: WalletPoster's `after_commit`, with the wallet as the change left it: `after_post`), after a
hold is placed or ended, and once a day for every org whose wallet moved within the rate's days or that
has an open hold (the days slide and the holds' ends near even when nothing is written: the reconciler's
daily run calls `daily`). An evaluation reads the account (not after a change: the change hands it down),
the alert state, the open holds (only while something is held) and the unbilled spend (only when it
could move the stage: not while nothing is spent, nor at the deepest stage): a few reads, and a write
only when the stage changes. (The runway it returns is then the one without the unbilled spend: same stage.)

Alerts: when the runway falls to or below a stage (days) not alerted since the runway was last above
it, one `Wallet.RunwayAlert` event and notification name the deepest stage crossed (a runway that
falls from 20 to 2 days alerts once, for 3; the 14 and 7 stages count as alerted). Rising above a
stage re-arms it and the stages below it, silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from shared.clock import Clock
from shared.money import format_minor
from shared.observability import logger
from shared.orgs.models import Org
from shared.outbox import Event, Message, Notice
from shared.wallet.models import StoredWallet
from shared.wallet.repository import WalletRepository
from shared.wallet.runway import (
    DEFAULT_STAGES,
    RATE_DAYS,
    OpenHold,
    Runway,
    Spending,
    assess,
    crossed,
    still_held,
    unbilled_may_move,
    valid_stages,
)
from shared.wallet.runway_repository import RunwayRepository, RunwayState

RUNWAY_ALERT = "Wallet.RunwayAlert"
MAX_TRIES = 5  # evaluations racing for one stage change: each try reads again


@dataclass(frozen=True)
class Suggestion:
    """The top-up that restores RESTORE_DAYS of runway, and how: ACH when the org has paid by ACH (it
    takes days to arrive, so it is the one to start early), else card."""

    amount_minor: int
    method: str  # ach | card


@dataclass(frozen=True)
class RunwayReading:
    runway: Runway
    stages: tuple[int, ...]
    unbilled_minor: int
    suggestion: Suggestion | None


def tenths_text(tenths: int) -> str:
    """Tenths of a day as days, e.g. 23 -> '2.3' (integer arithmetic: no float)."""
    return f"{tenths // 10}.{tenths % 10}"


def stages_of(state: RunwayState) -> tuple[int, ...]:
    return state.stages or DEFAULT_STAGES


class RunwayWatch:
    def __init__(
        self,
        repo: WalletRepository,
        runway_repo: RunwayRepository,
        clock: Clock,
        unbilled: Callable[[str, date], int],
    ):
        """`unbilled(org_id, today)`: spend the platforms reported that no bill covers yet."""
        self._repo = repo
        self._runway = runway_repo
        self._clock = clock
        self._unbilled = unbilled

    def read(self, org: Org, stored: StoredWallet) -> RunwayReading:
        """The runway now, the org's stages and the funding suggestion (reads only)."""
        state = self._runway.state(org.org_id)
        runway, unbilled = self._assess(org.org_id, stored, stages_of(state))
        return RunwayReading(runway, stages_of(state), unbilled, self._suggestion(org.org_id, runway))

    def _assess(
        self, org_id: str, stored: StoredWallet, stages: tuple[int, ...], recorded: RunwayState | None = None
    ) -> tuple[Runway, int]:
        """The runway and the unbilled spend it counts. `recorded`: the state on record, when only a stage
        that moves from it matters (an evaluation): the unbilled spend is then read only when it could move
        the stage (`unbilled_may_move`), else the runway is the one without it (its stage is the same)."""
        now = self._clock.now()
        holds = self._open_holds(org_id) if still_held(stored.account) > 0 else []
        spending = Spending(stored.spend_days, stored.drawn_days)
        if recorded is not None:
            runway = assess(stored.account, spending=spending, holds=holds, unbilled=0, now=now, stages=stages)
            if runway.stage == recorded.stage and not unbilled_may_move(runway, stages):
                return runway, 0
        unbilled = self._unbilled(org_id, now.date())
        runway = assess(stored.account, spending=spending, holds=holds, unbilled=unbilled, now=now, stages=stages)
        return runway, unbilled

    def _open_holds(self, org_id: str) -> list[OpenHold]:
        """What each pending hold still holds (its remainder after the bills that drew on it) and its expiry."""
        return [OpenHold(h.open_minor, datetime.fromisoformat(h.expires_at)) for h in self._repo.open_holds(org_id)]

    def _suggestion(self, org_id: str, runway: Runway) -> Suggestion | None:
        if runway.restore_minor <= 0:
            return None
        by_ach = any(t.method == "ach" and t.status in ("pending", "succeeded") for t in self._repo.topups(org_id))
        return Suggestion(runway.restore_minor, "ach" if by_ach else "card")

    def configure(self, org_id: str, stages: tuple[int, ...]) -> None:
        """Sets the org's alert stages (ValueError for stages `valid_stages` refuses)."""
        self._runway.set_stages(org_id, valid_stages(stages))

    def check(self, org_id: str, *, rising: bool = False) -> Runway | None:
        """Evaluates the org's runway and records a stage change, with its alert when it crosses down.
        None for an org without a wallet. `rising`: the change can only lengthen the runway (a hold
        ended): it can only re-arm stages, so with none alerted there is nothing to do (one read: the
        hold sweeper ends many)."""
        if rising and self._runway.state(org_id).stage is None:
            return None
        return self._evaluate(org_id, None)

    def after_post(self, org_id: str, left: StoredWallet) -> Runway | None:
        """`check`, after a wallet change, on the wallet as the change left it (WalletPoster's `after_commit`):
        no read of what the change just wrote. A change committed after it runs its own evaluation after
        its own write, as a hold placed or ended does (the stage move is conditional on the stage read)."""
        return self._evaluate(org_id, left)

    def _evaluate(self, org_id: str, known: StoredWallet | None) -> Runway | None:
        """`known`: the wallet for the first try (None: read); a try that lost the stage to another reads again."""
        for _ in range(MAX_TRIES):
            stored, known = known or self._repo.get(org_id), None
            if stored is None:
                return None
            state = self._runway.state(org_id)
            runway, _ = self._assess(org_id, stored, stages_of(state), state)
            if runway.stage == state.stage:
                return runway
            alert = crossed(state.stage, runway.stage)
            messages = self._alert(org_id, stored.account.currency, runway) if alert else []
            now = self._clock.now()
            if self._runway.move_stage(org_id, state, runway.stage, runway.tenths, messages, now):
                return runway
        return None  # others kept changing it: the latest of them evaluated after its own write

    def daily(self) -> int:
        """Evaluates every org whose wallet moved within the rate's days or that has an open hold (its
        spend goes on with no bill yet, and its rate rises as its end nears); returns how many were evaluated.
        One org that fails is logged and counted as not evaluated; the others go on (the next firing, or
        the org's next write, evaluates it again)."""
        done = 0
        for org_id in self._runway.orgs_to_watch(self._clock.now(), RATE_DAYS):
            try:
                self.check(org_id)
            except Exception:  # isolation: whatever one org raises, the walk goes on (as shared/sweep.py)
                logger.exception("runway evaluation failed", extra={"org_id": org_id})
                continue
            done += 1
        return done

    def _alert(self, org_id: str, currency: str, runway: Runway) -> list[Message]:
        suggestion = self._suggestion(org_id, runway)
        detail = {
            "org_id": org_id,
            "stage_days": runway.stage,
            "runway_tenths": runway.tenths,
            "funds_minor": runway.funds_minor,
            "daily_rate_minor": runway.daily_rate_minor,
            "currency": currency,
            "suggested_top_up_minor": suggestion.amount_minor if suggestion else 0,
            "suggested_method": suggestion.method if suggestion else None,
        }
        days = tenths_text(runway.tenths or 0)
        text = f"Your Layers ad wallet has about {days} days of runway left (alert at {runway.stage} days). " + (
            f"A top-up of {format_minor(suggestion.amount_minor, currency)} by {suggestion.method} restores 7 days."
            if suggestion
            else ""
        )
        return [
            Event(RUNWAY_ALERT, detail),
            Notice(RUNWAY_ALERT, f"Layers: {runway.stage} days of ad wallet runway", text, detail),
        ]
