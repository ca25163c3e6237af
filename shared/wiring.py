"""Builds the services from settings: one place that knows every collaborator (used by each
function's container, so functions stay thin and tests can build the same graph)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import get_secret

from shared.billing.contracts import Contracts, PlanRequests
from shared.billing.dunning import DunningNotices
from shared.billing.prices import StripePrices
from shared.billing.refunds import DowngradeRefunds, RefundPlanRepository
from shared.billing.subscriptions import SeatSync, SubscriptionMirror, SubscriptionService
from shared.billing.webhooks import MoneySide, StripeEventHandler, SubscriptionSide
from shared.budgets.repository import BudgetRepository
from shared.budgets.service import BudgetService
from shared.catalog import plan_catalog, template_catalog
from shared.clock import Clock, SystemClock
from shared.credits.repository import CreditRepository
from shared.credits.service import CreditService
from shared.dynamo import dynamodb_resource
from shared.invoices.credit_notes import CreditNoteDeps, CreditNoteRepository, CreditNoteService
from shared.invoices.repository import DocumentStore, InvoiceRepository
from shared.invoices.service import InvoiceService, InvoiceSources
from shared.invoices.statements import StatementDeps, StatementService, StatementSettingsRepository
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import OutboxWriter
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.support import ReconcileDesk
from shared.settings import ApiSettings, StripeSecret
from shared.stripe_gateway import StripeGateway, StripeKeys
from shared.usage.billing import OverageBilling
from shared.usage.metering import UsageMeter
from shared.usage.repository import UsageRepository
from shared.usage.service import UsageService
from shared.wallet.repository import WalletRepository
from shared.wallet.service import WalletService


@dataclass(frozen=True)
class Services:
    orgs: OrgService
    subscriptions: SubscriptionService
    plan_requests: PlanRequests
    dunning: DunningNotices
    stripe_events: StripeEventHandler
    credits: CreditService
    budgets: BudgetService
    usage: UsageService
    wallet: WalletService
    invoices: InvoiceService
    credit_notes: CreditNoteService
    statements: StatementService


def stripe_keys(secret_arn: str | None) -> Callable[[], StripeKeys]:
    """Reads the Stripe secret when the gateway first calls Stripe: functions that never do never read it
    (and are not allowed to: template.yaml gives the secret only to the functions that call Stripe)."""

    def fetch() -> StripeKeys:
        if not secret_arn:
            raise RuntimeError("This function has no Stripe access: STRIPE_SECRET_ARN is not set (template.yaml)")
        secret = StripeSecret.model_validate(get_secret(secret_arn, transform="json", max_age=300))
        return StripeKeys(secret.api_key, secret.webhook_secret)

    return fetch


def build_services(
    settings: ApiSettings,
    *,
    clock: Clock | None = None,
    table: Any | None = None,
    gateway: StripeGateway | None = None,
    documents: DocumentStore | None = None,
) -> Services:
    """The service graph. In a function every collaborator comes from `settings`; tests pass their own
    clock (periods, expiry), table, gateway or document store and get the same graph."""
    if gateway is None:
        gateway = StripeGateway.from_keys(stripe_keys(settings.stripe_secret_arn), api_base=settings.stripe_api_base)
    if table is None:
        table = dynamodb_resource().Table(settings.table_name)
    clock = clock or SystemClock()
    if documents is None:
        documents = DocumentStore(boto3.client("s3"), settings.documents_bucket)
    repo, plans = OrgRepository(table), plan_catalog()
    prices = StripePrices(gateway, plans)
    outbox = OutboxWriter(table, clock)
    dunning = DunningNotices(repo, outbox, plans, clock)
    mirror = SubscriptionMirror(repo, plans, clock, dunning)
    orgs = OrgService(repo, plans, clock)
    credit_repo, wallet_repo = CreditRepository(table), WalletRepository(table)
    budgets = BudgetService(orgs, repo, BudgetRepository(table), clock)
    usage_repo = UsageRepository(table)
    meter = UsageMeter(orgs, repo, usage_repo, clock)
    credits = CreditService(orgs, repo, credit_repo, plans, template_catalog(), clock, budgets, meter)
    usage = UsageService(orgs, repo, credit_repo, plans, clock, meter, usage_repo)
    mirror.plan_changed = usage.plan_changed
    wallet = WalletService(orgs, repo, wallet_repo, gateway, clock, budgets)
    wallet.unbilled_spend = ReconcileDesk(orgs, repo, ReconcileRepository(table)).unbilled_spend
    subscription_side = SubscriptionSide(
        mirror,
        SeatSync(repo, gateway, prices, plans, mirror),
        DowngradeRefunds(RefundPlanRepository(table), gateway, clock),
    )
    money_side = MoneySide(credits, OverageBilling(orgs, repo, credit_repo, usage, gateway), wallet)
    sources = InvoiceSources(credit_repo, wallet_repo, usage)
    invoices = InvoiceService(orgs, repo, InvoiceRepository(table), sources, gateway, documents, clock)
    statement_deps = StatementDeps(
        invoices, InvoiceRepository(table), credit_repo, StatementSettingsRepository(table), documents
    )
    return Services(
        orgs=orgs,
        subscriptions=SubscriptionService(orgs, repo, gateway, prices, plans, mirror, clock),
        plan_requests=PlanRequests(orgs, Contracts(orgs, repo, gateway, plans, mirror), gateway, plans, mirror),
        dunning=dunning,
        # events and notifications leave through the outbox only
        stripe_events=StripeEventHandler(repo, gateway, subscription_side, money_side, outbox),
        credits=credits,
        budgets=budgets,
        usage=usage,
        wallet=wallet,
        invoices=invoices,
        credit_notes=CreditNoteService(
            orgs, repo, CreditNoteDeps(CreditNoteRepository(table), invoices, wallet, gateway, documents), clock
        ),
        statements=StatementService(orgs, repo, statement_deps, clock),
    )
