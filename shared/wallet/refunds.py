"""Money leaving the wallet other than by spend: support refunds to the card payments it came from,
refunds made in Stripe itself (the dashboard), and disputed top-ups taken back."""

from __future__ import annotations

from shared.auth import Caller
from shared.errors import ConflictError, ForbiddenError, InvalidRequestError
from shared.ledger import Cause
from shared.observability import logger
from shared.orgs.models import READ, BillingMode, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Notice
from shared.stripe_gateway import ChargeRefunds, Refund, StripeGateway
from shared.wallet.account import EntryKind
from shared.wallet.models import Allocation, RefundResult, StoredWallet, TopUp, TopUpSet, WalletChange
from shared.wallet.poster import WalletPoster, agency
from shared.wallet.repository import WalletRepository

_REFUNDABLE_METHODS = ("card", "auto_card", "ach")
MAX_REFUND_PAYMENTS = 90  # allocations per refund: each is an item of its one transaction (limit 100)
OUR_REFUND = "wallet_refund"  # metadata.reason of the refunds our support refund makes (in the ledger already)
_TAKEN = ("pending", "requires_action", "succeeded")  # the money is on its way back to the customer
_GIVEN_BACK = ("failed", "canceled")  # it came back to us


def allocate(amount_minor: int, topups: list[TopUp]) -> list[Allocation]:
    """Which card payments a refund goes back to: newest first, each at most what is left of it."""
    allocations, left = [], amount_minor
    for t in topups:
        take = min(left, t.refundable_minor)
        if take > 0:
            allocations.append(Allocation(t.topup_id, t.charge_id or "", take))
            left -= take
    return allocations


class WalletRefunds:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: WalletRepository,
        gateway: StripeGateway,
        poster: WalletPoster,
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._gateway = gateway
        self._poster = poster

    def refund(
        self, caller: Caller, org_id: str, *, amount_minor: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        """Refunds wallet money to the card payments it came from, newest first, never more than is
        refundable or than the balance. Support only. Idempotent by the request's key."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)
            raise ForbiddenError("Only Layers support can refund or withdraw wallet money.")
        org = self._orgs.access(caller, org_id, frozenset(), support=True).org
        if org.billing_mode is not BillingMode.AGENCY and self._repo.get(org_id) is None:
            agency(org)
        cause = f"wallet-refund:{idempotency_key}"
        if self._repo.cause(org_id, cause) is None:
            self._poster.post(org, lambda stored: self._refund_change(org, stored, amount_minor, reason, cause, caller))
        recorded = self._repo.cause(org_id, cause) or {}
        if sum(int(a["amount_minor"]) for a in recorded.get("allocations", [])) != amount_minor:
            raise ConflictError(
                "This Idempotency-Key was used for a refund of another amount; use a new key for a new refund.",
                code="idempotency_key_reused",
            )
        allocations = [Allocation(**a) for a in recorded.get("allocations", [])]
        sent = [a for a in allocations if self._send(org, a, cause)]
        return RefundResult(sum(a.amount_minor for a in sent), sent)

    def _send(self, org: Org, allocation: Allocation, cause: str) -> bool:
        """The Stripe refund of one allocation, after our ledger says so; keyed, so a retry never refunds
        twice. One Stripe refuses (the charge was disputed meanwhile, or is too old) is given back to the
        wallet, once: the ledger never says money left that did not."""
        try:
            self._gateway.refund(
                charge_id=allocation.charge_id,
                amount_minor=allocation.amount_minor,
                metadata={"org_id": org.org_id, "reason": OUR_REFUND},
                key=f"{cause}:{allocation.charge_id}",
            )
        except InvalidRequestError:
            logger.exception("Stripe refused a wallet refund", extra={"charge_id": allocation.charge_id})
            self._give_back(org, allocation, f"{cause}:refused:{allocation.charge_id}")
            return False
        return True

    def _give_back(self, org: Org, allocation: Allocation, cause: str) -> None:
        def build(stored: StoredWallet) -> WalletChange:
            topup = self._repo.topup(org.org_id, allocation.topup_id)
            refunded = max(0, (topup.refunded_minor if topup else 0) - allocation.amount_minor)
            after, movements, _ = stored.account.move((EntryKind.REFUND, allocation.amount_minor))
            return WalletChange(
                after,
                movements,
                entry={"ref": f"charge:{allocation.charge_id}", "actor": "stripe", "idempotency_key": cause},
                line_refs=[f"charge:{allocation.charge_id}"],
                cause=Cause(cause),
                records=[TopUpSet(allocation.topup_id, {"refunded_minor": refunded})],
            )

        self._poster.post(org, build)

    def _refund_change(
        self, org: Org, stored: StoredWallet, amount_minor: int, reason: str, cause: str, caller: Caller
    ) -> WalletChange:
        topups = self._refundable(org.org_id)
        refundable = sum(t.refundable_minor for t in topups)
        free = stored.account.balance - stored.account.held  # what running holds reserve stays
        most = min(refundable, free)
        if amount_minor > most:
            raise InvalidRequestError(
                f"At most {max(most, 0)} can be refunded "
                f"(refundable card payments {refundable}, balance {stored.account.balance} "
                f"of which {stored.account.held} is held for running ads).",
                code="refund_exceeds_refundable",
            )
        allocations = allocate(amount_minor, topups)
        if len(allocations) > MAX_REFUND_PAYMENTS:  # one transaction: DynamoDB takes 100 items at most
            at_once = sum(a.amount_minor for a in allocations[:MAX_REFUND_PAYMENTS])
            raise InvalidRequestError(
                f"This refund would go back to {len(allocations)} card payments; one request refunds to at "
                f"most {MAX_REFUND_PAYMENTS} ({at_once} at most now). Refund in parts.",
                code="refund_too_many_payments",
                details={"max_amount_minor": at_once},
            )
        refunded = {t.topup_id: t.refunded_minor for t in topups}
        after, movements, _ = stored.account.move(*[(EntryKind.REFUND, -a.amount_minor) for a in allocations])
        kept = [{"topup_id": a.topup_id, "charge_id": a.charge_id, "amount_minor": a.amount_minor} for a in allocations]
        return WalletChange(
            after,
            movements,
            entry={"actor": caller.user_id, "idempotency_key": cause, "reason": reason},
            line_refs=[f"charge:{a.charge_id}" for a in allocations],
            cause=Cause(cause, {"allocations": kept, "reason": reason}),
            records=[
                TopUpSet(a.topup_id, {"refunded_minor": refunded[a.topup_id] + a.amount_minor}) for a in allocations
            ],
        )

    def _refundable(self, org_id: str) -> list[TopUp]:
        found = [
            t
            for t in self._repo.topups(org_id)
            if t.status == "succeeded" and t.charge_id and t.method in _REFUNDABLE_METHODS and t.refundable_minor
        ]
        return sorted(found, key=lambda t: t.credited_at or "", reverse=True)

    def dispute(self, *, charge_id: str, dispute_id: str, amount_minor: int) -> bool:
        """A disputed top-up: a compensating debit, once per dispute, and a notification."""
        link = self._repo.charge_link(charge_id)
        if link is None:
            return False
        org = self._org_repo.require_org(link[0])
        told = Notice(
            "Wallet.TopUpDisputed",
            "Layers: a wallet top-up was disputed",
            "A disputed top-up was taken back from your ad wallet.",
            {"charge_id": charge_id, "amount_minor": amount_minor},
        )

        def build(stored: StoredWallet) -> WalletChange:
            topup = self._repo.topup(org.org_id, link[1])
            disputed = {"disputed_minor": (topup.disputed_minor if topup else 0) + amount_minor}
            after, movements, _ = stored.account.move((EntryKind.REVERSAL, -amount_minor))
            meta = {"ref": f"dispute:{dispute_id}", "actor": "stripe", "idempotency_key": f"dispute:{dispute_id}"}
            return WalletChange(
                after,
                movements,
                entry=meta,
                cause=Cause(f"dispute:{dispute_id}"),
                records=[TopUpSet(link[1], disputed)],
                messages=[told],
            )

        posted = self._poster.post(org, build)
        return bool(posted and not posted.replay)

    def refunds_in_stripe(self, charge: ChargeRefunds) -> int:
        """Refunds made outside our API (Stripe's dashboard) of a charge that paid a top-up, as Stripe has
        them now: each is taken from the wallet once (a refund line, caused by the refund's id), and given
        back once if it fails or is canceled later. Ours are in the ledger already. Returns the entries."""
        link = self._repo.charge_link(charge.charge_id)
        if link is None:
            return 0
        org = self._org_repo.require_org(link[0])
        if charge.customer_id != org.stripe_customer_id:
            return 0
        moved = 0
        for refund in charge.refunds:
            if refund.currency != charge.currency:
                continue
            ours = refund.metadata.get("reason") == OUR_REFUND  # taken by our support refund's own entry
            if refund.status in _TAKEN and not ours:
                moved += self._reflect(org, link[1], refund, taken=True)
            elif refund.status in _GIVEN_BACK and (ours or self._repo.cause(org.org_id, _refund_cause(refund, True))):
                moved += self._reflect(org, link[1], refund, taken=False)
        return moved

    def _reflect(self, org: Org, topup_id: str, refund: Refund, *, taken: bool) -> int:
        amount = -refund.amount_minor if taken else refund.amount_minor

        def build(stored: StoredWallet) -> WalletChange:
            topup = self._repo.topup(org.org_id, topup_id)
            refunded = max(0, (topup.refunded_minor if topup else 0) - amount)
            after, movements, _ = stored.account.move((EntryKind.REFUND, amount))
            cause = _refund_cause(refund, taken)
            return WalletChange(
                after,
                movements,
                entry={"ref": f"refund:{refund.refund_id}", "actor": "stripe", "idempotency_key": cause},
                line_refs=[f"charge:{refund.charge_id}"],
                cause=Cause(cause, {"refund_id": refund.refund_id, "amount_minor": refund.amount_minor}),
                records=[TopUpSet(topup_id, {"refunded_minor": refunded})],
            )

        posted = self._poster.post(org, build)
        return int(bool(posted and not posted.replay))

    def dispute_won(self, *, charge_id: str, dispute_id: str, amount_minor: int) -> bool:
        """A dispute the org won (Stripe reinstated the funds): the reversal is given back, once."""
        link = self._repo.charge_link(charge_id)
        if link is None or self._repo.cause(link[0], f"dispute:{dispute_id}") is None:
            return False  # never taken from this wallet
        org = self._org_repo.require_org(link[0])

        def build(stored: StoredWallet) -> WalletChange:
            topup = self._repo.topup(org.org_id, link[1])
            disputed = {"disputed_minor": max(0, (topup.disputed_minor if topup else 0) - amount_minor)}
            after, movements, _ = stored.account.move((EntryKind.REVERSAL, amount_minor))
            cause = f"dispute-won:{dispute_id}"
            meta = {"ref": f"dispute:{dispute_id}", "actor": "stripe", "idempotency_key": cause}
            return WalletChange(after, movements, entry=meta, cause=Cause(cause), records=[TopUpSet(link[1], disputed)])

        posted = self._poster.post(org, build)
        return bool(posted and not posted.replay)


def _refund_cause(refund: Refund, taken: bool) -> str:
    return f"stripe-refund:{refund.refund_id}" if taken else f"stripe-refund-given-back:{refund.refund_id}"
