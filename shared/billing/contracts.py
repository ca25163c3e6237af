"""`PUT /v1/orgs/{id}/plan`: a plan is what Stripe bills. A paid catalog plan starts through Checkout
(409 subscription_required here); Free is a cancellation at the period's end, through Stripe; the custom
plan (Enterprise) is a contract that support sets, which creates the org's own Stripe price and a
subscription invoiced to the customer (net terms) or charged to its card."""

from __future__ import annotations

import hashlib
import json

from shared.auth import Caller
from shared.billing.prices import PriceRef
from shared.billing.subscriptions import SubscriptionMirror
from shared.catalog import Plan, PlanCatalog
from shared.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from shared.orgs.models import MANAGE_BILLING, EnterpriseTerms, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService, OrgView
from shared.stripe_gateway import StripeGateway


def contract_ref(org: Org, plan: Plan, terms: EnterpriseTerms) -> PriceRef:
    """The org's own base price for these terms: the same terms give the same price (and the same Stripe
    requests: a retried contract creates nothing twice); new terms give a new one."""
    digest = hashlib.sha256(f"{org.org_id}|{json.dumps(terms.model_dump(mode='json'), sort_keys=True)}".encode())
    return PriceRef(f"contract-{digest.hexdigest()[:16]}", plan.plan_id, org.currency, "base")


class Contracts:
    def __init__(
        self,
        orgs: OrgService,
        repo: OrgRepository,
        gateway: StripeGateway,
        plans: PlanCatalog,
        mirror: SubscriptionMirror,
    ):
        self._orgs = orgs
        self._repo = repo
        self._gateway = gateway
        self._plans = plans
        self._mirror = mirror

    def set_terms(self, caller: Caller, org_id: str, plan: Plan, terms: EnterpriseTerms | None) -> OrgView:
        """Support sets (or changes) the org's contract. A new contract starts a Stripe subscription now;
        changed terms switch its base price with Stripe's prorations (the rest of the period at the new
        fee on the next invoice); limits and the fee follow at once, included credits from the next period."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, MANAGE_BILLING)  # non-members: 404 first
            raise ForbiddenError(
                f"The {plan.name} plan and custom terms are set by Layers sales.", code="plan_requires_sales"
            )
        if not plan.custom:
            raise InvalidRequestError("Custom terms apply only to a custom plan.", code="terms_not_allowed")
        if terms is None:
            raise InvalidRequestError(f"The {plan.name} plan needs its terms.", code="terms_required")
        org = self._orgs.access(caller, org_id, frozenset(), support=True).org
        live = org.subscription if org.has_live_subscription else None
        if live is not None and not self._plans.get(live.plan_id).custom:
            raise ConflictError(
                f"The org pays for {live.plan_id} through its own subscription: it must end (cancel it) before a "
                "contract starts.",
                code="subscription_exists",
            )
        if terms.collection == "charge_automatically" and not (
            org.stripe_customer_id and self._gateway.default_card(org.stripe_customer_id)
        ):
            raise ConflictError(
                "Charging a contract automatically needs a saved card: the customer adds one first (or the "
                "contract is invoiced: collection send_invoice).",
                code="no_saved_card",
            )
        contracted = org.model_copy(update={"plan_id": plan.plan_id, "enterprise_terms": terms})
        effective = contracted.effective_plan(plan)
        effective.price_book(org.currency)
        self._orgs.check_fits(org, effective)
        ref = contract_ref(org, plan, terms)
        self._store_terms(org_id, terms)
        try:
            price = self._gateway.price_id(
                ref.lookup_key,
                product_name=f"Layers {plan.name} ({org.name})",
                unit_amount_minor=terms.base_minor,
                currency=org.currency,
                metadata={"plan_id": plan.plan_id, "kind": "base", "org_id": org_id},
            )
            sub_id = (
                self._start(org, terms, price, ref) if live is None else self._switch(org, live.subscription_id, price)
            )
        except Exception:
            self._store_terms(org_id, org.enterprise_terms)  # refused: the terms stay what they were
            raise
        fetched = self._mirror.now_ms()
        # Mirrored from a fresh read: an update replayed by its idempotency key returns its old response.
        mirrored = self._mirror.apply(org_id, self._gateway.get_subscription(sub_id), fetched)
        mirrored = mirrored or self._repo.get_org(org_id)
        if mirrored is None:
            raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
        return self._orgs.view(mirrored, None)

    def _store_terms(self, org_id: str, terms: EnterpriseTerms | None) -> None:
        self._repo.set_enterprise_terms(org_id, terms.model_dump(mode="json") if terms else None)

    def _start(self, org: Org, terms: EnterpriseTerms, price: str, ref: PriceRef) -> str:
        """A new subscription. Its key names the org's last mirrored state: a retry of this request gets
        Stripe's first answer; a contract signed again after one ended makes a new subscription."""
        customer = org.stripe_customer_id or self._repo.link_stripe_customer(
            org.org_id, self._gateway.create_customer(org_id=org.org_id, name=org.name, email=None)
        )
        return self._gateway.create_contract_subscription(
            customer_id=customer,
            price_id=price,
            collection=terms.collection,
            days_until_due=terms.days_until_due,
            metadata={"org_id": org.org_id, "plan_id": ref.plan_id},
            key=f"contract:{org.org_id}:{ref.catalog_version}:{org.subscription_synced_ms}",
        ).subscription_id

    def _switch(self, org: Org, subscription_id: str, price: str) -> str:
        """The contract's price on its subscription, prorated; nothing to do when it is already the price."""
        sub = self._gateway.get_subscription(subscription_id)
        base = next(i for i in sub.items if (r := PriceRef.parse(i.lookup_key)) and r.kind == "base")
        if base.price_id == price:
            return subscription_id
        self._gateway.update_subscription(
            subscription_id,
            items=[{"id": base.item_id, "price": price}],
            metadata={"org_id": org.org_id, "plan_id": "enterprise"},
            proration_behavior="create_prorations",
            proration_date=None,
            key=f"contract:{org.org_id}:{subscription_id}:{price}:{org.subscription_synced_ms}",
        )
        return subscription_id


class PlanRequests:
    """What `PUT /plan` asks for, sent where Stripe decides it."""

    def __init__(
        self,
        orgs: OrgService,
        contracts: Contracts,
        gateway: StripeGateway,
        plans: PlanCatalog,
        mirror: SubscriptionMirror,
    ):
        self._orgs = orgs
        self._contracts = contracts
        self._gateway = gateway
        self._plans = plans
        self._mirror = mirror

    def set_plan(self, caller: Caller, org_id: str, *, plan_id: str, terms: EnterpriseTerms | None) -> OrgView:
        plan = self._plans.get(plan_id)
        if plan.custom or terms is not None:
            return self._contracts.set_terms(caller, org_id, plan, terms)
        access = self._orgs.access(caller, org_id, MANAGE_BILLING)
        org = access.org
        if plan.plan_id == self._plans.free.plan_id:
            return self._orgs.view(self._cancel_at_period_end(org), access.role)
        if org.has_live_subscription:
            raise ConflictError(
                "The org pays through a Stripe subscription: change its plan with PUT /v1/orgs/{org_id}/subscription.",
                code="use_subscription",
            )
        raise ConflictError(
            f"{plan.name} is a paid plan: subscribe with POST /v1/orgs/{{org_id}}/subscription/checkout; the plan "
            "starts when Stripe says it is paid.",
            code="subscription_required",
            details={"plan_id": plan.plan_id},
        )

    def _cancel_at_period_end(self, org: Org) -> Org:
        """Free from the end of the paid period: the org keeps what it paid for (its plan's limits and
        included credits) until then. Nothing to do without a live subscription, or when already asked."""
        sub = org.subscription
        if not org.has_live_subscription or sub is None or sub.cancel_at_period_end:
            return org
        # Keyed by the state it changes (a customer who un-cancels in the portal may cancel again).
        key = f"cancel:{org.org_id}:{sub.subscription_id}:{org.subscription_synced_ms}"
        self._gateway.cancel_at_period_end(sub.subscription_id, key=key)
        fetched = self._mirror.now_ms()
        return self._mirror.apply(org.org_id, self._gateway.get_subscription(sub.subscription_id), fetched) or org
