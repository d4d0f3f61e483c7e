"""Request bodies for every route, built from the rows in `tests/data/sample.json`.

The repeated payload (a cache hit after the first request) is the sample's first row. A
unique payload is the same row with `Population` replaced by a number that no other request
uses, so every one is a cache miss. Load generators get a unique body as a template: the
text before and after that number (`UniqueTemplate`).

    python -m harness.payloads ROUTE   # print the repeated body of ROUTE (legacy, v1, v2)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from harness.paths import REPO as REPO
from harness.paths import SAMPLE_PATH, TEST_DATA
from predictor.protocol.schema import FEATURES

MODEL_NAME: Final = "housing"
UNIQUE_FEATURE: Final = "Population"
ROUTES: Final = ("legacy", "v1", "v2")
_HOLE: Final = "__UNIQUE__"
_COMPACT: Final = (",", ":")


@dataclass(frozen=True)
class UniqueTemplate:
    """A body with a hole for the unique value: `prefix + str(value) + suffix`."""

    prefix: str
    suffix: str

    def render(self, value: int) -> str:
        return f"{self.prefix}{value}{self.suffix}"


def load_json(name: str) -> Any:
    """A JSON document of tests/data/."""
    return json.loads((TEST_DATA / name).read_text(encoding="utf-8"))


def sample_rows() -> list[dict[str, float]]:
    """The rows of `tests/data/sample.json` (a legacy `/predict` body)."""
    rows: list[dict[str, float]] = load_json(SAMPLE_PATH.name)
    return rows


def sample_row() -> dict[str, float]:
    """The first row of `tests/data/sample.json`, as named fields."""
    return dict(sample_rows()[0])


def sample_values() -> list[float]:
    """The first row as the feature vector V1 and V2 take, in the schema's order."""
    row = sample_row()
    return [float(row[name]) for name in FEATURES]


def distinct_rows(
    start: int, count: int, population_from: float = 1000.0
) -> list[dict[str, float]]:
    """Valid rows number `start` to `start + count - 1`, each different (Population is
    `population_from + k`; income, age and latitude vary), for runs that need cache misses."""
    return [
        {"MedInc": 1.5 + (k % 89) / 16, "HouseAge": float(k % 50), "AveRooms": 5.25,
         "AveBedrms": 1.0, "Population": population_from + k, "AveOccup": 2.5,
         "Latitude": 34.0 + (k % 7) / 8, "Longitude": -118.25}
        for k in range(start, start + count)
    ]  # fmt: skip


def fixed_row() -> dict[str, float]:
    """The repeated row: the first row of `tests/data/sample.json`."""
    row = sample_row()
    return {name: row[name] for name in FEATURES}


def path(route: str, model_name: str = MODEL_NAME) -> str:
    """The URL path that takes `route`'s bodies."""
    paths = {
        "legacy": "/predict",
        "v1": f"/v1/models/{model_name}:predict",
        "v2": f"/v2/models/{model_name}/infer",
    }
    return paths[route]


def body(route: str, row: dict[str, Any]) -> str:
    """One-row body of `route`: legacy takes objects, V1 an array of numbers, V2 a tensor."""
    values = [row[name] for name in FEATURES]
    if route == "legacy":
        document: Any = [row]
    elif route == "v1":
        document = {"instances": [values]}
    elif route == "v2":
        tensor = {"name": "input-0", "shape": [1, len(values)], "datatype": "FP64"}
        document = {"inputs": [{**tensor, "data": values}]}
    else:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
    return json.dumps(document, separators=_COMPACT)


def fixed_body(route: str) -> str:
    return body(route, fixed_row())


def unique_template(route: str) -> UniqueTemplate:
    text = body(route, {**fixed_row(), UNIQUE_FEATURE: _HOLE})
    prefix, suffix = text.split(json.dumps(_HOLE))
    return UniqueTemplate(prefix, suffix)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("route", choices=ROUTES)
    print(fixed_body(parser.parse_args(argv).route))


if __name__ == "__main__":
    main()
