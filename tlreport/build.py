"""The build engine: a short list of cached stages, then a publish step.

Each :class:`Stage` declares its name, code version, the stages it depends on,
a cheap ``inputs`` function (no TensorFlow: hashes of files, config sections,
backbone specs) and a ``run`` function that writes its outputs into a fresh
folder.  A stage's key is the hash of its inputs, its version and its
dependencies' keys, so a change anywhere upstream reruns exactly what depends
on it.  Adding a stage is one :class:`Stage` in :mod:`tlreport.stages`.

The engine reads everything (plans every key) before it writes anything,
prints a one-line plan, then runs what is missing.  The post is rendered into
the cache and published into ``site/`` by swapping files into place, so a
failed render leaves the previous good site intact.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlreport.cache import (
    BuildLock,
    StageStore,
    atomic_write_json,
    check_writable,
    fault_point,
    hash_obj,
    read_json,
)
from tlreport.config import Config
from tlreport.errors import UserError


@dataclass(frozen=True)
class Stage:
    name: str
    version: str
    deps: tuple[str, ...]
    inputs: Callable[[BuildContext], dict]
    run: Callable[[BuildContext, Path], None]
    enabled: Callable[[BuildContext], bool] = lambda ctx: True
    detail: Callable[[BuildContext], str] | None = None   # e.g. "12 new images"
    # Stages that must run first but whose keys stay out of this one's: its inputs name exactly the
    # part of their output it reads (train: one backbone's features, not every backbone's).
    after: tuple[str, ...] = ()


@dataclass
class BuildContext:
    config: Config
    store: StageStore
    force: bool = False
    dataset_override: str | None = None
    data_root: str | None = None
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


@dataclass
class BuildResult:
    plan: list[tuple[str, str]]
    ran: list[str]
    counters: dict[str, int]
    post: Path | None
    published: bool


def _order(stages: list[Stage], only: str | None) -> list[Stage]:
    by_name = {s.name: s for s in stages}
    if only is None:
        return stages
    if only not in by_name:
        raise UserError(f"unknown section {only!r} for --only (known: {', '.join(by_name)})")
    needed: set[str] = set()

    def visit(n: str) -> None:
        if n not in needed:
            needed.add(n)
            for d in (*by_name[n].deps, *by_name[n].after):
                visit(d)

    visit(only)
    return [s for s in stages if s.name in needed]


def plan(ctx: BuildContext, stages: list[Stage]) -> list[tuple[Stage, str | None, Path | None]]:
    """Key every stage (cheap, no TF) and look it up; nothing is written."""
    rows = []
    for st in stages:
        if not st.enabled(ctx) or any(ctx.keys.get(d) is None and _dep_enabled(ctx, stages, d)
                                      for d in st.deps):
            rows.append((st, None, None))
            continue
        inputs = st.inputs(ctx)
        key = hash_obj({"stage": st.name, "version": st.version, "inputs": inputs,
                        "deps": {d: ctx.keys.get(d) for d in st.deps}})
        ctx.keys[st.name] = key
        hit = None if ctx.force else ctx.store.get(st.name, key)
        if hit is not None:
            ctx.outputs[st.name] = hit
        rows.append((st, key, hit))
    return rows


def _dep_enabled(ctx: BuildContext, stages: list[Stage], name: str) -> bool:
    for s in stages:
        if s.name == name:
            return s.enabled(ctx)
    return False


def _site_marker(site: Path, owner: str) -> Path:
    """What one config published into ``site/``: one marker per config, so two configs sharing a
    site never delete each other's posts, and a renamed slug still cleans up after itself."""
    return site / f".tlreport-build-{hash_obj(owner)[:12]}.json"


def _owner(config: Config) -> str:
    """The config's identity for its site marker: its path relative to the site (stable if moved)."""
    if config.path is None:
        return "defaults"
    return os.path.relpath(config.path, config.site_dir.resolve() if config.site_dir.exists() else config.site_dir)


def site_is_current(site: Path, render_key: str | None, owner: str) -> bool:
    if render_key is None:
        return True
    try:
        meta = read_json(_site_marker(site, owner))
    except (OSError, ValueError):
        return False
    if meta.get("render_key") != render_key:
        return False
    return all((site / rel).exists() for rel in meta.get("files", []))


PUBLISHED_FOLDERS = ("_posts", "images", "preview")  # where render puts the post, its figures, its preview


def publish(render_out: Path, site: Path, render_key: str, owner: str) -> list[str]:
    """Swap the rendered post, its images and its preview into ``site/``.

    Each piece is copied next to its final place under a temporary name and then
    renamed, so an interrupted publish leaves either the old or the new version.
    Files this post published before and no longer produces are removed.
    """
    src = render_out / "site"
    if not (site / "_config.yml").is_file():
        from tlreport.paths import shipped_path

        scaffold = shipped_path("site")
        if scaffold.resolve() != site.resolve():
            _copy_scaffold(scaffold, site)
    try:
        old = read_json(_site_marker(site, owner)).get("files", [])
    except (OSError, ValueError):
        old = []
    published: list[str] = []
    for top in sorted(src.iterdir()):
        for item in sorted(top.iterdir()):
            rel = item.relative_to(src)
            dest = site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tlreport-new")
            if tmp.exists():
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            if item.is_dir():
                shutil.copytree(item, tmp)
                if dest.exists():
                    trash = dest.with_name(f".{dest.name}.tlreport-old")
                    shutil.rmtree(trash, ignore_errors=True)
                    os.replace(dest, trash)
                    os.replace(tmp, dest)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    os.replace(tmp, dest)
            else:
                shutil.copy2(item, tmp)
                os.replace(tmp, dest)
            published.append(rel.as_posix())
            fault_point("publish:mid")
    for rel in old:
        if rel not in published:
            p = site / rel
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    atomic_write_json(_site_marker(site, owner), {"render_key": render_key, "files": published})
    return published


def _copy_scaffold(scaffold: Path, site: Path) -> None:
    for p in scaffold.rglob("*"):
        rel = p.relative_to(scaffold)
        if rel.parts[0] in ("_posts", "images", "preview", "_site", ".jekyll-cache") or \
                rel.name.startswith(".tlreport-build"):
            continue
        dest = site / rel
        if p.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)


def resolve_data_root(config: Config, override: str | None = None) -> str | None:
    """``--data-root``, else the config's ``data_root`` (relative to the config file), else None."""
    if override is None and config["data_root"]:
        return str(config.resolve(config["data_root"]))
    return override


def build(config: Config, *, force: bool = False, only: str | None = None, dry_run: bool = False,
          dataset_override: str | None = None, data_root: str | None = None,
          quiet: bool = False) -> BuildResult:
    from tlreport.stages import STAGES

    data_root = resolve_data_root(config, data_root)
    ctx = BuildContext(config=config, store=StageStore(config.cache_dir / "stages"), force=force,
                       dataset_override=dataset_override, data_root=data_root, quiet=quiet)
    for w in config.warnings:
        ctx.log(f"warning: {w}")
    stages = _order(STAGES, only)
    if not dry_run:
        check_writable(config.cache_dir, "cache_dir")
    with BuildLock(config.cache_dir) if not dry_run else _nolock():
        rows = plan(ctx, stages)
        render_key = ctx.keys.get("render")
        owner = _owner(config)
        site_ok = "render" not in [s.name for s in stages] or site_is_current(config.site_dir, render_key, owner)
        summary = []
        todo = []
        for st, key, hit in rows:
            if key is None:
                summary.append((st.name, "off"))
            elif hit is not None:
                summary.append((st.name, "cached"))
            else:
                what = st.detail(ctx) if st.detail else "rerun"
                summary.append((st.name, what))
                todo.append(st)
        if not todo and site_ok:
            ctx.log("nothing to do: every stage is cached and site/ is current")
            if not dry_run:
                _record(config, summary, [], ctx)
            return BuildResult(summary, [], ctx.counters, _post_path(config), False)
        ctx.log("plan: " + "; ".join(f"{n}: {w}" for n, w in summary)
                + ("" if site_ok else "; site: publish"))
        if dry_run:
            return BuildResult(summary, [], ctx.counters, None, False)
        if render_key is not None:                  # before hours of work, not after
            for folder in (config.site_dir, *(config.site_dir / d for d in PUBLISHED_FOLDERS)):
                check_writable(folder, "site_dir")
        ran = []
        for st, key, hit in rows:
            if key is None or hit is not None:
                continue
            t0 = time.perf_counter()
            with ctx.store.put(st.name, key) as out:
                ctx.outputs[st.name] = out          # visible to the stage while it runs
                st.run(ctx, out)
                ctx.timings[st.name] = time.perf_counter() - t0
                atomic_write_json(out / "_meta.json", {"seconds": round(ctx.timings[st.name], 2)})
            ctx.outputs[st.name] = ctx.store.path(st.name, key)
            ctx.count(f"stage.{st.name}")
            ran.append(st.name)
            ctx.log(f"{st.name}: done in {ctx.timings[st.name]:.1f} s")
        published = False
        if render_key is not None and "render" in ctx.outputs and \
                not site_is_current(config.site_dir, render_key, owner):
            publish(ctx.outputs["render"], config.site_dir, render_key, owner)
            published = True
            ctx.log(f"published {_post_path(config)}")
        _record(config, summary, ran, ctx)
        return BuildResult(summary, ran, ctx.counters, _post_path(config), published)


def _record(config: Config, summary: list, ran: list[str], ctx: BuildContext) -> None:
    """``last_build.json``: what the last build planned and ran, for users and tests."""
    atomic_write_json(config.cache_dir / "last_build.json",
                      {"plan": summary, "ran": ran, "counters": ctx.counters,
                       "timings": {k: round(v, 3) for k, v in ctx.timings.items()},
                       "tensorflow_imported": "tensorflow" in sys.modules})


def _post_path(config: Config) -> Path:
    post = config["post"]
    return config.site_dir / "_posts" / f"{post['date']}-{post['slug']}.md"


class _nolock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
