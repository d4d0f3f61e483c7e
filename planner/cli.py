"""The `simulate`, `recommend` and `apply` commands (argument parsing is in __main__)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, Final

from perf.report import table
from planner import recommend as rec
from planner import report
from planner.capacity import Capacity
from planner.isvc import read_config_autoscaler, read_manifest, settings_to_set
from planner.knative import Revision
from planner.profiles import parse_profile
from planner.scenario import Scenario

ORIGINAL_CACHE_RATES: Final = (0.0, 0.5, 0.75, 0.999, 1.0)
# The original's measured table (server side, Grafana, autoscaled AKS; issue 10, point 7).
ORIGINAL_MS: Final = {
    "sustained": {
        0.0: (3.25, 6.66, 8.59, 13.9),
        0.5: (3.10, 4.88, 7.45, 9.72),
        0.75: (3.09, 4.96, 8.47, 25.5),
        0.999: (2.99, 4.72, 4.9, 8.15),
        1.0: (2.96, 4.73, 4.92, 8.75),
    },
    "peak": {
        0.0: (237, 448, 475, 496),
        0.5: (3.27, 7.64, 9.36, 22),
        0.75: (3.29, 10.2, 18.7, 31.2),
        0.999: (46.9, 95.3, 135, 227),
        1.0: (266, 483, 632, 926),
    },
}


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        revision=read_manifest(args.isvc).revision,
        config=read_config_autoscaler(args.config_autoscaler),
        capacity=Capacity.load(args.capacity),
        profile=parse_profile(args.profile, args.client_rtt_ms),
        cache_rate=args.cache_rate,
        seed=args.seed,
        pod_start_delay_s=args.pod_start_delay,
        start_pods=args.start_pods,
        cooldown_s=args.cooldown,
        service_model=args.service_model,
    )


def _command(argv: Sequence[str]) -> str:
    return "python -m planner " + " ".join(argv)


def simulate(args: argparse.Namespace, argv: Sequence[str]) -> None:
    scenario = scenario_from(args)
    title = f"{read_manifest(args.isvc).name}: {scenario.profile.name}, cache {args.cache_rate:g}"
    meta = {**scenario.meta(args.isvc, args.capacity, title), "command": _command(argv)}
    written = report.write(scenario.run(), args.out, meta, plot=not args.no_plot)
    print(report.markdown(meta, written["summary"]), end="")
    print(f"wrote {args.out}/report.json, report.md" + ("" if args.no_plot else ", timeline.png"))


def recommend(args: argparse.Namespace, argv: Sequence[str]) -> None:
    scenario = scenario_from(args)
    grid = dict(rec.QUICK_GRID if args.quick else rec.GRID)
    if args.keep_scale_to_zero:
        grid.pop("min_scale", None)
        scenario = replace(scenario, revision=replace(scenario.revision, min_scale=0))
    search = rec.Search(scenario, args.slo_p99_ms, grid, args.keep_scale_to_zero)
    current, best = search.run()
    changed = rec.changed_settings(current.revision, best.revision)
    data = {
        "command": _command(argv),
        "isvc": str(args.isvc),
        "capacity": str(args.capacity),
        "profile": scenario.profile.name,
        "cache_rate": scenario.cache_rate,
        "slo_p99_ms": args.slo_p99_ms,
        "keep_scale_to_zero": args.keep_scale_to_zero,
        "candidates": len(search.seen),
        "current": _candidate(current),
        "recommended": _candidate(best),
        "changed": changed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recommendation.json").write_text(json.dumps(data, indent=1) + "\n")
    text = recommendation_markdown(data)
    (args.out / "recommendation.md").write_text(text)
    print(text, end="")
    print(f"wrote {args.out}/recommendation.json, recommendation.md")


def _candidate(candidate: rec.Candidate) -> dict[str, Any]:
    return {
        "revision": asdict(candidate.revision),
        "settings": settings_to_set(candidate.revision),
        "feasible": candidate.feasible,
        "summary": candidate.summary,
    }


def recommendation_markdown(data: dict[str, Any]) -> str:
    best, current = data["recommended"], data["current"]
    lines = [
        f"# Recommended scaling settings: {data['profile']}, cache rate {data['cache_rate']:g}, "
        f"P99 SLO {data['slo_p99_ms']:g} ms",
        "",
        (
            "Scale to zero kept: the P99 is judged from the first ready pod on, the cold "
            "start of a scale from zero left out."
            if data["keep_scale_to_zero"]
            else "The P99 is judged over the whole run, a scale from zero included."
        ),
        "",
        f"{data['candidates']} settings simulated; "
        + (
            "the current manifest meets the SLO."
            if current["feasible"]
            else "the current manifest does not meet the SLO."
        )
        + ("" if best["feasible"] else " No setting tried meets it: the closest is shown."),
        "",
        "Set in the InferenceService's predictor (fields, then annotations):",
        "",
        "```yaml",
    ]
    for key, value in best["settings"].items():
        lines.append(f'{key}: "{value}"' if "/" in key else f"{key}: {value}")
    lines += ["```", "", f"Changed from the manifest: {', '.join(data['changed']) or 'nothing'}."]
    rows = rec.comparison_rows([("current", current["summary"]), ("recommended", best["summary"])])
    lines += ["", "Predicted (in-cluster ms):", "", table(rec.COMPARISON_HEADER, rows), ""]
    return "\n".join(lines) + "\n"


def apply(args: argparse.Namespace, argv: Sequence[str]) -> None:
    base = scenario_from(args)
    settings: dict[str, Revision] = {"current": base.revision}
    for path in args.recommended:
        data = json.loads(path.read_text())
        name = "scale-to-zero" if data.get("keep_scale_to_zero") else "recommended"
        settings[name] = Revision(**data["recommended"]["revision"])
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {name: {} for name in settings}
    for name, revision in settings.items():
        for rate in ORIGINAL_CACHE_RATES:
            scenario = replace(base, revision=revision, cache_rate=rate)
            title = f"{base.profile.name}, cache rate {rate:g}, {name} settings"
            meta = scenario.meta(args.isvc, args.capacity, title)
            run_dir = args.out / f"{name}-{rate:g}"
            written = report.write(scenario.run(), run_dir, meta)
            results[name][f"{rate:g}"] = {
                "settings": meta["settings"],
                "summary": written["summary"],
            }
            s = written["summary"]
            print(
                f"{name} cache {rate:g}: peak P99 {s['peak_ms']['p99']:.1f} ms, "
                f"sustained P99 {s['sustained_ms']['p99']:.2f} ms, "
                f"{s['failed'] + s['timed_out']} failed, {s['pod_seconds']:.0f} pod-s",
                flush=True,
            )
    data = {
        "command": _command(argv),
        "profile": base.profile.name,
        "uptime": os.getloadavg(),
        "results": results,
    }
    (args.out / "apply.json").write_text(json.dumps(data, indent=1) + "\n")
    text = apply_markdown(base.profile.name, results)
    (args.out / "apply.md").write_text(text)
    print(text, end="")


def apply_rows(results: dict[str, dict[str, Any]], kind: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for rate in ORIGINAL_CACHE_RATES:
        rows.append([f"{rate:g}", "original (measured)", *ORIGINAL_MS[kind][rate], None, None])
        for name, by_rate in results.items():
            s = by_rate[f"{rate:g}"]["summary"]
            rows.append(
                [
                    f"{rate:g}",
                    f"{name} (simulated)",
                    *(s[f"{kind}_ms"][q] for q in ("p50", "p90", "p95", "p99")),
                    s["failed"] + s["timed_out"],
                    round(s["pod_seconds"]),
                ]
            )
    return rows


def apply_markdown(profile: str, results: dict[str, dict[str, Any]]) -> str:
    header = ["cache rate", "", "P50", "P90", "P95", "P99", "failed", "pod-seconds"]
    lines = [f"Profile {profile}; latency in ms.", ""]
    for kind in ("peak", "sustained"):
        lines += [f"{kind.capitalize()}:", "", table(header, apply_rows(results, kind)), ""]
    return "\n".join(lines)
