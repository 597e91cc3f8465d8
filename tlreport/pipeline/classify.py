"""The classify stage: top-k ImageNet predictions for the demo photos."""

from __future__ import annotations

import os
from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.feature_sets import backbone_code, weights_id
from tlreport.util.files import atomic_write_json
from tlreport.util.paths import shipped_path


def _classify_sources(ctx: BuildContext):
    from tlreport.datasets.sources import resolve_image

    c = ctx.config.classify
    base = ctx.config.base_dir
    download = not ctx.read_only

    def resolve(ref: str):
        # dataset:PATH is a file of the post's own dataset (wherever --dataset points it), e.g. its panda
        if ref.startswith("dataset:"):
            from tlreport.datasets.sources import ImageSource
            from tlreport.pipeline.data import dataset_root, transfer_use
            from tlreport.util.paths import is_within

            root = dataset_root(ctx, transfer_use(ctx).ref)
            path = root / ref.split(":", 1)[1]
            if not path.is_file() or not is_within(os.path.realpath(path), os.path.realpath(root)):
                raise UserError(f"{ref}: no such file in the dataset {root}")
            return ImageSource(ref=ref, path=path, name=f"{path.parent.name}/{path.stem}")
        return resolve_image(ref, base_dir=base, data_root=ctx.data_root, download=download)

    imgs = [resolve(r) for r in c.images]
    oov = (resolve_image(c.out_of_vocabulary, base_dir=base, data_root=ctx.data_root, download=download)
           if c.out_of_vocabulary else None)
    return imgs, oov


# ----------------------------------------------------------------------------- classify


def classify_inputs(ctx: BuildContext) -> dict:
    from tlreport.backbones import get_spec

    c = ctx.config.classify
    spec = get_spec(c.backbone)
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    if ctx.read_only:                           # a plan names the weights a real build would fetch
        from tlreport.backbones.identity import weights_download
        from tlreport.errors import NeedsDownload

        if needed := weights_download(spec, data_root=ctx.data_root):
            raise NeedsDownload([needed])
    return {
        "spec": spec.fingerprint(), "weights": weights_id(ctx, spec.name), "top_k": c.top_k,
        "backbone_code": backbone_code(spec), "labels": ctx.file_hash(shipped_path("data", "imagenet_classes.tsv")),
        "images": [(s.ref, ctx.file_hash(s.path)) for s in imgs],
        "oov": (oov.ref, ctx.file_hash(oov.path), c.out_of_vocabulary_label) if oov else None,
    }


def _display_copy(src: Path, dest: Path, *, max_side: int = 320) -> tuple[int, int]:
    """A web-sized JPEG of a photo for the post (twice the ~160 px it is shown at); returns its size."""
    from PIL import Image

    from tlreport.datasets.images import BadImage, load_rgb

    try:
        img = load_rgb(src)
    except BadImage as e:
        raise UserError(f"cannot decode image {src}: {e}") from None
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, "JPEG", quality=82, optimize=True)
    return img.size


def classify_images(spec, paths: list[Path], *, cache_dir: Path, data_root: str | None,
                    top_k: int) -> list[list[tuple[str, float]]]:
    """Top-k ImageNet predictions for each image file, on ``spec``'s network."""
    import numpy as np

    from tlreport.backbones.labels import label_names
    from tlreport.backbones.labels import top_k as topk
    from tlreport.datasets.images import BadImage, load_prepared, load_rgb
    from tlreport.util.text import display_name

    if spec.family == "inception_2015":
        from tlreport.artifacts.install import ensure
        from tlreport.artifacts.registry import data_root as default_data_root
        from tlreport.backbones.inception_2015 import Inception2015

        for p in paths:           # the graph's own JPEG decoder would raise on a bad file: check them first
            try:
                load_rgb(p)
            except BadImage as e:
                raise UserError(f"cannot decode image {display_name(str(p))}: {e}") from None
        root = ensure("inception_2015", default_data_root(data_root))
        with Inception2015(Path(root)) as net:
            return [net.top_k(net.predict_jpeg(p.read_bytes())[1], top_k) for p in paths]
    batch = []
    for p in paths:
        try:
            batch.append(load_prepared(p, spec))
        except BadImage as e:
            raise UserError(f"cannot decode image {display_name(str(p))}: {e}") from None
    from tlreport.backbones import load_model

    model = load_model(spec, cache_dir=cache_dir, data_root=data_root)
    probs = np.asarray(model(np.stack(batch).astype("float32"), training=False)["probs"])
    names = label_names(spec.label_set)
    return [topk(row, names, top_k) for row in probs]


def classify_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.backbones import get_spec

    c = ctx.config.classify
    spec = get_spec(c.backbone)
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    allsrc = imgs + ([oov] if oov else [])
    tops = classify_images(spec, [s.path for s in allsrc], cache_dir=ctx.cache_dir,
                           data_root=ctx.data_root, top_k=c.top_k)
    rows = []
    for i, (s, top) in enumerate(zip(allsrc, tops, strict=True)):
        fname = f"{i:02d}-{_safe_name(s.name)}.jpg"
        w, h = _display_copy(s.path, out / "img" / fname)
        rows.append({"ref": s.ref, "name": s.name, "file": fname, "size": [w, h],
                     "sha256": ctx.file_hash(s.path), "top": [[n, round(p, 6)] for n, p in top]})
        ctx.count("classify.images")
    atomic_write_json(out / "classify.json", {
        "backbone": spec.name, "top_k": c.top_k,
        "images": rows[: len(imgs)], "oov": rows[-1] if oov else None,
        "oov_label": c.out_of_vocabulary_label})


def _safe_name(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in s)
    return keep.strip("-")[:40] or "image"
