"""One way to take in records arriving as EventBridge events (platform bills, usage events): the event
parsed by Powertools' parser into its model, applied by the services, counted in a metric; a refusal that
a retry would meet again (the services' InvalidRequestError, NotFoundError, ...) is final: logged, counted
in its own metric (alarmed in template.yaml) and answered, never raised (EventBridge would retry it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.deadline import within_lambda_time
from shared.errors import DomainError
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wiring import Services, build_services

M = TypeVar("M", bound=EventBridgeModel)
Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


@dataclass(frozen=True)
class Ingested:
    """What applying an event did: the handler's answer, how many records counted, and how many were
    refused one by one (logged with `refusals`)."""

    answer: dict[str, Any]
    counted: int
    refused: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Ingest(Generic[M]):
    """One ingest function: its model, what applying it does, its metrics and its final refusals."""

    model: type[M]
    apply: Callable[[Services, M], Ingested]
    counted_metric: str
    refused_metric: str
    refusals: tuple[type[DomainError], ...]
    about: Callable[[M], dict[str, Any]]  # what the log says of a refused event
    records: Callable[[M], int] = lambda _: 1  # how many records a wholly refused event carried


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


def ingest_handler(ingest: Ingest[M]) -> Handler:
    """The Lambda handler of `ingest`, with the functions' logging, tracing, metrics and deadline."""

    @logger.inject_lambda_context(log_event=False)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @within_lambda_time
    @event_parser(model=ingest.model)
    def lambda_handler(event: M, context: LambdaContext) -> dict[str, Any]:
        try:
            done = ingest.apply(services(), event)
        except ingest.refusals as refused:
            logger.error(
                "ingest refused", extra={"code": refused.code, "reason": refused.message, **ingest.about(event)}
            )
            metrics.add_metric(name=ingest.refused_metric, unit=MetricUnit.Count, value=ingest.records(event))
            return {"refused": refused.code, "message": refused.message, **ingest.about(event)}
        if done.refused:
            logger.error("ingest refused some records", extra={"refused": done.refusals, **ingest.about(event)})
            metrics.add_metric(name=ingest.refused_metric, unit=MetricUnit.Count, value=done.refused)
        metrics.add_metric(name=ingest.counted_metric, unit=MetricUnit.Count, value=done.counted)
        return done.answer

    return lambda_handler
