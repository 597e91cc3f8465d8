"""The stages of a build: classify, features, train, experiments, figures, render.

Each stage is a :class:`tlreport.build.Stage`: a cheap ``inputs`` function
(hashes only, no TensorFlow) and a ``run`` function that writes its outputs
into the folder it is given.  Heavy imports live inside ``run``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tlreport.build import BuildContext, Stage
from tlreport.cache import atomic_write_json, read_json, sha256_file
from tlreport.errors import UserError

# ----------------------------------------------------------------------------- helpers


def weights_id(spec) -> str:
    w = spec.weights
    return w.sha256 or w.md5 or w.artifact or w.kind


def _classify_sources(ctx: BuildContext):
    from tlreport.sources import resolve_image

    c = ctx.config["classify"]
    base = ctx.config.base_dir
    imgs = [resolve_image(r, base_dir=base, data_root=ctx.data_root) for r in c["images"]]
    oov = (resolve_image(c["out_of_vocabulary"], base_dir=base, data_root=ctx.data_root)
           if c["out_of_vocabulary"] else None)
    return imgs, oov


def _file_hash(ctx: BuildContext, path: Path) -> str:
    """sha256 of a file, memoised per build by (path, size, mtime)."""
    st = path.stat()
    return ctx.once(f"sha:{path}:{st.st_size}:{st.st_mtime_ns}", lambda: sha256_file(path))


def _version(dist: str, *alts: str) -> str:
    for d in (dist, *alts):
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


# ----------------------------------------------------------------------------- classify


def classify_inputs(ctx: BuildContext) -> dict:
    from tlreport.backbones import get_spec

    c = ctx.config["classify"]
    spec = get_spec(c["backbone"])
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    return {
        "spec": spec.fingerprint(), "weights": weights_id(spec), "top_k": c["top_k"],
        "images": [(s.ref, _file_hash(ctx, s.path)) for s in imgs],
        "oov": (oov.ref, _file_hash(ctx, oov.path), c["out_of_vocabulary_label"]) if oov else None,
    }


def _display_copy(src: Path, dest: Path, *, max_side: int = 480) -> tuple[int, int]:
    """A web-sized JPEG of a photo for the post; returns its size."""
    from PIL import Image

    from tlreport.datasets import BadImage, load_rgb

    try:
        img = load_rgb(src)
    except BadImage as e:
        raise UserError(f"cannot decode image {src}: {e}") from None
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, "JPEG", quality=88, optimize=True)
    return img.size


def classify_images(spec, paths: list[Path], *, cache_dir: Path, data_root: str | None,
                    top_k: int) -> list[list[tuple[str, float]]]:
    """Top-k ImageNet predictions for each image file, on ``spec``'s network."""
    import numpy as np

    from tlreport.datasets import BadImage, load_prepared
    from tlreport.labels import label_names, top_k as topk

    if spec.family == "inception_2015":
        from tlreport import fetch
        from tlreport.backbones.inception_2015 import Inception2015

        root = fetch.ensure("inception_2015", fetch.data_root(data_root))
        with Inception2015(Path(root)) as net:
            return [net.top_k(net.predict_jpeg(p.read_bytes())[1], top_k) for p in paths]
    batch = []
    for p in paths:
        try:
            batch.append(load_prepared(p, spec))
        except BadImage as e:
            raise UserError(f"cannot decode image {p}: {e}") from None
    from tlreport.backbones import load_model

    model = load_model(spec, cache_dir=cache_dir)
    probs = np.asarray(model(np.stack(batch).astype("float32"), training=False)["probs"])
    names = label_names(spec.label_set)
    return [topk(row, names, top_k) for row in probs]


def classify_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.backbones import get_spec

    c = ctx.config["classify"]
    spec = get_spec(c["backbone"])
    imgs, oov = ctx.once("classify.sources", lambda: _classify_sources(ctx))
    allsrc = imgs + ([oov] if oov else [])
    tops = classify_images(spec, [s.path for s in allsrc], cache_dir=ctx.cache_dir,
                           data_root=ctx.data_root, top_k=c["top_k"])
    rows = []
    for i, (s, top) in enumerate(zip(allsrc, tops, strict=True)):
        fname = f"{i:02d}-{_safe_name(s.name)}.jpg"
        w, h = _display_copy(s.path, out / "img" / fname)
        rows.append({"ref": s.ref, "name": s.name, "file": fname, "size": [w, h],
                     "sha256": _file_hash(ctx, s.path), "top": [[n, round(p, 6)] for n, p in top]})
        ctx.count("classify.images")
    atomic_write_json(out / "classify.json", {
        "backbone": spec.name, "top_k": c["top_k"],
        "images": rows[: len(imgs)], "oov": rows[-1] if oov else None,
        "oov_label": c["out_of_vocabulary_label"]})


def _safe_name(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in s)
    return keep.strip("-")[:40] or "image"


# ----------------------------------------------------------------------------- render


def render_inputs(ctx: BuildContext) -> dict:
    from tlreport.render import templates_fingerprint

    return {"post": ctx.config["post"], "templates": templates_fingerprint(_user_templates(ctx))}


def _user_templates(ctx: BuildContext) -> Path | None:
    t = ctx.config["post"]["templates"]
    if not t:
        return None
    p = ctx.config.resolve(t)
    if not p.is_dir():
        raise UserError(f"post.templates: folder not found (got {t!r})")
    return p


def _git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return ""
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def _classify_context(ctx: BuildContext, slug: str, site_out: Path) -> dict | None:
    from tlreport.backbones import get_spec

    d = ctx.outputs.get("classify")
    if d is None:
        return None
    res = read_json(d / "classify.json")
    spec = get_spec(res["backbone"])
    img_dir = site_out / "images" / slug / "classify"
    img_dir.mkdir(parents=True, exist_ok=True)

    def item(r: dict, caption: str) -> dict:
        shutil.copy2(d / "img" / r["file"], img_dir / r["file"])
        return {"title": r["name"].replace("_", " "), "src": f"images/{slug}/classify/{r['file']}",
                "caption": caption, "width": min(r["size"][0], 360),
                "top": [(n, p) for n, p in r["top"]]}

    images = [item(r, f"{r['name']} ({r['ref']})") for r in res["images"]]
    oov = None
    if res["oov"]:
        oov = item(res["oov"], f"{res['oov_label']} ({res['oov']['ref']})")
        oov["label"] = res["oov_label"]
    return {"spec": spec, "num_classes": 1000 if spec.num_classes in (1000, 1001, 1008) else spec.num_classes,
            "resize_to": round(spec.input_size / spec.crop_fraction), "top_k": res["top_k"],
            "images": images, "oov": oov, "panda": None}


def _provenance(ctx: BuildContext) -> dict:
    from tlreport import __version__
    from tlreport.backbones import get_spec

    names = []
    if ctx.config["classify"]["enabled"]:
        names.append(ctx.config["classify"]["backbone"])
    for b in ctx.config["features"]["backbones"]:
        if b not in names:
            names.append(b)
    backbones = []
    for n in names:
        s = get_spec(n)
        backbones.append({"name": n, "sha256": weights_id(s), "source": s.weights.describe(), "licence": s.licence})
    timings = []
    for name, d in ctx.outputs.items():
        meta = d / "_meta.json"
        if meta.is_file():
            timings.append((name, read_json(meta)["seconds"]))
    return {
        "version": __version__, "git": _git_commit(), "config_hash": ctx.config.hash(),
        "seed": ctx.config["seed"], "python": platform.python_version(),
        "tensorflow": _version("tensorflow-cpu", "tensorflow"), "keras": _version("keras"),
        "numpy": _version("numpy"), "sklearn": _version("scikit-learn"),
        "backbones": backbones, "datasets": ctx.memo.get("provenance.datasets", []),
        "machine": _machine(), "timings": timings,
    }


SECTION_CONTEXTS = {"classify": _classify_context}


def render_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.cache import atomic_write_text
    from tlreport.render import markdown_to_preview, render_post

    post = dict(ctx.config["post"])
    slug = post["slug"]
    site_out = out / "site"
    sections = {name: fn(ctx, slug, site_out) for name, fn in SECTION_CONTEXTS.items()}
    for name in ("transfer", "replication"):
        sections.setdefault(name, None)
    post["intro"] = ("This post reproduces a classic TensorFlow tutorial on transfer learning with "
                     "tlreport: every number, table and figure below was computed by the build from the "
                     "config next to it, and none was typed in.")
    post["excerpt"] = post["description"]
    context = {"post": post, "prov": _provenance(ctx), **sections}
    user = _user_templates(ctx)
    md_jekyll = render_post(context, user_dir=user, target="jekyll")
    md_preview = render_post(context, user_dir=user, target="preview")
    atomic_write_text(site_out / "_posts" / f"{post['date']}-{slug}.md", md_jekyll)
    atomic_write_text(site_out / "preview" / f"{slug}.html",
                      markdown_to_preview(md_preview, title=post["title"], user_dir=user))


STAGES: list[Stage] = [
    Stage("classify", "1", (), classify_inputs, classify_run,
          enabled=lambda ctx: ctx.config["classify"]["enabled"]),
    Stage("render", "1", ("classify",), render_inputs, render_run),
]

del sys
