"""Every link of README.md and docs/ leads to a committed file (and heading), and the kept
results in docs/results/ are exactly the ones the docs cite, each listed in its index."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
import pytest
import yaml

from harness.payloads import sample_values
from harness.server import REPO
from predictor.cache.keys import canonical_rows, row_digests
from predictor.model.artifact import VERSION_CHARS

LINK: Final = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE: Final = re.compile(r"^```.*?^```", re.M | re.S)
HEADING: Final = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
RESULTS: Final = REPO / "docs" / "results"
RESULTS_INDEX: Final = RESULTS / "README.md"
REPORT: Final = re.compile(r"^(bench|load|soak)-\d{8}-\d{6}\.md$")


@cache
def tracked() -> frozenset[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return frozenset(REPO / line for line in listed.splitlines())


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def links(page: Path) -> list[str]:
    """Local link targets of a page, code blocks left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z]+:", target)  # http:, https:, mailto:
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(heading) for heading in HEADING.findall(text)}


def local_links() -> list[tuple[Path, str]]:
    return [(page, target) for page in pages() for target in links(page)]


@pytest.mark.parametrize(
    ("page", "target"),
    local_links(),
    ids=[f"{p.relative_to(REPO)}->{t}" for p, t in local_links()],
)
def test_link_leads_to_a_committed_file_and_heading(page: Path, target: str) -> None:
    path_part, _, fragment = target.partition("#")
    destination = (page.parent / path_part).resolve() if path_part else page
    assert destination in tracked() or (
        destination.is_dir() and any(p.is_relative_to(destination) for p in tracked())
    ), f"{page.relative_to(REPO)} links to {target}, which is not a committed file"
    if fragment and destination.suffix == ".md":
        assert fragment in anchors(destination), f"{target}: no such heading"


def test_slugs_follow_github() -> None:
    assert slug("`make bench`: one process against its peers") == (
        "make-bench-one-process-against-its-peers"
    )
    assert slug("Settings") == "settings"


def test_kept_results_are_the_cited_ones_and_all_in_the_index() -> None:
    kept = {p for p in tracked() if p.parent == RESULTS and p != RESULTS_INDEX}
    indexed = {(RESULTS / target).resolve() for target in links(RESULTS_INDEX)}
    assert kept <= indexed, f"not in {RESULTS_INDEX.name}: {sorted(p.name for p in kept - indexed)}"
    citing = [page for page in pages() if not page.is_relative_to(RESULTS)]
    cited = {(page.parent / t.partition("#")[0]).resolve() for page in citing for t in links(page)}
    reports = {p for p in kept if REPORT.match(p.name)}
    assert reports, "no kept reports found"
    uncited = sorted(p.name for p in reports - cited)
    assert not uncited, f"kept in docs/results/ but cited by no page: {uncited}"


def test_docs_state_the_manifests_scaling_target() -> None:
    """Every page that names the autoscaling target names the manifest's: scaleTarget x
    target-utilization-percentage (docs/operations.md once said 8)."""
    isvc = yaml.safe_load((REPO / "inferenceservice.yaml").read_text(encoding="utf-8"))
    predictor = isvc["spec"]["predictor"]
    utilization = predictor["annotations"]["autoscaling.knative.dev/target-utilization-percentage"]
    stated = f"{predictor['scaleTarget']} x {utilization}%"
    for page in ("operations.md", "deploy.md"):
        text = (REPO / "docs" / page).read_text(encoding="utf-8")
        assert stated in text, f"docs/{page} does not state the target as {stated}"
        assert not re.search(r"target\s+\(\d+\)", text), f"docs/{page}: a bare target number"


def test_k6_commands_in_the_docs_name_their_server() -> None:
    """A k6 or hey command copied from the docs says which server it loads (BASE_URL)."""
    for page in (REPO / "docs").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S):
            for command in re.sub(r"\\\n\s*", " ", block).splitlines():
                if re.search(r"k6 run perf/load\.js|perf/hey\.sh", command):
                    assert "BASE_URL=" in command, f"{page.name}: {command}"


def test_the_cache_key_example_is_the_sample_row_under_the_manifests_model() -> None:
    """docs/caching.md's example key: the sample row's digest under the model version the
    manifests ship (STORAGE_URI's tag), in the one form of a version users see."""
    isvc = yaml.safe_load((REPO / "inferenceservice.yaml").read_text(encoding="utf-8"))
    [uri] = [
        env["value"]
        for env in isvc["spec"]["predictor"]["containers"][0]["env"]
        if env["name"] == "STORAGE_URI"
    ]
    version = uri.rsplit(":", 1)[1]
    [digest] = row_digests(canonical_rows(np.array([sample_values()])))
    text = (REPO / "docs" / "caching.md").read_text(encoding="utf-8")
    assert f"    housing:{version}:{digest}\n" in text
    assert len(version) == VERSION_CHARS
