"""Strict JSON Schemas from CustomResourceDefinitions, for validating manifests offline.

The API server prunes fields a CRD's structural schema does not list and accepts them
silently, so a typo such as `minReplica` would deploy and do nothing. The schemas built here
turn that into an error: every object that lists `properties` gets `additionalProperties:
false`, except where the CRD says `x-kubernetes-preserve-unknown-fields: true` (open on
purpose). `x-kubernetes-int-or-string` becomes "integer or string", `nullable` admits null,
and an `x-kubernetes-embedded-resource` object also accepts the apiVersion, kind and metadata
that every embedded object may carry. CRDs do not describe `metadata`, so `OBJECT_META`
checks the parts of it a manifest sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

# One DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters.
DNS1123_LABEL: Final = r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# One DNS-1123 subdomain: dot-separated labels, at most 253 characters.
DNS1123_SUBDOMAIN: Final = (
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# Label and annotation keys: an optional DNS subdomain prefix and a name of at most 63.
QUALIFIED_NAME: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE: Final = r"^((?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"

OBJECT_META: Final[Mapping[str, Any]] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "pattern": DNS1123_LABEL},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_NAME},
            "additionalProperties": {"type": "string", "pattern": LABEL_VALUE},
        },
        # Annotation values must be strings: an unquoted `initial-scale: 1` is an error.
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_NAME},
            "additionalProperties": {"type": "string"},
        },
    },
}

_EMBEDDED_RESOURCE_FIELDS: Final[Mapping[str, Any]] = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
}
_SUBSCHEMA_LISTS: Final = ("allOf", "anyOf", "oneOf")


def strict_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Return a strict copy of one OpenAPI v3 schema node of a CRD, and of all nodes below it."""
    out = {key: value for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        # The CRD writes this as anyOf [integer, string]; one type list says the same.
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [*_as_list(out["type"]), "null"]
    if "properties" in node:
        properties = dict(node["properties"])
        if node.get("x-kubernetes-embedded-resource"):
            properties = {**_EMBEDDED_RESOURCE_FIELDS, **properties}
        out["properties"] = {name: strict_schema(sub) for name, sub in properties.items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = strict_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = strict_schema(node["items"])
    for key in _SUBSCHEMA_LISTS:
        if key in out:
            out[key] = [strict_schema(sub) for sub in node[key]]
    if "not" in node:
        out["not"] = strict_schema(node["not"])
    return out


def crd_validator(crd_path: Path, version: str) -> jsonschema.protocols.Validator:
    """A validator for objects of `version` of the CRD in `crd_path`, strict as described above.

    `metadata` is left as the CRD has it (a bare object): check it with `OBJECT_META`.
    """
    # libyaml's loader when present: the KServe CRD is 2 MB of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_path.read_text(encoding="utf-8"), Loader=loader)
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise KeyError(f"{crd_path.name} has no version {version!r}, only {sorted(versions)}")
    return jsonschema.Draft202012Validator(
        strict_schema(versions[version]["schema"]["openAPIV3Schema"])
    )


def metadata_validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(OBJECT_META)


def errors(validator: jsonschema.protocols.Validator, instance: Any) -> Iterator[tuple[str, str]]:
    """(JSON path, message) of every error, e.g. ("$.spec.predictor", "Additional properties…")."""
    for error in validator.iter_errors(instance):
        yield error.json_path, error.message


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
