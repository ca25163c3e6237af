"""Every line the renewal can bill for an allowance (its own and its late carry, `<metric>_late`) has a
name and a unit on our invoice: a late media-storage peak is in GB like the period's own."""

from __future__ import annotations

import pytest

from shared.invoices.figures import METRICS, metric_unit
from shared.usage.service import STORAGE


@pytest.mark.parametrize("metric", ["workflow_runs", "sdk_events", STORAGE])
def test_an_allowance_and_its_late_carry_are_named_in_the_same_unit(metric: str) -> None:
    late = f"{metric}_late"
    assert metric in METRICS and late in METRICS
    assert metric_unit(late) == metric_unit(metric) is not None
