"""``tlreport.toml``: a declarative schema that reports every bad field at once.

Each field is declared once, in :data:`SCHEMA`, with its type, default, check
and meaning (the MkDocs idea); the typed, frozen sections the build reads
(``config.train.epochs``) and the reference page (docs/configuration.md) are
made from that declaration.  :func:`load_config` collects *all* problems, each as
``field: problem (got VALUE)``, and raises one :class:`ConfigError`.  Unknown
keys are warnings with a did-you-mean, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import functools
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlreport.errors import ConfigError, UserError

_MISSING = object()
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    default: Any = _MISSING
    check: Callable[[Any], str | None] | None = None
    item: type | None = None          # element type for lists
    doc: str = ""                     # the reference page's "meaning" (docs/configuration.md)


#: more splits than this add nothing a reader could see in a mean ± std, and each costs a grid's fits
MAX_SPLITS = 100


def _splits(v: Any) -> str | None:
    return _positive(v) or (None if v <= MAX_SPLITS else f"must be at most {MAX_SPLITS}")


def _positive(v: Any) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):      # TOML has inf and nan (an int is always finite)
        return "must be a finite number > 0"
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number >= 0"
    return None if v >= 0 else "must be >= 0"


def _seed(v: int) -> str | None:
    # NumPy's and Keras' global seeds take 32 bits; a larger seed failed only after features were extracted
    return None if 0 <= v < 2**32 else f"must be in [0, {2**32 - 1}]"


def _max_pixels(v: int) -> str | None:
    """Pillow refuses images over twice its ``MAX_IMAGE_PIXELS`` before tlreport's own check can pass them."""
    from PIL import Image

    pillow = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    problem = _positive(v)
    if problem is None and pillow is not None and v > pillow:
        problem = f"must be at most {pillow:,} (Pillow's own limit on an image's pixels)"
    return problem


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else "must be one of " + ", ".join(repr(c) for c in choices)
    return check


def _backbone(v: Any) -> str | None:
    from tlreport.backbones import REGISTRY
    if v in REGISTRY:
        return None
    close = difflib.get_close_matches(v, REGISTRY, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown backbone (known: {', '.join(sorted(REGISTRY))}){hint}"


def _feature_set(v: Any) -> str | None:
    """One backbone, or ``a+b+c``: the concatenation of those backbones' features."""
    parts = str(v).split("+")
    for b in parts:
        p = _backbone(b)
        if p:
            return p if len(parts) == 1 else f"{b!r}: {p}"
    if len(set(parts)) != len(parts):
        return "names a backbone twice"
    return None


def _table_backbones(v: list) -> str | None:
    """Backbones, or ``a+b+c``: one row on the concatenation of those backbones' features."""
    if not v:
        return "must list at least one backbone"
    for entry in v:
        p = _feature_set(entry)
        if p:
            return f"{entry!r}: {p}"
    if len(set(v)) != len(v):
        return "lists a backbone twice"
    return None


def _split_fractions(v: list) -> str | None:
    if len(v) != 3:
        return "must be [train, validation, test]"
    if any(not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x <= 0 for x in v):
        return "each fraction must be a number > 0"
    if abs(sum(v) - 1.0) > 1e-6:
        return f"must sum to 1 (sums to {sum(v):g})"
    return None


def _settings(v: list) -> str | None:
    if not v:
        return "must list at least one n_train"
    if any(not isinstance(x, int) or isinstance(x, bool) or x <= 0 for x in v):
        return "each n_train must be a positive integer"
    if len(set(v)) != len(v):       # the grid would fit its splits twice and count them as 10 splits
        return "lists an n_train twice"
    return None


def _heads(v: list) -> str | None:
    if not v:
        return "must list at least one head"
    if len(set(v)) != len(v):       # as n_train: every split fitted and counted twice
        return "lists a head twice"
    return None


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(v: Any) -> str | None:
    if isinstance(v, _dt.datetime):
        return "must be a date YYYY-MM-DD, without a time"
    if isinstance(v, _dt.date):
        return None
    try:
        _dt.date.fromisoformat(str(v))
    except ValueError:
        return "must be a date YYYY-MM-DD"
    return None if _ISO_DATE.match(str(v)) else "must be a date YYYY-MM-DD"


def _slug(v: str) -> str | None:
    return None if _SLUG.match(v) else "must be lowercase letters, digits and '-' (at most 81)"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _nul(v: Any) -> str | None:
    """A NUL byte: no path may hold one (``ValueError: embedded null byte``) and no post should."""
    if isinstance(v, str) and "\x00" in v:
        return "must not contain a NUL byte"
    if isinstance(v, list) and any(isinstance(x, str) and "\x00" in x for x in v):
        return "no item may contain a NUL byte"
    return None


def _home(p: str) -> str | None:
    """``~user/...`` of a user this machine does not know (``Path.expanduser`` raises RuntimeError)."""
    if p.startswith("~") and os.path.expanduser(p) == p:
        user = p[1:].split("/", 1)[0]
        return f"no home folder for {'~' + user if user else '~'} on this machine"
    return None


def _path(v: str) -> str | None:
    """A file or folder path (``~`` allowed), relative to the config's folder."""
    return _home(v)


def _paths(v: list) -> str | None:
    for x in v:
        p = _home(x)
        if p:
            return f"{x!r}: {p}"
    return None


def _both(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return next((p for c in checks if (p := c(v))), None)
    return check


DEMO_IMAGES = [
    "skimage:chelsea.png",
    "skimage:coffee.png",
    "skimage:rocket.jpg",
    "skimage:astronaut.png",
    "matplotlib:grace_hopper.jpg",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
]

SCHEMA: dict[str, Any] = {
    "seed": Field(int, 42, _seed, doc="the one seed for splits, training and sampling (and the synthetic "
                                      "`demo` dataset); 0 to 2³² − 1"),
    # not "": that is the config's own folder (site_dir = "" scattered the site's files beside the config)
    "cache_dir": Field(str, ".tlreport", _both(_nonempty, _path), doc="stage outputs, features, converted weights"),
    "site_dir": Field(str, "site", _both(_nonempty, _path), doc="the Jekyll site the post is published into"),
    "data_root": Field(str, "", _path, doc="fetched artifacts (else `TLREPORT_DATA`, else "
                                           "`$XDG_DATA_HOME/tlreport`)"),
    "post": {
        "title": Field(str, "Transfer learning, reproduced", _nonempty, doc="the post's title"),
        "date": Field((str, _dt.date), "2026-11-28", _date, doc="YYYY-MM-DD: the post's date and file name"),
        "slug": Field(str, "transfer-learning", _slug, doc="the post's file and URL name (a-z, 0-9, -)"),
        "author": Field(str, "tlreport", doc="front matter"),
        "description": Field(str, "Classifying photos with a pretrained network, caching bottleneck "
                                  "features and training a new softmax layer, reproduced end to end.",
                             doc="front matter, and the index's excerpt after the headline number"),
        "tags": Field(list, ["transfer-learning", "tensorflow", "keras"], item=str, doc="front matter"),
        "templates": Field(str, "", _path, doc="a folder of templates searched before the packaged ones"),
        "pin": Field(bool, False, doc="true: the post is listed before every unpinned post on the site's index"),
    },
    "classify": {
        "enabled": Field(bool, True, doc="false skips the `classify` stage and the photo-classification section"),
        "backbone": Field(str, "efficientnet_lite0", _backbone, doc="see `tlreport backbones`"),
        "top_k": Field(int, 5, _positive, doc="rows per photo"),
        "images": Field(list, DEMO_IMAGES, _paths, item=str,
                        doc="`skimage:NAME`, `matplotlib:NAME`, `sklearn:NAME`, `artifact:NAME/PATH`, "
                            "`dataset:PATH` (a file of the post's own dataset, wherever `dataset.path` or "
                            "`--dataset` points, e.g. `dataset:panda/image_0001.jpg`) or a path"),
        "out_of_vocabulary": Field(str, "skimage:hubble_deep_field.jpg", _path,
                                   doc="a photo of something ImageNet has no class for (`\"\"` to omit)"),
        "out_of_vocabulary_label": Field(str, "galaxies (the Hubble Deep Field)",
                                         doc="what that photo shows, for its heading"),
    },
    "dataset": {
        "path": Field(str, "demo", _path, doc="a folder of class folders (`tlreport.toml`: "
                                              "`data/caltech101-subset`), `artifact:NAME`, or `demo` (crops of "
                                              "the bundled photos, made by the build; for tests)"),
        "include": Field(list, [], item=str, doc="class names to keep (`[]`: all)"),
        "exclude": Field(list, [], item=str, doc="class names to drop"),
        "max_pixels": Field(int, 40_000_000, _max_pixels,
                            doc="larger images are skipped (decompression bombs); at most 178,956,970, "
                                "Pillow's own limit"),
    },
    "features": {
        "batch_size": Field(int, 32, _positive, doc="images per extraction batch"),
        "precision": Field(str, "float32", _one_of("float32", "bfloat16", "auto"),
                           doc="`bfloat16`, or `auto`: bf16 with `engine = \"openvino\"` only on a kind of CPU "
                               "where bf16 features kept every row of the table within 0.15 points; none so "
                               "far, so float32 ([bf16 and the tables](performance.md#bf16-and-the-tables))"),
        "engine": Field(str, "tensorflow", _one_of("tensorflow", "openvino", "auto"),
                        doc="`openvino` runs extraction through OpenVINO (`pip install -e '.[openvino]'`; "
                            "[faster extraction](performance.md#faster-extraction)); its features get cache "
                            "entries of their own. `auto`: OpenVINO where it is installed, the CPU has AVX2 or "
                            "AVX-512 and TensorFlow has no GPU, else TensorFlow"),
        "runner": Field(str, "local", _one_of("local", "ray"),
                        doc="`ray` extracts the images missing from the cache on a Ray cluster and runs the "
                            "experiment grid's fits there as Ray tasks (`pip install -e '.[ray]'`; "
                            "[on a Ray cluster](performance.md#on-a-ray-cluster))"),
        "ray_address": Field(str, "", doc="`\"\"`: `$RAY_ADDRESS`, else a cluster started on this machine"),
        "ray_workers": Field(int, 0, _non_negative, doc="0: one per CPU of the cluster"),
    },
    "train": {
        "enabled": Field(bool, True, doc="false skips the `train` stage and the transfer section"),
        "backbone": Field(str, "efficientnet_lite0", _feature_set,
                          doc="a backbone, or `a+b+c`: the new layer reads their features side by side, and "
                              "the exported classifier takes one image input per backbone"),
        "fractions": Field(list, [0.6, 0.2, 0.2], _split_fractions,
                           doc="training, validation and test shares of the stratified split (the validation "
                               "part picks the epoch); `configs/caltech101-offline.toml` uses "
                               "`[0.45, 0.15, 0.4]`, so its test part is the seed's 40%"),
        "learning_rate": Field((int, float), 0.1, _positive, doc="SGD's learning rate"),
        "momentum": Field((int, float), 0.9, lambda v: None if 0 <= v < 1 else "must be in [0, 1)",
                          doc="SGD's momentum"),
        "schedule": Field(str, "cosine", _one_of("cosine", "constant"),
                          doc="`cosine` decays the learning rate to 0 over `epochs`; `constant` keeps it"),
        "batch_size": Field(int, 128, _positive, doc="images per SGD step (the last batch is not a runt)"),
        "epochs": Field(int, 150, _positive, doc="at most this many epochs"),
        "l2": Field((int, float), 1e-3, _non_negative, doc="the L2 penalty on the layer's weights"),
        "patience": Field(int, 30, _non_negative, doc="early stopping on validation loss; 0 disables"),
        "standardize": Field(bool, True, doc="standardise each feature on the training images first "
                                             "(false: the raw bottleneck values)"),
        "grid_size": Field(int, 4, lambda v: None if 2 <= v <= 6 else "must be between 2 and 6",
                           doc="rows and columns of the sample-prediction grids"),
    },
    "experiments": {
        "enabled": Field(bool, True, doc="false skips the `experiments` stage and the Zeiler & Fergus tables "
                                         "(so does a config with no `[[experiments.tables]]`)"),
        "backbones": Field(list, ["efficientnet_lite0"], _table_backbones, item=str,
                           doc="a row per entry: a backbone, or `a+b+c` for one row on the concatenated "
                               "features of several (their cached features are reused)"),
        "heads": Field(list, ["softmax_sgd", "logreg"], _heads, item=str, doc="`softmax_sgd`, `logreg`"),
        "n_splits": Field(int, 5, _splits, doc="random splits per setting (mean ± std over them), at most "
                                                f"{MAX_SPLITS}"),
        "flip": Field(bool, False, doc="true adds a `+flip` row per head (test-time flip averaging; one more "
                                       "pass over the images, and within ±0.15 points on Caltech-101 with "
                                       "EfficientNet-Lite0, so off by default)"),
        "precision": Field(str, "float32", _one_of("float32", "bfloat16", "auto"),
                           doc="`bfloat16`: the `softmax_sgd` head's matrix products in bf16 (float32 weights "
                               "and updates); `auto`: bf16 on a CPU with AMX or AVX-512 BF16, else float32 ([bf16 in the "
                               "experiment grid](performance.md#bf16-in-the-experiment-grid))"),
        "tables": Field(list, [], item=dict, doc="`[[experiments.tables]]` entries, below"),
    },
}

TABLE_SCHEMA: dict[str, Field] = {
    "dataset": Field(str, _MISSING, _both(_nonempty, _path), doc="`demo`, `artifact:NAME` or a folder"),
    "name": Field(str, "", doc="shown in the post; defaults to the dataset's name"),
    "literature": Field(str, "", doc="a key of `data/literature.toml`: the published rows quoted under the "
                                     "table (`\"\"`: none)"),
    "settings": Field(list, [15, 30], _settings, doc="training images per class, one column each"),
    "test_cap": Field(int, 50, _positive, doc="test images per class, at most"),
    "exclude": Field(list, [], item=str, doc="class names left out of this table"),
    "drop_short_classes": Field(bool, False, doc="false: a class with fewer than max(settings) + 1 images is "
                                                 "a one-line error while planning; true: it is left out of "
                                                 "that table and listed in the post"),
}


def _type_name(t: type | tuple[type, ...]) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             list: "a list", dict: "a table", _dt.date: "a date"}
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _isinstance(v: Any, t: type | tuple[type, ...]) -> bool:
    ts = t if isinstance(t, tuple) else (t,)
    if isinstance(v, bool) and bool not in ts:
        return False
    if isinstance(v, int) and not isinstance(v, bool) and float in ts:
        return True
    return isinstance(v, ts)


def _fits(v: Any) -> bool:
    """Integers within TOML's 64 bits (tomllib reads larger ones; NumPy, a float and TOML itself cannot)."""
    if isinstance(v, list):
        return all(_fits(x) for x in v)
    return not isinstance(v, int) or isinstance(v, bool) or -2**63 <= v < 2**63


def _show(v: Any) -> str:
    try:
        s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    except ValueError:                      # an integer past Python's 4,300 digits for str()
        s = "a number too long to show"
    return s if len(s) <= 60 else s[:57] + "..."


#: keys an older config may still carry, and what to do instead: a one-line warning, the key ignored
RETIRED: dict[str, str] = {
    "features.backbones": "no longer read (a build extracts the features that train.backbone and "
                          "experiments.backbones use); delete the line",
}


def _validate(data: dict, schema: dict, prefix: str, problems: list[str],
              warnings: list[str]) -> dict:
    out: dict[str, Any] = {}
    for key in data:
        if prefix + key in RETIRED:
            warnings.append(f"{prefix}{key}: {RETIRED[prefix + key]}")
        elif key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            value = data[key]
            if close and (isinstance(value, dict) or (isinstance(value, list) and value
                                                      and all(isinstance(v, dict) for v in value))):
                # a misspelt section loses every setting in it (a misspelt [[experiments.tables]], the tables)
                problems.append(f"{prefix}{key}: unknown section{hint} (every setting in it would be ignored)")
            else:
                warnings.append(f"{prefix}{key}: unknown key, ignored{hint}")
    for key, spec in schema.items():
        name = prefix + key
        if isinstance(spec, dict):
            sub = data.get(key, {})
            if not isinstance(sub, dict):
                problems.append(f"{name}: must be a table (got {_show(sub)})")
                sub = {}
            out[key] = _validate(sub, spec, name + ".", problems, warnings)
            continue
        if key not in data:
            if spec.default is _MISSING:
                problems.append(f"{name}: required")
            else:
                out[key] = spec.default
            continue
        v = data[key]
        if not _isinstance(v, spec.type):
            problems.append(f"{name}: must be {_type_name(spec.type)} (got {_show(v)})")
            continue
        if spec.item is not None and any(not _isinstance(x, spec.item) for x in v):
            problems.append(f"{name}: every item must be {_type_name(spec.item)} (got {_show(v)})")
            continue
        msg = _nul(v)
        if msg is None and spec.check is not None:
            try:
                msg = spec.check(v)
            except OverflowError:                   # an integer too large for a float (sum, division)
                msg = None
        if msg is None and not _fits(v):
            msg = "must be within TOML's 64-bit integers"
        if msg:
            problems.append(f"{name}: {msg} (got {_show(v)})")
            continue
        out[key] = v
    return out


# ----------------------------------------------------------------------------- the typed, frozen config
# The schema above is the one declaration: these types are made from it, and so is the reference page
# (docs/configuration.md, :func:`reference_markdown`).  Lists become tuples, so a config cannot change
# under a build; what the rest of tlreport reads is ``config.train.epochs``.


def _annotation(spec: Field) -> Any:
    """The Python type a field's validated value has in the frozen config."""
    if spec.type is list:
        return tuple[spec.item or Any, ...]
    if spec.type == (int, float):
        return float
    if spec.type == (str, _dt.date):
        return str                      # a TOML date is written back as YYYY-MM-DD
    return spec.type


def _section(name: str, schema: dict[str, Field], doc: str, types: dict[str, Any] | None = None) -> type:
    """A frozen dataclass with one field per key of ``schema``, in its order (``types`` overrides a field's)."""
    cls = dataclasses.make_dataclass(name, [(key, (types or {}).get(key, _annotation(spec)))
                                            for key, spec in schema.items()], frozen=True)
    cls.__module__, cls.__doc__ = __name__, doc     # found by name: it pickles, and shows as tlreport.config.X
    return cls


TableConfig = _section("TableConfig", TABLE_SCHEMA, "One ``[[experiments.tables]]`` entry.")
PostConfig = _section("PostConfig", SCHEMA["post"], "``[post]``: front matter and file name.")
ClassifyConfig = _section("ClassifyConfig", SCHEMA["classify"], "``[classify]``: the photo-classification section.")
DatasetConfig = _section("DatasetConfig", SCHEMA["dataset"], "``[dataset]``: the transfer section's images.")
FeaturesConfig = _section("FeaturesConfig", SCHEMA["features"], "``[features]``: how features are extracted.")
TrainConfig = _section("TrainConfig", SCHEMA["train"], "``[train]``: the new softmax layer.")
ExperimentsConfig = _section("ExperimentsConfig", SCHEMA["experiments"], "``[experiments]``: the tables.",
                             types={"tables": tuple[TableConfig, ...]})

_SECTIONS = {"post": PostConfig, "classify": ClassifyConfig, "dataset": DatasetConfig,
             "features": FeaturesConfig, "train": TrainConfig, "experiments": ExperimentsConfig}


def _shown(v: Any) -> str:
    """A default as the reference page shows it."""
    if v is _MISSING:
        return "required"
    if isinstance(v, list) and len(v) > 3:
        return f"{len(v)} items"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and v >= 10_000:
        return f"{v:,}"
    if isinstance(v, str) and len(v) > 40:
        return "`" + json.dumps(v[:36])[:-1] + '…"`'
    return f"`{json.dumps(v)}`" if isinstance(v, (str, list)) else f"`{v!r}`"


def reference_markdown() -> str:
    """The reference table of docs/configuration.md, made from :data:`SCHEMA` and :data:`TABLE_SCHEMA`."""
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]

    def add(name: str, spec: Field) -> None:
        plural = {str: "strings", int: "integers", float: "numbers", dict: "tables"}
        kind = "a list" + (f" of {plural.get(spec.item, spec.item.__name__)}" if spec.item else "") \
            if spec.type is list else _type_name(spec.type)
        rows.append(f"| `{name}` | {kind} | {_shown(spec.default)} | {spec.doc} |")

    def walk(schema: dict, prefix: str) -> None:
        for key, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, f"{prefix}{key}.")
            else:
                add(prefix + key, spec)

    walk(SCHEMA, "")
    for key, spec in TABLE_SCHEMA.items():
        add(f"experiments.tables[].{key}", spec)
    return "\n".join(rows) + "\n"


REFERENCE_PAGE = Path("docs") / "configuration.md"
_BEGIN = "<!-- fields: generated from tlreport/config.py by `python -m tlreport.config` -->\n"
_END = "<!-- end of the generated fields -->\n"


def reference_page(text: str) -> str:
    """``text`` (the page) with its generated part replaced by :func:`reference_markdown`."""
    if _BEGIN not in text or _END not in text:
        raise ValueError(f"{REFERENCE_PAGE}: no generated part ({_BEGIN.strip()} ... {_END.strip()})")
    head, rest = text.split(_BEGIN, 1)
    return head + _BEGIN + "\n" + reference_markdown() + "\n" + _END + rest.split(_END, 1)[1]


def _frozen(cls: type, d: dict) -> Any:
    """A section type from its validated dict: lists as tuples, tables as :class:`TableConfig`."""
    def conv(name: str, v: Any) -> Any:
        if name == "tables":
            return tuple(_frozen(TableConfig, t) for t in v)
        return tuple(v) if isinstance(v, list) else v
    return cls(**{f.name: conv(f.name, d[f.name]) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Config:
    """A validated config: typed sections, the file it came from, and the merged dict it hashes."""

    raw: dict = field(repr=False)
    path: Path | None
    warnings: tuple[str, ...] = ()
    seed: int = field(init=False)
    data_root: str = field(init=False)      # as written ('' for the default); see pipeline.resolve_data_root
    post: PostConfig = field(init=False)
    classify: ClassifyConfig = field(init=False)
    dataset: DatasetConfig = field(init=False)
    features: FeaturesConfig = field(init=False)
    train: TrainConfig = field(init=False)
    experiments: ExperimentsConfig = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__      # frozen: fields derived once, here
        set_(self, "seed", self.raw["seed"])
        set_(self, "data_root", self.raw["data_root"])
        for name, cls in _SECTIONS.items():
            set_(self, name, _frozen(cls, self.raw[name]))

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        try:
            q = Path(p).expanduser()
        except RuntimeError:                # ~user of a user this machine does not know
            raise UserError(f"{p}: {_home(p) or 'no home folder'}") from None
        return q if q.is_absolute() else (self.base_dir / q)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.raw["cache_dir"])

    @property
    def site_dir(self) -> Path:
        return self.resolve(self.raw["site_dir"])

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()


def _literature_keys() -> set[str]:
    """The datasets data/literature.toml has rows for (``caltech101``, ``caltech256``)."""
    from tlreport.util.paths import shipped_path

    path = shipped_path("data", "literature.toml")
    st = os.stat(path)
    return set(_literature_keys_of(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=4)
def _literature_keys_of(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    """Parsed once per version of the file: validate() runs per table, and the config fuzz runs it thousands of times."""
    with open(path, "rb") as fh:
        return frozenset(row["dataset"] for row in tomllib.load(fh).get("row", []))


def validate(data: dict, *, source: str = "config", path: Path | None = None) -> Config:
    problems: list[str] = []
    warnings: list[str] = []
    raw = _validate(data, SCHEMA, "", problems, warnings)
    if isinstance(raw.get("post", {}).get("date"), _dt.date):
        raw["post"]["date"] = raw["post"]["date"].isoformat()
    from tlreport.heads import HEADS

    exp = raw.get("experiments", {})
    for h in exp.get("heads", []):
        if h == "logreg_flip":
            problems.append("experiments.heads: 'logreg_flip' is now `experiments.flip = true`, which adds a "
                            "+flip row for every head")
        elif h not in HEADS:
            problems.append(f"experiments.heads: unknown head {h!r}, known: {', '.join(HEADS)} "
                            f"(got {_show(exp['heads'])})")
    tables = []
    for i, t in enumerate(exp.get("tables", [])):
        tables.append(_validate(t, TABLE_SCHEMA, f"experiments.tables[{i}].", problems, warnings))
        lit = tables[-1].get("literature")
        if lit and lit not in _literature_keys():
            problems.append(f"experiments.tables[{i}].literature: unknown, known: "
                            f"{', '.join(sorted(_literature_keys()))} (got {lit!r})")
    if "tables" in exp:
        exp["tables"] = tables
    cls = raw.get("classify", {})
    if cls.get("enabled") and cls.get("images") == [] and not cls.get("out_of_vocabulary"):
        problems.append("classify: no images to classify (images = [] and no out_of_vocabulary); list some, or "
                        "set classify.enabled = false")
    if problems:
        # an unknown key beside an invalid field is often the same mistake: both are listed
        raise ConfigError(problems + warnings, source)
    return Config(raw=raw, path=path, warnings=tuple(warnings))


def load_config(path: str | Path | None, *, require_dataset: bool = False) -> Config:
    """Load and validate a config file (``None``: the defaults, no file).

    With ``require_dataset`` (``tlreport build`` without ``--dataset``), a config file whose build reads
    ``dataset.path`` must set it: left out, or lost to a misspelt key or table, it would quietly mean
    the demo dataset.
    """
    if path is None:
        return validate({}, source="defaults")
    p = Path(path)
    try:
        found = p.is_file()
    except (OSError, ValueError) as e:      # a name too long for the file system, a NUL byte
        raise UserError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    if not found:
        if p.is_dir():
            raise UserError(f"{p} is a folder; name the config file in it (e.g. {p / 'tlreport.toml'})")
        raise UserError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not UTF-8 text") from None
    except ValueError:                      # tomllib's int() past Python's 4,300 digits
        raise UserError(f"{p}: not valid TOML: a number with too many digits") from None
    except RecursionError:                  # arrays or inline tables nested thousands deep
        raise UserError(f"{p}: not valid TOML: nested too deeply") from None
    cfg = validate(data, source=str(p), path=p.resolve())
    section = data.get("dataset")
    if require_dataset and not (isinstance(section, dict) and "path" in section) and _reads_dataset(cfg):
        said = "".join(f" ({w})" for w in cfg.warnings if w.startswith("dataset") or "'dataset" in w)
        raise UserError(f"{p}: dataset.path is not set{said}; name a folder of class folders, 'artifact:NAME' "
                        "or 'demo' (tlreport init FOLDER writes a config for a folder)")
    return cfg


def _reads_dataset(cfg: Config) -> bool:
    """Whether a build of ``cfg`` reads ``dataset.path``: the transfer section, a table that names it, or a
    photo taken from it (``dataset:PATH``)."""
    path = cfg.dataset.path
    return (cfg.train.enabled or (cfg.experiments.enabled and any(t.dataset == path for t in cfg.experiments.tables))
            or (cfg.classify.enabled and any(str(i).startswith("dataset:") for i in cfg.classify.images)))


if __name__ == "__main__":      # python -m tlreport.config: rewrite the reference page's generated part
    import argparse

    argparse.ArgumentParser(prog="python -m tlreport.config",
                            description=f"Rewrite the generated part of {REFERENCE_PAGE} from the config's "
                                        "declaration (a developer's tool).").parse_args()
    page = Path(__file__).resolve().parents[1] / REFERENCE_PAGE
    page.write_text(reference_page(page.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {page}")
