"""The artifact registry (data/artifacts.toml): what can be fetched, from where, pinned by which hashes."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tlreport.artifacts.archive import is_archive_name
from tlreport.errors import UserError
from tlreport.util.paths import shipped_path

KINDS = ("dataset", "model", "keras-weights")
RECORD = ".verified.json"
TREE = "files"  # extracted archives live in <data_root>/<name>/files
_HEX = re.compile(r"^[0-9a-f]+$")
# an artifact's name is a folder of the data root: one plain path component
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL = re.compile(r"https?://\S+")


def data_root(override: str | os.PathLike[str] | None = None) -> Path:
    """``--data-root``, else ``$TLREPORT_DATA``, else ``$XDG_DATA_HOME/tlreport``."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("TLREPORT_DATA")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().absolute() / "tlreport"


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file`` looks for weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser() / "models"
    home = Path.home()
    if not os.access(home, os.W_OK):  # Keras' own fallback for a read-only home
        home = Path("/tmp")
    return home / ".keras" / "models"


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Inner:
    """An archive inside the downloaded archive (Caltech 101's zip holds a .tar.gz)."""

    path: str
    sha256: str = ""
    md5: str = ""
    size: int | None = None


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str
    urls: tuple[str, ...]
    filename: str
    size: int | None = None
    sha256: str = ""
    md5: str = ""
    licence: str = ""
    title: str = ""          # how a post names a dataset ("Caltech-101")
    citation: str = ""
    homepage: str = ""
    root: str = ""
    inner: Inner | None = None
    max_extracted_bytes: int | None = None

    @property
    def pinned(self) -> bool:
        """Whether a published hash exists (otherwise: trust on first use)."""
        return bool(self.sha256 or self.md5)

    @property
    def extract(self) -> bool:
        return self.kind != "keras-weights" and is_archive_name(self.filename)

    @property
    def extract_cap(self) -> int:
        if self.max_extracted_bytes:
            return self.max_extracted_bytes
        return max(8 * self.size, 1 << 30) if self.size else 32 << 30


def _check_hex(where: str, value: str, length: int) -> str:
    value = value.strip().lower()
    if value and (len(value) != length or not _HEX.match(value)):
        raise UserError(f"{where}: expected {length} hex digits, got {value!r}")
    return value


def _safe_rel(where: str, value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        raise UserError(f"{where}: {value!r} must be a relative path without '..'")
    return "/".join(p for p in parts if p not in ("", "."))


def _typed(where: str, d: dict, key: str, kind: type, default: object) -> object:
    """``d[key]`` if it has the type the registry needs (a whole number for sizes), else one line."""
    value = d.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is int:
        ok = ok and value >= 0
    if not ok:
        what = {str: "a string", int: "a whole number >= 0", dict: "a table", list: "a list"}[kind]
        raise UserError(f"{where}.{key}: must be {what}, got {value!r}")
    return value


def _parse_artifact(name: str, d: dict, source: str) -> Artifact:
    where = f"{source} [{name}]"
    if not _NAME.fullmatch(name):
        raise UserError(f"{where}: an artifact's name is a folder of the data root: letters, digits, '_', '.' "
                        "and '-', not starting with '.' or '-'")
    kind = d.get("kind")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    urls = _typed(where, d, "urls", list, [])
    if not all(isinstance(u, str) and _URL.fullmatch(u) for u in urls):
        raise UserError(f"{where}: urls must be a list of http:// or https:// addresses")
    filename = _typed(where, d, "filename", str, "")
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise UserError(f"{where}: filename must be a plain file name, got {filename!r}")
    for key in ("sha256", "md5", "root", "licence", "title", "citation", "homepage"):
        _typed(where, d, key, str, "")
    for key in ("size", "max_extracted_bytes"):
        _typed(where, d, key, int, None)
    inner = None
    if _typed(where, d, "inner", dict, None) is not None:
        i = d["inner"]
        for key in ("path", "sha256", "md5"):
            _typed(f"{where}.inner", i, key, str, "")
        inner = Inner(
            path=_safe_rel(f"{where}.inner.path", i.get("path", "")),
            sha256=_check_hex(f"{where}.inner.sha256", i.get("sha256", ""), 64),
            md5=_check_hex(f"{where}.inner.md5", i.get("md5", ""), 32),
            size=_typed(f"{where}.inner", i, "size", int, None),
        )
        if not inner.path or not (inner.sha256 or inner.md5):
            raise UserError(f"{where}.inner: needs a path and a published sha256 or md5")
    art = Artifact(
        name=name,
        kind=kind,
        urls=tuple(urls),
        filename=filename,
        size=d.get("size"),
        sha256=_check_hex(f"{where}.sha256", d.get("sha256", ""), 64),
        md5=_check_hex(f"{where}.md5", d.get("md5", ""), 32),
        licence=d.get("licence", ""),
        title=d.get("title", ""),
        citation=d.get("citation", ""),
        homepage=d.get("homepage", ""),
        root=_safe_rel(f"{where}.root", d.get("root", "")),
        inner=inner,
        max_extracted_bytes=d.get("max_extracted_bytes"),
    )
    if kind == "dataset" and not art.extract:
        raise UserError(f"{where}: a dataset must be an archive (.zip/.tar/.tar.gz/.tgz)")
    return art


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, Artifact]:
    """Read the artifact registry: ``path``, ``$TLREPORT_ARTIFACTS`` or the shipped ``artifacts.toml``."""
    p = Path(path or os.environ.get("TLREPORT_ARTIFACTS") or shipped_path("data", "artifacts.toml"))
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"artifact registry not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: {exc}") from None
    return {k: _parse_artifact(k, v, p.name) for k, v in raw.items() if isinstance(v, dict)}


def get_artifact(name: str, registry: dict[str, Artifact] | None = None) -> Artifact:
    reg = load_registry() if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, reg, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown artifact {name!r}{hint} (known: {', '.join(sorted(reg))})") from None
