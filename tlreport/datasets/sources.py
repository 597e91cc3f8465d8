"""Image sources named in the config.

``skimage:NAME``, ``matplotlib:NAME`` and ``sklearn:NAME`` are photos that ship
inside those installed packages, so the offline default needs no download.
``artifact:NAME/PATH`` is a file inside a fetched artifact (the seed's
``cropped_panda.jpg`` lives in ``inception_2015``).  Anything else is a path,
relative to the config file.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tlreport.errors import NeedsDownload, UserError

_PACKAGES = {
    "skimage": ("skimage", "data"),
    "matplotlib": ("matplotlib", "mpl-data/sample_data"),
    "sklearn": ("sklearn", "datasets/images"),
}


@dataclass(frozen=True)
class ImageSource:
    ref: str          # as written in the config
    path: Path
    name: str         # short display name, e.g. "chelsea"


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {pkg!r} is not installed; it provides the bundled demo photos")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_image(ref: str, *, base_dir: Path, data_root: str | None = None, download: bool = True) -> ImageSource:
    """Where an image reference (``skimage:NAME``, ``artifact:NAME/PATH``, a path) is on disk.

    An artifact that is not installed is fetched, or with ``download=False``
    raises :class:`~tlreport.errors.NeedsDownload`.
    """
    prefix, sep, rest = ref.partition(":")
    if sep and prefix in _PACKAGES:
        pkg, sub = _PACKAGES[prefix]
        folder = _package_dir(pkg) / sub
        path = folder / rest
        if Path(rest).name != rest or rest in ("", ".", "..") or not path.is_file():   # a bare file name only
            avail = sorted(p.name for p in folder.glob("*") if p.suffix in (".png", ".jpg"))
            raise UserError(f"{ref}: no such bundled image (available: {', '.join(avail)})")
    elif sep and prefix == "artifact":
        from tlreport.artifacts.install import artifact_state, download_note, ensure
        from tlreport.artifacts.registry import data_root as default_data_root

        name, _, inner = rest.partition("/")
        root_dir = default_data_root(data_root)
        if not download and artifact_state(name, root_dir) != "present-verified":
            raise NeedsDownload([download_note(name)])
        root = ensure(name, root_dir, allow_download=True)
        path = Path(root) / inner
        if not path.is_file():
            raise UserError(f"{ref}: {inner!r} not found inside artifact {name!r} at {root}")
    else:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise UserError(f"image not found: {ref} (looked at {path})")
    return ImageSource(ref=ref, path=path, name=path.stem)
