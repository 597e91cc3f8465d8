"""What a stage is and what it sees while the engine plans and runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlreport.config import Config
from tlreport.engine.store import StageStore


def _always(ctx: BuildContext) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One cached step of a build.

    ``inputs`` is cheap (hashes of files, config sections, backbone specs; no
    TensorFlow) and ``run`` writes the stage's outputs into the folder it is
    given.  The stage's key hashes its inputs, its code (see
    :mod:`tlreport.engine.code`) and the keys of ``deps``.
    """

    name: str
    inputs: Callable[[BuildContext], dict]
    run: Callable[[BuildContext, Path], None]
    deps: tuple[str, ...] = ()
    # Stages that must run first but whose keys stay out of this one's: its inputs name exactly the
    # part of their output it reads (train: one backbone's features, not every backbone's).
    after: tuple[str, ...] = ()
    enabled: Callable[[BuildContext], bool] = _always
    detail: Callable[[BuildContext], str] | None = None   # e.g. "12 new images"
    publishes: bool = False     # its output's ``site/`` folder is swapped into the config's site_dir
    # a stage that computes results says where it ran: what this returns (machine, versions) is kept in its
    # output's _meta.json, so a later stage reads where the cached numbers were computed, not where it runs
    environment: Callable[[], dict] | None = None


@dataclass
class BuildContext:
    config: Config
    store: StageStore
    force: bool = False
    dataset_override: str | None = None
    data_root: str | None = None
    # A dry run or `cache prune`: nothing may be written outside a temporary folder, nothing downloaded.
    read_only: bool = False
    keys: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def once(self, name: str, fn: Callable[[], Any]) -> Any:
        """Compute ``fn()`` once per build (manifests, loaded models)."""
        if name not in self.memo:
            self.memo[name] = fn()
        return self.memo[name]

    def file_hash(self, path: Path) -> str:
        """sha256 of a file a stage reads (a shipped data file, a photo), once per build and version of it."""
        from tlreport.util.hashing import sha256_file

        st = path.stat()
        return self.once(f"sha:{path}:{st.st_size}:{st.st_mtime_ns}", lambda: sha256_file(path))


@dataclass
class BuildResult:
    plan: list[tuple[str, str]]
    ran: list[str]
    counters: dict[str, int]
    post: Path | None
    published: bool
