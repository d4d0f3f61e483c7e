"""One model version, named the same way everywhere, and the V2 routes that name it.

The version is the first 16 hex digits of the artifact's sha256 (`HousingModel.version`):
the `X-Model-Version` header, V2 `model_version`, the metadata's `versions`, gRPC and the
cache keys all use it. kserve registers `/v2/models/{name}/versions/{version}/...` but
answers 501 on them and lists no versions; here the served version answers exactly like
the unversioned routes (REST here, gRPC in predictor.upstream.kserve_grpc_servicer), and
any other version (or model) is a 404 that names both.
"""

from __future__ import annotations

from typing import Final

from starlette.types import Scope

# The routes of a model under a version: metadata, readiness and inference.
_VERSIONED_SUFFIXES: Final = ("", "ready", "infer")
_MODELS: Final = "/v2/models/"


class UnservedVersion(LookupError):
    """A request names a model or a version of it that this server does not serve."""


def unserved(model_name: str, asked: str, served: str) -> str:
    return f"model {model_name} has no version {asked!r}: this server serves version {served}"


def unversioned_path(scope: Scope, model_name: str, served: str) -> Scope:
    """The scope of `/v2/models/NAME/versions/SERVED[/ready|/infer]` as the unversioned
    route's; `UnservedVersion` for any other version or model on these routes; other
    paths' scopes unchanged (kserve answers them)."""
    path: str = scope["path"]
    name, versions, rest = path[len(_MODELS) :].partition("/versions/")
    if not path.startswith(_MODELS) or not versions or "/" in name:
        return scope
    version, _, suffix = rest.partition("/")
    if suffix not in _VERSIONED_SUFFIXES:
        return scope
    if name != model_name:
        raise UnservedVersion(f"model {name} is not served here (this server serves {model_name})")
    if version != served:
        raise UnservedVersion(unserved(model_name, version, served))
    unversioned = f"{_MODELS}{model_name}" + (f"/{suffix}" if suffix else "")
    return {**scope, "path": unversioned, "raw_path": unversioned.encode()}
