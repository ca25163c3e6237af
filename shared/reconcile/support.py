"""What people and feeds read and write of reconciliation, without Stripe: support's view of an org's
discrepancies, the platforms' spend reports, and the spend they reported that no bill covers yet."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from shared.auth import Caller
from shared.errors import ForbiddenError, InvalidRequestError, NotFoundError
from shared.orgs.models import READ, BillingMode
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.pagination import Page
from shared.reconcile import checks
from shared.reconcile.models import Discrepancy, SpendReport
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.service import SPEND_RECHECK_DAYS, billed_by_day
from shared.wallet.platforms import platform_name


class ReconcileDesk:
    def __init__(self, orgs: OrgService, org_repo: OrgRepository, repo: ReconcileRepository):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo

    def discrepancies(
        self, caller: Caller, org_id: str, status: str | None, cursor: str | None, limit: int
    ) -> Page[Discrepancy]:
        """The org's discrepancies, open and resolved, for Layers support only: NotFoundError (404) for a
        stranger or an unknown org, ForbiddenError (403) for the org's own members."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)
            raise ForbiddenError("Only Layers support can read reconciliation discrepancies.")
        self._orgs.access(caller, org_id, frozenset(), support=True)
        return self._repo.of_org(org_id, cursor, limit, status)

    def report_spend(self, report: SpendReport) -> bool:
        """Keeps a platform's spend report (the latest per day, platform and project); False if a later
        one is kept already. NotFoundError if the org does not exist; InvalidRequestError (unknown_platform)
        for a platform not in the registry; NotFoundError (project_not_found) for a project the org does not
        have; InvalidRequestError (currency_mismatch) for a report not in the org's currency."""
        platform_name(report.platform)
        org = self._org_repo.require_org(report.org_id)
        if self._org_repo.get_project(report.org_id, report.project_id) is None:
            raise NotFoundError(f"Project {report.project_id} was not found.", code="project_not_found")
        if report.currency.upper() != org.currency.upper():
            raise InvalidRequestError(
                f"The org is billed in {org.currency}, the report is in {report.currency}: a report is "
                "compared with bills in the org's own currency.",
                code="currency_mismatch",
            )
        return self._repo.put_report(replace(report, agency=org.billing_mode is BillingMode.AGENCY))

    def unbilled_spend(self, org_id: str, today: date) -> int:
        """Spend the platforms reported over the last days that no bill covers yet (in the runway)."""
        first = (today - timedelta(days=SPEND_RECHECK_DAYS)).isoformat()
        reports = self._repo.reports(org_id, first, (today + timedelta(days=1)).isoformat())
        if not reports:
            return 0
        return checks.unbilled_spend(reports, billed_by_day(self._repo.entry_lines_since(org_id, first)))
