"""The skill's use cases, one function each: what `model-serving skill ...` does, without the printing.

Each takes plain values (folders, flags) and returns the report the face prints or emits as JSON;
refusals are `ServingError`s, so the exit code comes from the error model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.skill import default_cache_dir, repo_root, skill_dir
from model_serving.skill.cache import DocsCache
from model_serving.skill.drift import DriftReport, check_drift
from model_serving.skill.fetch import FetchReport, fetch_sources
from model_serving.skill.install import InstallResult, install_skill
from model_serving.skill.sources import SourceList, load_sources
from model_serving.skill.validate import ValidationReport, validate_skill


@dataclass(frozen=True)
class Workspace:
    """The skill folder, its docs cache and its sources, resolved once."""

    skill: Path
    cache: DocsCache
    sources: SourceList


def workspace(home: Path, skill: Path | None = None, cache_dir: Path | None = None, sources_file: Path | None = None) -> Workspace:
    folder = (skill or skill_dir()).resolve()
    sources = load_sources(sources_file or folder / "sources.yaml")
    return Workspace(folder, DocsCache((cache_dir or default_cache_dir(home)).resolve()), sources)


def fetch(ws: Workspace, *, mirror: str | None = None, only: Sequence[str] = (), force: bool = False, progress: Progress | None = None) -> FetchReport:
    """Download the listed pages into the cache (a page that fails keeps its old copy; see refuse_failed_fetch)."""
    return fetch_sources(ws.sources, ws.cache, mirror=mirror, only=list(only) or None, force=force, progress=progress)


def refuse_failed_fetch(report: FetchReport) -> None:
    if report.failed_required:
        raise InputError(f"{len(report.failed_required)} page(s) could not be fetched: {', '.join(report.failed_required)}; their previous copies were kept.",
                         "See the errors above; `skill fetch --offline` shows what is cached.")


def check(ws: Workspace, *, fetch_first: bool = False, mirror: str | None = None, progress: Progress | None = None) -> DriftReport:
    """Facts that changed upstream since the references were built (fetching the pages first when asked)."""
    if fetch_first:
        fetched = fetch_sources(ws.sources, ws.cache, mirror=mirror, progress=progress)
        if fetched.failed_required:
            raise InputError(f"Could not fetch {', '.join(fetched.failed_required)}.", "Run `model-serving skill fetch` to see why.")
    return check_drift(ws.cache, ws.sources, ws.skill)


def refuse_drift(report: DriftReport) -> None:
    if not report.up_to_date:
        raise ServingError(f"{len(report.facts)} fact(s) changed upstream since the references were built.",
                           "Review the changes, then `model-serving skill build` and re-run the skill tests.")


def install(agents: Sequence[str], scope: str, *, project: Path, skill: Path | None = None, force: bool = False) -> list[InstallResult]:
    source = (skill or skill_dir()).resolve()
    return [install_skill(source, agent, scope, project=project.resolve(), home=Path.home(), force=force) for agent in agents]  # type: ignore[arg-type]  # click.Choice limits both to the Literals; its str type cannot say so


def validate(folders: Sequence[Path], tool_names: set[str] | None) -> list[ValidationReport]:
    """Validate the given skill folders (default: the portable skill and, in a checkout, the repo-root skill)."""
    root = repo_root()
    targets = list(folders) or [skill_dir()] + ([root] if root is not None and (root / "SKILL.md").exists() else [])
    return [validate_skill(Path(t).resolve(), tool_names=tool_names, as_installed=root is not None and Path(t).resolve() == root) for t in targets]


def refuse_invalid(reports: Sequence[ValidationReport]) -> None:
    failed = [r.name or r.skill_dir for r in reports if not r.ok]  # a SKILL.md without a name fails: say its folder
    if failed:
        raise ServingError(f"Skill validation failed for {', '.join(failed)}.", "Fix the problems listed above and validate again.")
