"""`python -m planner {measure,simulate,recommend,validate,apply} ...`

measure    one server process's capacity (wrk + redis-server + cold starts) -> JSON
simulate   Knative serving the InferenceService's revision under a traffic profile
recommend  the scaling settings with the fewest pod-seconds within a P99 SLO
validate   simulated vs real (k6 open model) P50/P99 for one pod at 30/60/90% load
apply      the original's scenario at its five cache rates, current vs given settings
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from harness.pinning import UNPINNED_HELP
from perf.report import RESULTS
from planner.scenario import DEFAULT_POD_START_DELAY_S

SCRATCH: Final = RESULTS / "autoscale"
DEFAULT_ISVC: Final = Path("deploy/base/inferenceservice.yaml")


def _scenario_args(p: argparse.ArgumentParser, profile_default: str | None) -> None:
    p.add_argument(
        "--isvc",
        type=Path,
        default=DEFAULT_ISVC,
        help="InferenceService YAML (or `kubectl kustomize` output).",
    )
    p.add_argument("--capacity", type=Path, required=True, help="capacity.json of `measure`.")
    p.add_argument(
        "--profile",
        default=profile_default,
        required=profile_default is None,
        help="original-open, original-closed, const:RPS:SECONDS or T1:RPS1,...",
    )
    p.add_argument("--cache-rate", type=float, default=0.0, help="Share of cache hits, 0..1.")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--config-autoscaler",
        type=Path,
        default=None,
        help="A config-autoscaler ConfigMap overriding Knative's defaults.",
    )
    p.add_argument(
        "--pod-start-delay",
        type=float,
        default=DEFAULT_POD_START_DELAY_S,
        help="Seconds added to the measured cold start (scheduling, image pull).",
    )
    p.add_argument(
        "--client-rtt-ms",
        type=float,
        default=50.0,
        help="Client round trip of each request of original-closed.",
    )
    p.add_argument(
        "--start-pods",
        type=int,
        default=None,
        help="Ready pods at 0 s (default: the min scale, i.e. idle before).",
    )
    p.add_argument(
        "--cooldown",
        type=float,
        default=600.0,
        help="Seconds simulated after the traffic (scale-down, pod-seconds).",
    )
    p.add_argument(
        "--service-model",
        choices=("serial", "draw"),
        default="serial",
        help="serial: one event loop serves requests in turn; draw: a request's whole time "
        "in the container drawn from the closed-loop distribution at the concurrency.",
    )


def _pinning_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unpinned", action="store_true", help=UNPINNED_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m planner",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("measure", help="measure one server's capacity", formatter_class=defaults)
    p.add_argument("--model_dir", type=Path, required=True, help="Trained model dir.")
    p.add_argument("--out", type=Path, default=SCRATCH / "capacity.json")
    p.add_argument("--work_dir", type=Path, default=SCRATCH / "work")
    p.add_argument("--seconds", type=int, default=0, help="Seconds per level (0: 4, quick 2).")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Runs per level; the least disturbed (lowest P99) is kept.",
    )
    p.add_argument("--quick", action="store_true", help="Few levels, short (for the tests).")
    _pinning_arg(p)

    p = sub.add_parser("simulate", help="simulate one profile", formatter_class=defaults)
    _scenario_args(p, None)
    p.add_argument("--out", type=Path, default=SCRATCH / "simulate")
    p.add_argument("--no-plot", action="store_true")

    p = sub.add_parser("recommend", help="search scaling settings", formatter_class=defaults)
    _scenario_args(p, "original-open")
    p.add_argument("--slo-p99-ms", type=float, required=True)
    p.add_argument("--quick", action="store_true", help="A small grid (for the tests).")
    p.add_argument(
        "--keep-scale-to-zero",
        action="store_true",
        help="Keep minReplicas 0; judge the P99 from the first ready pod on.",
    )
    p.add_argument("--out", type=Path, default=SCRATCH / "recommend")

    p = sub.add_parser("validate", help="simulated vs real k6", formatter_class=defaults)
    p.add_argument("--model_dir", type=Path, required=True)
    p.add_argument("--capacity", type=Path, required=True)
    p.add_argument("--seconds", type=int, default=20, help="Seconds per k6 run.")
    p.add_argument("--loads", default="0.3,0.6,0.9", help="Shares of the measured capacity.")
    p.add_argument("--cache-rate", type=float, default=0.0)
    p.add_argument("--out", type=Path, default=SCRATCH / "validate")
    p.add_argument("--work_dir", type=Path, default=SCRATCH / "work")
    _pinning_arg(p)

    p = sub.add_parser(
        "apply", help="original scenario, five cache rates", formatter_class=defaults
    )
    _scenario_args(p, "original-open")
    p.add_argument(
        "--recommended",
        type=Path,
        action="append",
        default=[],
        help="recommendation.json of `recommend` (repeatable; default: the manifest only).",
    )
    p.add_argument("--out", type=Path, default=SCRATCH / "apply")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "measure":
        from planner import measure

        measure.main(measure.options(args, argv))
    elif args.command == "validate":
        from planner import validate

        validate.main(args, argv)
    else:
        from planner import cli

        getattr(cli, args.command)(args, argv)


if __name__ == "__main__":
    main()
