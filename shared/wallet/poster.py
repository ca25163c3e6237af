"""Runs one versioned wallet change: read, build, commit, retry on conflict (shared/retry.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared import keys
from shared.clock import Clock
from shared.credits.periods import period_containing
from shared.dynamo import Item
from shared.errors import ConcurrentUpdateError, ConflictError
from shared.ledger import AlreadyApplied, Head, LedgerConflict
from shared.orgs.models import BillingMode, Org
from shared.orgs.repository import OrgRepository
from shared.outbox import Event, Message, Notice
from shared.retry import until_done
from shared.wallet.account import Signal, WalletAccount
from shared.wallet.models import Attribution, StoredWallet, WalletChange
from shared.wallet.repository import ModeChanged, PeriodClosed, WalletRepository, account_key

DEFAULT_LOW_THRESHOLD_MINOR = 10_000
MAX_ATTEMPTS = 100

_TEXTS = {
    Signal.LOW_BALANCE: "Your Layers ad wallet is running low. Top up to keep agency ads running.",
    Signal.PAUSED: "Your Layers ad wallet is below its floor: agency ads are paused. Top up to resume.",
    Signal.RESUMED: "Your Layers ad wallet was topped up: agency ads are running again.",
}


class WalletNotAvailableError(ConflictError):
    code = "wallet_not_available"


@dataclass(frozen=True)
class Posted:
    before: StoredWallet
    after: WalletAccount
    replay: bool  # the change's cause was applied before: nothing was written now
    wallet: StoredWallet  # the wallet as this post left it (StoredWallet.changed_by); as read on a replay


Build = Callable[[StoredWallet], WalletChange | None]


def agency(org: Org) -> Org:
    if org.billing_mode is not BillingMode.AGENCY:
        raise WalletNotAvailableError(
            "This org pays the ad platforms directly (BYO mode): there is no wallet and no platform fee."
        )
    return org


def agency_spend_open(org: Org, now: datetime) -> bool:
    """Agency mode, with a subscription that pays (or is in grace): new holds and top-ups are allowed."""
    return org.billing_mode is BillingMode.AGENCY and org.agency_spend_open(now)


def spend_stopped() -> ConflictError:
    return ConflictError(
        "Agency spend is stopped: the subscription is unpaid. Pay the open invoice in the billing portal to "
        "resume; spend already committed still settles.",
        code="subscription_unpaid",
    )


def wallet_mode(stored: StoredWallet, org: Org) -> BillingMode:
    """The wallet's copy of the org's mode (the org's own for a wallet not written yet)."""
    return stored.mode or org.billing_mode


class WalletPoster:
    def __init__(self, org_repo: OrgRepository, repo: WalletRepository, clock: Clock):
        self._org_repo = org_repo
        self._repo = repo
        self._clock = clock
        # Called after each change that committed (or was replayed: a retry heals a check that failed),
        # with the wallet as the change left it: the runway watch (runway_watch.py).
        self.after_commit: Callable[[str, StoredWallet], object] | None = None

    def load(self, org: Org) -> StoredWallet:
        return self.as_stored(org, self._repo.get(org.org_id))

    @staticmethod
    def as_stored(org: Org, stored: StoredWallet | None) -> StoredWallet:
        """The wallet as read (None: none yet: the one its first write makes)."""
        if stored is None:
            return StoredWallet(WalletAccount(currency=org.currency, low_threshold=DEFAULT_LOW_THRESHOLD_MINOR), Head())
        return stored

    def org_and_wallet(
        self, org_id: str, more: Sequence[keys.Key] = ()
    ) -> tuple[Org, StoredWallet | None, list[Item | None] | None]:
        """`require_org`, the wallet (None: none yet) and the items of `more` (None: none) in one round trip,
        as if read one after the other (one snapshot). While a transaction writes any of them: the org and
        the wallet one after the other, and None for `more` (not read)."""
        try:
            org, (item, *items) = self._org_repo.org_and_items(org_id, [account_key(org_id), *more])
        except ConcurrentUpdateError:
            return self._org_repo.require_org(org_id), self._repo.get(org_id), None
        return org, self._repo.stored(item), items

    def post(
        self, org: Org, build: Build, *, agency_only: bool = False, read: StoredWallet | None = None
    ) -> Posted | None:
        """Commits what `build` makes of the current state (None: nothing to write, and None is returned).
        `agency_only`: refused (409) if the org turns out to have left agency mode meanwhile. `read`: the
        wallet as read after `org` (`org_and_wallet`), for the first attempt; a retry reads it again."""
        state = {"org": org}
        first = [read]

        def attempt() -> Posted | None:
            try:
                return self._attempt(state["org"], build, agency_only, first.pop() if first else None)
            except ModeChanged:  # the wallet's first write: its copy of the mode must be the org's
                state["org"] = self._org_repo.require_org(org.org_id)
                if agency_only:
                    agency(state["org"])
                raise

        retry_on = (LedgerConflict, ConcurrentUpdateError, ModeChanged, PeriodClosed)
        posted = until_done(attempt, retry_on=retry_on, attempts=MAX_ATTEMPTS, busy="The wallet is busy; retry.")
        if posted is not None and self.after_commit is not None:
            self.after_commit(org.org_id, posted.wallet)
        return posted

    def attribution(self, org: Org, dated: datetime | None) -> Attribution:
        """The period whose invoice covers a change dated `dated` (None: now): its own period while that
        period's invoice is not made; else the current period, as late for its own. (The current period's
        invoice cannot be made yet: an invoice is made only after its period ends.)"""
        now = self._clock.now()
        current = period_containing(org, now)
        own = period_containing(org, dated) if dated is not None else current
        if own.start >= current.start or not self._repo.invoice_made(org.org_id, own.key):
            return Attribution(own.key)
        return Attribution(current.key, late_for=own.key)

    def _attempt(self, org: Org, build: Build, agency_only: bool, read: StoredWallet | None) -> Posted | None:
        stored = read if read is not None else self.load(org)
        if agency_only and wallet_mode(stored, org) is not BillingMode.AGENCY:
            agency(self._org_repo.require_org(org.org_id))  # left agency mode meanwhile: 409
        change = build(stored)
        if change is None:
            return None
        signals = change.after.status_signals(stored.account)
        if wallet_mode(stored, org) is not BillingMode.AGENCY:
            # Low and paused are about agency spend, and there is none any more; resumed still tells.
            signals = [signal for signal in signals if signal is Signal.RESUMED]
        told = [*signal_messages(org, stored.account, change.after, signals), *change.messages]
        try:
            self._repo.post(
                org.org_id,
                stored,
                replace(change, messages=told),
                mode=org.billing_mode.value,
                attribution=self.attribution(org, change.dated),
                agency_until=org.agency_until,
                now=self._clock.now(),
            )
        except AlreadyApplied:
            return Posted(stored, stored.account, replay=True, wallet=stored)
        return Posted(stored, change.after, replay=False, wallet=stored.changed_by(change, org.billing_mode))


def signal_messages(org: Org, before: WalletAccount, after: WalletAccount, signals: list[Signal]) -> list[Message]:
    """The event and the notification of each status change, sent with the change (the outbox)."""
    messages: list[Message] = []
    for signal in signals:
        detail = {
            "org_id": org.org_id,
            "balance_minor": after.balance,
            "currency": after.currency,
            "status": after.status.value,
            "previous_status": before.status.value,
        }
        messages.append(Event(signal.value, detail))
        messages.append(Notice(signal.value, f"Layers: {signal.value}", _TEXTS[signal], detail))
    return messages
