"""The benchmark code keeps working: a tiny run produces the table's JSON with all ten groups.
No timing is asserted (timings belong to `make bench`, not to tests). The build group runs at its tiny
scale too (`--build make`: one function's make target, seconds), not the whole `sam build`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_quick_bench_writes_all_ten_groups(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "tests.bench.run", "--quick", "--build", "make", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "group" in run.stdout and "met?" in run.stdout
    results = json.loads(out.read_text())
    groups = results["groups"]
    assert sorted(int(name.split()[0]) for name in groups) == list(range(1, 11))
    for name, group in groups.items():
        assert group["figures"], name
        for figure_name, figure in group["figures"].items():
            assert isinstance(figure["value"], int | float) and math.isfinite(figure["value"]), (name, figure_name)
            assert set(figure) >= {"value", "unit", "baseline", "baseline_unit", "ratio", "target", "met"}
    build = groups["8 sam build"]["figures"]
    artifacts = [figure for name, figure in build.items() if name.endswith("(unzipped)")]
    assert artifacts and all(figure["met"] for figure in artifacts), build  # a function ships only our code
