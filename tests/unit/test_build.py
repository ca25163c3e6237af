"""The build's shape (issue 11, part 7): one dependencies layer, functions that ship only our code, and
a Makefile target for every resource SAM builds, with no Makefile edit for a new function."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.local.cfn import load_template

REPO = Path(__file__).parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function")
LAYERS = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::LayerVersion")


def test_one_dependencies_layer_for_every_function() -> None:
    assert LAYERS == ["DependenciesLayer"]
    layer = RESOURCES["DependenciesLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    props = layer["Properties"]
    assert (props["CompatibleRuntimes"], props["CompatibleArchitectures"]) == (["python3.12"], ["arm64"])
    assert TEMPLATE["Globals"]["Function"]["Layers"] == [{"Ref": "DependenciesLayer"}]
    for name in FUNCTIONS:  # a function's own Layers would be added to Globals' (SAM appends lists)
        assert "Layers" not in RESOURCES[name]["Properties"], name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_is_built_by_the_makefile(name: str) -> None:
    assert RESOURCES[name]["Metadata"]["BuildMethod"] == "makefile"
    assert RESOURCES[name]["Properties"]["CodeUri"] == "."  # handlers are functions/<fn>/handler.py


def test_sam_builds_in_source() -> None:
    """Otherwise SAM's makefile builder copies the repository (virtualenvs, node_modules) per resource."""
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["default"]["build"]["parameters"]["build_in_source"] is True


@pytest.mark.parametrize("name", [*LAYERS, *FUNCTIONS, "SomeNewFunction"])
def test_make_has_a_build_target_for(name: str, tmp_path: Path) -> None:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", f"build-{name}", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--invalidation-mode unchecked-hash" in out.stdout  # bytecode, as the read-only runtime needs
    if name in LAYERS:
        assert f"-t {tmp_path}/python" in out.stdout and "--python-version 3.12" in out.stdout
    else:  # our code only: no dependency install
        assert "pip install" not in out.stdout and "cp -r functions shared" in out.stdout
