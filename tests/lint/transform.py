"""The SAM transform CloudFormation runs at deploy time, run offline on template.yaml.

`cfn-lint` 1.x validates a SAM template against schemas and never runs the transform, and
`sam validate --lint` only runs cfn-lint, so both pass templates a deploy refuses. This runs the real
translator (`samtranslator`, the code behind `AWS::Serverless-2016-10-31`) with no AWS credentials and
writes the CloudFormation it produces, which `make lint` then lints with cfn-lint and our own rules
(`tests/lint/rules/`).

samtranslator pins pydantic below the version the project runs on, so this runs in the SAM CLI's
virtualenv (`.venv-sam/bin/python -m tests.lint.transform`): it imports nothing of the project.

What `sam package` would do first is done here too: local `CodeUri` / `ContentUri` become S3
locations, and a state machine's local `DefinitionUri` is inlined as `Definition` (so cfn-lint also
checks the state machine's definition).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
PLACEHOLDER_S3 = "s3://layers-billing-artifacts/placeholder.zip"
# Names of AWS managed policies the template may use in `Policies` (SAM resolves names to ARNs with an
# IAM call at deploy time; offline we know them). An unknown name fails the transform, as it would live.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "CloudWatchLogsFullAccess": "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess",
}


class TransformError(Exception):
    """The transform refused the template, as a deploy would."""


def _package_locally(template: dict[str, Any], base: Path) -> None:
    """What `sam package` does before the transform: local paths become S3 URIs or inline definitions."""
    resources: dict[str, Any] = template.get("Resources", {})
    for resource in resources.values():
        props = resource.get("Properties") or {}
        match resource.get("Type"):
            case "AWS::Serverless::Function" if props.get("PackageType", "Zip") == "Zip":
                props["CodeUri"] = PLACEHOLDER_S3
            case "AWS::Serverless::LayerVersion":
                props["ContentUri"] = PLACEHOLDER_S3
            case "AWS::Serverless::StateMachine" if isinstance(props.get("DefinitionUri"), str):
                props["Definition"] = json.loads((base / props.pop("DefinitionUri")).read_text(encoding="utf-8"))
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = PLACEHOLDER_S3


def transform(template_text: str, base: Path = REPO, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template `template_text` (SAM YAML) becomes; TransformError if SAM refuses it."""
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.yaml_helper import yaml_parse

    try:
        template = yaml_parse(template_text)
    except Exception as exc:  # yaml's errors: a deploy refuses the document as well
        raise TransformError(f"not a YAML template: {exc}") from exc
    _package_locally(template, base)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    try:
        result: dict[str, Any] = translator.translate(
            template, parameter_values=dict(parameters or {}), get_managed_policy_map=lambda: MANAGED_POLICIES
        )
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in exc.causes)
        raise TransformError(f"{exc.message} {causes}".strip()) from exc
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path, nargs="?", default=REPO / "template.yaml")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the CloudFormation JSON")
    parser.add_argument("--base", type=Path, help="what local paths are relative to (default: the template's folder)")
    args = parser.parse_args(argv)
    base = args.base or args.template.resolve().parent
    try:
        result = transform(args.template.read_text(encoding="utf-8"), base=base)
    except TransformError as exc:
        print(f"{args.template}: the SAM transform refuses it (a deploy would fail): {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
