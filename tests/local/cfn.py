"""Read template.yaml the way CloudFormation/SAM would, for the local stack.

The template is the single source of truth: local tables, resource names and function environments are
derived from it here, so local runs cannot drift from what is deployed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REPO = Path(__file__).resolve().parents[2]
STACK_NAME = "layers-billing-local"
REGION = "us-east-1"
ACCOUNT = "123456789012"

# Short tags whose long form is "Fn::<Name>"; Ref and Condition have no "Fn::" prefix.
_FN_TAGS = ["And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "GetAtt", "If", "ImportValue"]
_FN_TAGS += ["Join", "Length", "Not", "Or", "Select", "Split", "Sub", "ToJsonString", "Transform"]


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short-form intrinsic tags."""


def _node_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _register(tag: str, key: str) -> None:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = _node_value(loader, node)
        # !GetAtt Res.Attr is the short form of ["Res", "Attr"] (attribute names may contain dots).
        if key == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {key: value}

    _CfnLoader.add_constructor(f"!{tag}", construct)


_register("Ref", "Ref")
_register("Condition", "Condition")
for _tag in _FN_TAGS:
    _register(_tag, f"Fn::{_tag}")


def load_template(path: Path = REPO / "template.yaml") -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # a SafeLoader subclass
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == type_}


# ------------------------------------------------------------------------------------------- tables


def create_tables(client: DynamoDBClient, template: dict[str, Any]) -> list[str]:
    """Create every AWS::DynamoDB::Table of `template` (TableName = logical id); skip existing ones.

    Returns the names of all the template's tables. Only keys, indexes and TTL matter locally; billing
    mode is always on-demand (so GSIs take no ProvisionedThroughput).
    """
    existing: set[str] = set()
    for page in client.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    names: list[str] = []
    for name, resource in _resources(template, "AWS::DynamoDB::Table").items():
        names.append(name)
        if name in existing:
            continue
        props = resource.get("Properties", {})
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        indexes = [
            {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
            for i in props.get("GlobalSecondaryIndexes", [])
        ]
        if indexes:
            kwargs["GlobalSecondaryIndexes"] = indexes
        if "LocalSecondaryIndexes" in props:
            kwargs["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        client.create_table(**kwargs)
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled", False):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    return names


# ---------------------------------------------------------------------------------- names and values


def _pseudo(region: str, account: str) -> dict[str, str]:
    return {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": STACK_NAME,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def resolve(value: Any, template: dict[str, Any], names: dict[str, str]) -> str:
    """Resolve a template value (plain scalar, Ref, GetAtt, Sub) to a local string.

    `names` maps logical ids (and optionally "Id.Attr" for GetAtt) to local names/ARNs; pseudo
    parameters (AWS::Region, AWS::StackName...) are known. Anything else is an error: better to fail
    than to hand a function a dict as a string.
    """
    params = template.get("Parameters", {})
    names = {**_pseudo(REGION, ACCOUNT), **names}

    def lookup(ref: str) -> str:
        if ref in params:
            return str(params[ref].get("Default", ""))
        if ref in names:
            return names[ref]
        if "." in ref and ref.split(".", 1)[0] in names:  # ${Res.Attr} in Sub, GetAtt without override
            return names[ref.split(".", 1)[0]]
        raise KeyError(f"cannot resolve {ref!r} locally")

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return lookup(arg)
        if fn == "Fn::GetAtt":
            return lookup(".".join(arg))
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            local = {k: resolve(v, template, names) for k, v in extra.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: local.get(m[1]) or lookup(m[1]), text)
    raise ValueError(f"unsupported template value locally: {value!r}")


def local_resource_names(template: dict[str, Any], region: str = REGION, account: str = ACCOUNT) -> dict[str, str]:
    """Logical id -> what !Ref yields locally (a table's name, a bucket's name, a topic's ARN...)."""
    names: dict[str, str] = {}
    pseudo = _pseudo(region, account)
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {}) or {}
        match resource.get("Type"):
            case "AWS::S3::Bucket":
                # Bucket names must be lower-case and globally unique; the stack prefix keeps them apart.
                names[logical_id] = f"layers-billing-{logical_id.lower()}"
            case "AWS::Events::EventBus":
                names[logical_id] = resolve(props.get("Name", logical_id), template, {**pseudo, **names})
            case "AWS::SNS::Topic":
                topic = resolve(props.get("TopicName", logical_id), template, {**pseudo, **names})
                names[logical_id] = f"arn:aws:sns:{region}:{account}:{topic}"
            case "AWS::SecretsManager::Secret":
                names[logical_id] = resolve(props.get("Name", logical_id), template, {**pseudo, **names})
            case "AWS::Serverless::LayerVersion" | "AWS::Lambda::LayerVersion":
                # !Ref yields the version's ARN. The local Lambda runs handlers on the project's
                # virtualenv, which holds the same locked dependencies the layer ships.
                layer = resolve(props.get("LayerName", logical_id), template, {**pseudo, **names})
                names[logical_id] = f"arn:aws:lambda:{region}:{account}:layer:{layer}:1"
            case "AWS::Serverless::Function":
                # Functions are named by their logical id locally, so the local Lambda finds them by it.
                names[logical_id] = logical_id
                names[f"{logical_id}.Arn"] = f"arn:aws:lambda:{region}:{account}:function:{logical_id}"
            case "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine":
                machine = resolve(props.get("Name", logical_id), template, {**pseudo, **names})
                names[logical_id] = f"arn:aws:states:{region}:{account}:stateMachine:{machine}"  # !Ref: the ARN
                names[f"{logical_id}.Arn"] = names[logical_id]
                names[f"{logical_id}.Name"] = machine
            case _:
                names[logical_id] = logical_id
    return names


# ---------------------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class Route:
    method: str  # upper-case, or "ANY"
    path: str  # as written in the template, e.g. /v1/{proxy+}
    authorized: bool
    iam: bool = False  # AWS_IAM (SigV4) authorization: service-to-service routes


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str  # as written in the template, e.g. functions/api/handler.lambda_handler
    environment: dict[str, str]
    routes: tuple[Route, ...]
    layers: tuple[str, ...] = ()  # resolved ARNs: Globals' layers, then the function's own (as SAM merges)
    timeout_s: int = 3  # Lambda's default when neither the function nor Globals set one


def function_specs(template: dict[str, Any], resource_names: dict[str, str]) -> dict[str, FunctionSpec]:
    global_fn = template.get("Globals", {}).get("Function", {})
    global_env = global_fn.get("Environment", {}).get("Variables", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in _resources(template, "AWS::Serverless::Function").items():
        props = resource.get("Properties", {})
        own_env = props.get("Environment", {}).get("Variables", {})
        env = {k: resolve(v, template, resource_names) for k, v in {**global_env, **own_env}.items()}
        routes = []
        for event in props.get("Events", {}).values():
            ev_props = event.get("Properties", {}) or {}
            # An HttpApi event without Path/Method is the $default catch-all; we don't use it.
            if event.get("Type") != "HttpApi" or "Path" not in ev_props:
                continue
            authorizer = (ev_props.get("Auth") or {}).get("Authorizer")
            routes.append(
                Route(
                    method=str(ev_props.get("Method", "ANY")).upper(),
                    path=ev_props["Path"],
                    authorized=authorizer != "NONE",
                    iam=authorizer == "AWS_IAM",
                )
            )
        handler = props.get("Handler", global_fn.get("Handler"))
        layers = [*global_fn.get("Layers", []), *props.get("Layers", [])]
        specs[logical_id] = FunctionSpec(
            logical_id,
            handler,
            env,
            tuple(routes),
            tuple(resolve(layer, template, resource_names) for layer in layers),
            int(props.get("Timeout", global_fn.get("Timeout", 3))),
        )
    return specs


# ----------------------------------------------------------------------------------- state machines


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    type: str  # STANDARD | EXPRESS
    definition: str  # ASL JSON with DefinitionSubstitutions applied


def _substitute(text: str, substitutions: dict[str, str], logical_id: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[1] not in substitutions:
            raise KeyError(f"{logical_id}: definition placeholder ${{{match[1]}}} has no DefinitionSubstitutions entry")
        # Substituted into a JSON document: escape as the inside of a JSON string.
        return json.dumps(substitutions[match[1]])[1:-1]

    return re.sub(r"\$\{([A-Za-z0-9_.:-]+)\}", replace, text)


def state_machine_specs(template: dict[str, Any], resource_names: dict[str, str]) -> dict[str, StateMachineSpec]:
    """Every AWS::Serverless::StateMachine of `template`, its definition read from `DefinitionUri` (a
    path relative to the repo, as `sam build` reads it) or inline `Definition`, with
    `DefinitionSubstitutions` resolved against the local resource names (an unknown placeholder is an
    error, never left in)."""
    specs: dict[str, StateMachineSpec] = {}
    for logical_id, resource in _resources(template, "AWS::Serverless::StateMachine").items():
        props = resource.get("Properties", {}) or {}
        if "Definition" in props:
            text = json.dumps(props["Definition"])
        elif isinstance(props.get("DefinitionUri"), str):
            text = (REPO / props["DefinitionUri"]).read_text(encoding="utf-8")
        else:
            raise ValueError(f"{logical_id}: need Definition or a local DefinitionUri path, got {props!r}")
        substitutions = {
            key: resolve(value, template, resource_names)
            for key, value in (props.get("DefinitionSubstitutions") or {}).items()
        }
        definition = _substitute(text, substitutions, logical_id)
        json.loads(definition)  # still JSON after substitution
        arn = resource_names.get(logical_id, logical_id)
        specs[logical_id] = StateMachineSpec(
            logical_id=logical_id,
            name=arn.rsplit(":", 1)[-1],
            type=str(props.get("Type", "STANDARD")).upper(),
            definition=definition,
        )
    return specs
