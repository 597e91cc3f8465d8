"""The build engine: plan every stage, run what is missing, publish the post.

The engine reads everything (keys every stage, see :mod:`tlreport.engine.plan`)
before it writes anything, prints a one-line plan, then runs what is missing.
The publishing stage's output is rendered into the cache and swapped into
``site/`` (:mod:`tlreport.engine.publish`), so a failed render leaves the
previous good site intact.  The engine knows no concrete stage: the pipeline
(:mod:`tlreport.pipeline`) hands it the list.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from tlreport.config import Config
from tlreport.engine.code import remembered_imports
from tlreport.engine.plan import order, plan
from tlreport.engine.publish import PUBLISHED_FOLDERS, owner_of, publish, site_is_current
from tlreport.engine.stage import BuildContext, BuildResult, Stage
from tlreport.engine.store import StageStore, cache_lock
from tlreport.util.files import atomic_write_json, check_writable

#: what a build says when it has nothing to recompute or publish (then the post's path)
NOTHING_TO_DO = "nothing to do: every stage is cached and site/ is current"
#: what a build limited by --only to stages before the post says when they are all cached
NOTHING_CACHED = "nothing to do: every stage asked for is cached"
#: in the cache folder: the import statements of the package's sources, parsed by earlier builds
IMPORTS_FILE = "code-imports.json"


def post_path(config: Config) -> Path:
    post = config.post
    return config.site_dir / "_posts" / f"{post.date}-{post.slug}.md"


def run_build(config: Config, stages: list[Stage], *, force: bool = False, only: str | None = None,
              dry_run: bool = False, dataset_override: str | None = None, data_root: str | None = None,
              quiet: bool = False) -> BuildResult:
    """Plan ``stages`` for ``config``, run the ones not cached, publish; ``dry_run`` only plans."""
    ctx = BuildContext(config=config, store=StageStore(config.cache_dir / "stages"), force=force,
                       dataset_override=dataset_override, data_root=data_root, quiet=quiet,
                       read_only=dry_run)
    for w in config.warnings:
        ctx.log(f"warning: {w}")
    stages = order(stages, only)
    publisher = next((s.name for s in stages if s.publishes), None)
    if not dry_run:
        check_writable(config.cache_dir, "cache_dir")
    with contextlib.nullcontext() if dry_run else cache_lock(config.cache_dir):
        # a stage's key covers its code's import closure: the parsed imports are kept beside the stages
        with remembered_imports(config.cache_dir / IMPORTS_FILE, save=not dry_run):
            rows = plan(ctx, stages)
        publish_key = ctx.keys.get(publisher) if publisher else None
        owner = owner_of(config)
        site_ok = publisher is None or site_is_current(config.site_dir, publish_key, owner)
        summary = []
        todo = []
        for row in rows:
            summary.append((row.stage.name, row.status(ctx)))
            if row.to_run:
                todo.append(row.stage)
        if not todo and site_ok:
            if publisher is None:                     # --only a stage before the post: the site was not asked about
                ctx.log(f"{NOTHING_CACHED}: {', '.join(s.name for s in stages)}")
            else:
                ctx.log(f"{NOTHING_TO_DO}: {post_path(config)}")
            if not dry_run:
                _record(config, summary, [], ctx)
            return BuildResult(summary, [], ctx.counters, post_path(config) if publisher else None, False)
        ctx.log("plan: " + "; ".join(f"{n}: {w}" for n, w in summary)
                + ("" if site_ok else "; site: publish"))
        if dry_run:
            return BuildResult(summary, [], ctx.counters, None, False)
        if publish_key is not None:                  # before hours of work, not after
            for folder in (config.site_dir, *(config.site_dir / d for d in PUBLISHED_FOLDERS)):
                check_writable(folder, "site_dir")
        ran = []
        for row in rows:
            if not row.to_run:
                continue
            st, key = row.stage, row.key
            t0 = time.perf_counter()
            with ctx.store.put(st.name, key) as out:
                ctx.outputs[st.name] = out          # visible to the stage while it runs
                st.run(ctx, out)
                ctx.timings[st.name] = time.perf_counter() - t0
                meta = {"seconds": round(ctx.timings[st.name], 2)}
                if st.environment is not None:
                    meta["environment"] = st.environment()
                atomic_write_json(out / "_meta.json", meta)
            ctx.outputs[st.name] = ctx.store.path(st.name, key)
            ctx.count(f"stage.{st.name}")
            ran.append(st.name)
            ctx.log(f"{st.name}: done in {ctx.timings[st.name]:.1f} s")
        published = False
        if publish_key is not None and publisher in ctx.outputs and \
                not site_is_current(config.site_dir, publish_key, owner):
            publish(ctx.outputs[publisher], config.site_dir, publish_key, owner)
            published = True
            ctx.log(f"published {post_path(config)}")
        elif publish_key is not None and ran:
            # the stages reran to the same post (a fresh clone's first build): say where it is, as the others do
            ctx.log(f"site/ already holds this post: {post_path(config)}")
        _record(config, summary, ran, ctx)
        # the post, when this build published it or found site/ holding it (None: it did not reach the site)
        return BuildResult(summary, ran, ctx.counters, post_path(config) if publish_key is not None else None,
                           published)


def _record(config: Config, summary: list, ran: list[str], ctx: BuildContext) -> None:
    """``last_build.json``: what the last build planned and ran, for users and tests."""
    atomic_write_json(config.cache_dir / "last_build.json",
                      {"plan": summary, "ran": ran, "counters": ctx.counters,
                       "timings": {k: round(v, 3) for k, v in ctx.timings.items()},
                       "tensorflow_imported": "tensorflow" in sys.modules})
