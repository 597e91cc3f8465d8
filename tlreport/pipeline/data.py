"""The datasets a build reads, as the stages see them: which folder, its scanned manifest, its credit line.

A build may use several datasets (the transfer section's and one per results
table).  :func:`manifest` scans each once per build (with a hash cache, so a
rescan of an unchanged folder is fast).  In a read-only build (a dry run,
``cache prune``) nothing here writes outside a temporary folder or downloads: an
artifact that is not installed raises :class:`~tlreport.errors.NeedsDownload`,
which the plan shows.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tlreport.config import Config, TableConfig
from tlreport.engine.stage import BuildContext
from tlreport.errors import NeedsDownload, UserError
from tlreport.util.paths import is_within
from tlreport.util.text import display_name


@dataclass(frozen=True)
class DatasetUse:
    ref: str                      # "demo", "artifact:NAME" or a path, as configured
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @property
    def id(self) -> str:
        blob = f"{self.ref}\0{','.join(self.include)}\0{','.join(self.exclude)}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_data_root(config: Config, override: str | None = None) -> str | None:
    """``--data-root``, else the config's ``data_root`` (relative to the config file), else None."""
    if override is None and config.data_root:
        return str(config.resolve(config.data_root))
    return override


def transfer_use(ctx: BuildContext) -> DatasetUse:
    d = ctx.config.dataset
    ref = ctx.dataset_override or d.path
    return DatasetUse(ref, tuple(d.include), tuple(d.exclude))


def table_use(ctx: BuildContext, table: TableConfig) -> DatasetUse:
    ref = table.dataset
    if ctx.dataset_override and ref == ctx.config.dataset.path:
        ref = ctx.dataset_override          # --dataset points the same dataset elsewhere
    return DatasetUse(ref, (), table.exclude)


def dataset_name(ref: str) -> str:
    """A dataset as a post names it: the artifact's name or the folder's, never the builder's full path.

    >>> dataset_name("artifact:caltech101"), dataset_name("/home/me/data/101_ObjectCategories/")
    ('caltech101', '101_ObjectCategories')
    """
    if ref.startswith("artifact:"):
        return ref.split(":", 1)[1]
    return Path(ref.rstrip("/\\")).name or ref


def is_folder_ref(ref: str) -> bool:
    """Whether a dataset reference (``dataset.path``, ``--dataset``) names a folder, not ``demo`` or ``artifact:NAME``."""
    return ref != "demo" and not ref.startswith("artifact:")


def dataset_credit(ctx: BuildContext, ref: str) -> tuple[str, str]:
    """Who made the transfer dataset's images, and under which licence: one line for the post, and a
    link to the dataset's page (``""`` if none).

    A ``CREDIT.txt`` in the dataset folder says it; else, when the config names a registry artifact
    (``artifact:caltech101``, even with ``--dataset`` pointing at a copy elsewhere), the registry's
    title, citation and licence, linked to its homepage; else nothing.
    """
    if is_folder_ref(ref):
        credit = ctx.config.resolve(ref) / "CREDIT.txt"
        if credit.is_file():
            try:
                return credit.read_text(encoding="utf-8", errors="replace").strip(), ""
            except OSError as e:
                raise UserError(f"cannot read {display_name(str(credit))}: {e.strerror}") from None
    declared = ctx.config.dataset.path
    if not declared.startswith("artifact:"):
        return "", ""
    from tlreport.artifacts.registry import load_registry

    art = load_registry().get(declared.split(":", 1)[1])
    if art is None or art.kind != "dataset":
        return "", ""
    text = " ".join(part for part in (f"{art.title}:" if art.title else "", art.citation,
                                      f"Licence: {art.licence}." if art.licence else "") if part)
    # a link the post can write as Markdown: http(s), nothing that would end it early
    url = art.homepage if re.fullmatch(r"https?://[^\s()<>\[\]\"']+", str(art.homepage or "")) else ""
    return text, url


def dataset_root(ctx: BuildContext, ref: str) -> Path:
    if ref == "demo":
        from tlreport.datasets.demo import demo_dataset_path, make_demo_dataset

        seed = ctx.config.seed
        if ctx.read_only:
            return demo_dataset_path(ctx.cache_dir, seed=seed) or make_demo_dataset(Path(scratch_dir(ctx)), seed=seed)
        return make_demo_dataset(ctx.cache_dir, seed=seed)
    if ref.startswith("artifact:"):
        from tlreport.artifacts.install import download_note, ensure, resolve_dataset
        from tlreport.artifacts.registry import data_root

        name = ref.split(":", 1)[1]
        root = data_root(ctx.data_root)
        found = resolve_dataset(name, root)
        if found is None:
            if ctx.read_only:
                raise NeedsDownload([download_note(name)])
            found = ensure(name, root, allow_download=True)
        return Path(found)
    root = ctx.config.resolve(ref)
    _check_not_holding_the_output(ctx, root)
    return root


def _check_not_holding_the_output(ctx: BuildContext, root: Path) -> None:
    """One line when a dataset folder holds the build's own site or cache (``path = "."``): its
    figures would become images of a class, and every build would train on the last one's output."""
    real = os.path.realpath(root)
    for what, out in (("site", ctx.config.site_dir), ("cache", ctx.cache_dir)):
        if is_within(os.path.realpath(out), real):
            raise UserError(f"the dataset folder {display_name(str(root))} holds this build's {what} folder "
                            f"({display_name(str(out))}); point the dataset at the folder of class folders")


def scratch_dir(ctx: BuildContext) -> str:
    """A temporary folder for what a read-only build must make to plan (the demo dataset), removed at exit."""
    return ctx.once("scratch", lambda: tempfile.TemporaryDirectory(prefix="tlreport-plan-")).name


def _config_field(ctx: BuildContext, use: DatasetUse) -> str:
    """The config section whose include/exclude chose ``use``'s classes, as its messages name it."""
    if use == transfer_use(ctx):
        return "dataset"
    for i, table in enumerate(ctx.config.experiments.tables):
        if table_use(ctx, table) == use:
            return f"experiments.tables[{i}]"
    return "dataset"


def manifest(ctx: BuildContext, use: DatasetUse):
    """The scanned manifest of a dataset, once per build."""

    def scan():
        from tlreport.datasets.scan import scan_dataset

        root = dataset_root(ctx, use.ref)
        cache = ctx.cache_dir / "manifests" / (hashlib.sha256(os.fsencode(str(root.resolve()))).hexdigest()[:16] + ".json")
        m = scan_dataset(root, include=use.include or None, exclude=use.exclude or None,
                         max_pixels=ctx.config.dataset.max_pixels, hash_cache_path=cache,
                         progress=not ctx.quiet, update_hash_cache=not ctx.read_only,
                         config_field=_config_field(ctx, use))
        ctx.log(f"dataset {use.ref}: {m.summary()}")
        for s in m.skipped[:20]:
            ctx.log(f"  skipped {display_name(s.relpath)}: {display_name(s.reason)}")
        if len(m.skipped) > 20:
            ctx.log(f"  ... and {len(m.skipped) - 20} more (listed in the manifest)")
        prov = ctx.memo.setdefault("provenance.datasets", [])
        prov.append({"name": dataset_name(use.ref), "hash": m.hash(), "summary": m.summary()})
        return m

    return ctx.once(f"manifest:{use.id}", scan)
