"""The reconciliation's service graph, built on the functions' own (shared/wiring.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.clock import Clock, SystemClock
from shared.credits.repository import CreditRepository
from shared.dynamo import dynamodb_resource
from shared.invoices.repository import DocumentStore, InvoiceRepository
from shared.orgs.repository import OrgRepository
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.run import ReconcileRun
from shared.reconcile.service import Books, Reconciler
from shared.reconcile.stripe_reads import DEFAULT_READS_PER_S, RateLimiter, StripeReads
from shared.reconcile.support import ReconcileDesk
from shared.settings import ApiSettings
from shared.stripe_gateway import StripeGateway
from shared.usage.billing import OverageBilling
from shared.wallet.repository import WalletRepository
from shared.wiring import Services, build_services, stripe_keys


@dataclass(frozen=True)
class Reconciliation:
    reconciler: Reconciler
    run: ReconcileRun
    repo: ReconcileRepository
    services: Services
    desk: ReconcileDesk


def build_reconciliation(
    settings: ApiSettings,
    *,
    due_orgs: Any = None,
    clock: Clock | None = None,
    table: Any | None = None,
    gateway: StripeGateway | None = None,
    reads_per_s: float = DEFAULT_READS_PER_S,
    documents: DocumentStore | None = None,
) -> Reconciliation:
    """`due_orgs(day)`: the orgs the invoice run took that day (its due list); none if not given. `documents`:
    the services' document store, as `build_services` takes it (tests pass their own)."""
    if gateway is None:
        gateway = StripeGateway.from_keys(stripe_keys(settings.stripe_secret_arn), api_base=settings.stripe_api_base)
    if table is None:
        table = dynamodb_resource().Table(settings.table_name)
    clock = clock or SystemClock()
    services = build_services(settings, clock=clock, table=table, gateway=gateway, documents=documents)
    orgs = OrgRepository(table)
    overage = OverageBilling(services.orgs, orgs, CreditRepository(table), services.usage, gateway)
    repo, wallet = ReconcileRepository(table), WalletRepository(table)
    reads = StripeReads(gateway, RateLimiter(reads_per_s))
    books = Books(orgs, wallet, InvoiceRepository(table), repo)
    reconciler = Reconciler(services.orgs, books, services.wallet, overage, reads, clock)
    run = ReconcileRun(reconciler, repo, wallet, reads, due_orgs or (lambda day: []))
    return Reconciliation(reconciler, run, repo, services, ReconcileDesk(services.orgs, orgs, repo))
