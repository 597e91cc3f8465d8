"""The post's "Reproduce it" box: the commands that rebuild the post on another machine, and what can
differ there (the config's ``auto`` settings, a dataset given with ``--dataset``, images kept outside the
repository)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from tlreport.config import Config
from tlreport.engine.stage import BuildContext


def config_name(ctx: BuildContext) -> str:
    """The config file as a reader types it: relative to the repository (or folder) it lives in."""
    path = ctx.config.path
    if path is None:
        return "tlreport.toml"
    top = repository_top(path.parent)
    for base in (Path(top) if top else None, Path.cwd()):
        if base is not None and path.is_relative_to(base.resolve()):
            return path.relative_to(base.resolve()).as_posix()
    return path.name


@functools.cache
def repository_top(folder: Path) -> str:
    """The top of the git repository holding ``folder`` ("" outside one): asked of git once per folder."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def reproduce_context(ctx: BuildContext, prov: dict) -> dict:
    """The exact commands that rebuild this post, and where the exported classifier lands."""
    from tlreport.artifacts.registry import load_registry
    from tlreport.pipeline.data import dataset_name, is_folder_ref

    dataset = ctx.config.dataset.path
    # a build given --dataset read that in place of the config's dataset (the tables' too, where they name it);
    # --dataset naming the config's own folder is no override
    given = ctx.dataset_override
    if given and (given == dataset or (is_folder_ref(given) and is_folder_ref(dataset)
                                       and Path(given).resolve() == ctx.config.resolve(dataset).resolve())):
        given = None
    override = None
    if given:
        arg = "PATH" if is_folder_ref(given) else given
        override = {"name": dataset_name(given), "arg": arg, "instead_of": dataset_name(dataset),
                    "config_artifact": dataset.split(":", 1)[1] if dataset.startswith("artifact:") else ""}
    fetch = []
    refs = [dataset] + [t.dataset for t in ctx.config.experiments.tables] if ctx.config.experiments.enabled else [dataset]
    for ref in dict.fromkeys(given if given and ref == dataset else ref for ref in refs):
        if ref.startswith("artifact:"):
            fetch.append(ref.split(":", 1)[1])
    names = {b["name"] for b in prov["backbones"]}
    registry = load_registry()
    fetch += sorted(n for n in names if n in registry)
    in_source = in_tlreport_source(ctx.config.path)
    # a project of one's own runs its commands in the config's folder: the config by its name there
    config = config_name(ctx) if in_source or ctx.config.path is None else ctx.config.path.name
    return {"config": config, "config_hash": prov["config_hash"], "version": prov["version"],
            "in_source": in_source,
            "dataset_outside": is_folder_ref(dataset) and not given and outside_repository(ctx, dataset),
            "auto": resolved_auto_settings(ctx.config, prov),
            "git": prov["rendered"]["commit"] or prov["git"], "modified": prov["rendered"]["modified"],
            "fetch": fetch, "repository": site_repository(ctx),
            "dataset": dataset, "dataset_name": dataset_name(dataset), "override": override,
            "classifier": ctx.config.train.enabled}


def in_tlreport_source(config_path: Path | None) -> bool:
    """Whether the config lies in tlreport's own source tree (a clone, installed with ``pip install -e``): there
    the post's commands install tlreport from that tree; a project of one's own (``tlreport init``) has no
    ``pyproject.toml`` of tlreport's to install from."""
    import tlreport

    source = Path(tlreport.__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():            # an installed tlreport, not a source tree
        return False
    return config_path is None or config_path.resolve().is_relative_to(source)


def outside_repository(ctx: BuildContext, dataset: str) -> bool:
    """Whether the dataset folder lies outside the git repository holding the config (then publishing the
    repository does not publish the images); False where the config is in no repository (nothing to say)."""
    if ctx.config.path is None:
        return False
    top = repository_top(ctx.config.path.parent)
    return bool(top) and not ctx.config.resolve(dataset).resolve().is_relative_to(Path(top).resolve())


def resolved_auto_settings(config: Config, prov: dict) -> list[dict[str, str]]:
    """The config's ``auto`` settings, each with what this machine resolved it to and what moves where another
    machine resolves it otherwise (``{"setting", "moves"}``, in words)."""
    auto = []
    if config.features.engine == "auto" and prov.get("engine"):
        auto.append({"setting": f'`features.engine = "auto"` chose {prov["engine"]}',
                     "moves": "the features, and so every number, can differ slightly"})
    if config.experiments.enabled and config.experiments.precision == "auto" and prov.get("head_precision"):
        auto.append({"setting": f'`experiments.precision = "auto"` chose {prov["head_precision"]["precision"]}',
                     "moves": "the softmax (SGD) rows can differ in their last digits"})
    return auto


def site_repository(ctx: BuildContext) -> str:
    """``repository:`` of the site's ``_config.yml`` (``owner/name`` or a URL), else ``""``."""
    cfg = ctx.config.resolve(ctx.config.site_dir) / "_config.yml"
    try:
        text = cfg.read_text(encoding="utf-8")
    except OSError:
        return ""
    m = re.search(r"^repository:[ \t]*[\"']?([^\"'\s#]+)", text, flags=re.M)
    if not m:
        return ""
    repo = m.group(1)
    return repo if "://" in repo else f"https://github.com/{repo}"
