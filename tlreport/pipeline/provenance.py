"""What the post's provenance box prints: versions, machine, hashes, timings."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.pipeline.resources import BF16_FLAGS, cpu_flags, weights_id
from tlreport.util.files import read_json


def _version(dist: str, *alts: str) -> str:
    for d in (dist, *alts):
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _git_commit() -> str:
    here = Path(__file__).resolve().parents[2]     # the checkout holding tlreport/
    if not (here / ".git").exists():
        return ""
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _machine() -> str:
    isa = vector_isa(cpu_flags())
    return f"{_cpu_name()}{f' ({isa})' if isa else ''}, {os.cpu_count()} cores, {platform.system()}"


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return cpu_model_name(text) or platform.processor() or platform.machine()


def cpu_model_name(cpuinfo: str) -> str:
    """The first ``model name`` of a ``/proc/cpuinfo`` text without trademark marks ("Intel Xeon
    Processor", not "Intel(R) Xeon(R) Processor"), or "" when it has none."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return " ".join(re.sub(r"\((?:R|TM)\)", " ", line.split(":", 1)[1], flags=re.IGNORECASE).split())
    return ""


def vector_isa(flags: frozenset[str] | set[str]) -> str:
    """The widest vector instructions in ``flags``, in words ("AVX-512 with bf16", "AVX2", or "").

    Two machines sold under one name ("AMD EPYC") can differ here, and this is what picks TensorFlow's
    and OpenVINO's kernels: the features, and so a table's last decimal, can differ between them.
    """
    if "avx512f" in flags:
        return "AVX-512 with bf16" if BF16_FLAGS & set(flags) else "AVX-512"
    return "AVX2" if "avx2" in flags else ""


def _engine(engine: str) -> str:
    """The extraction engine in words: "TensorFlow" or "OpenVINO 2026.4.1"."""
    if engine == "openvino":
        from tlreport.features.engines import openvino_version

        return f"OpenVINO {openvino_version().split('-')[0]}"
    return "TensorFlow"


def _head_precision(ctx: BuildContext) -> dict:
    """The precision the experiments trained their heads in, and the heads that have one (the others, such
    as logreg, have none); empty when no experiment trained such a head."""
    from tlreport.pipeline.experiments import experiments_heads

    if "experiments" not in ctx.outputs:
        return {}
    heads = [h for h in experiments_heads(ctx) if hasattr(h, "precision")]
    return {"precision": heads[0].precision, "heads": [h.name for h in heads]} if heads else {}


def _provenance(ctx: BuildContext) -> dict:
    from tlreport import __version__
    from tlreport.backbones import get_spec
    from tlreport.pipeline.resources import feature_jobs, resolved_spec

    cfg = ctx.config
    names = [cfg.classify.backbone] if cfg.classify.enabled else []
    jobs = feature_jobs(ctx)
    names += [variant.backbone for _, variant in jobs]     # what the build ran, nothing else
    names = list(dict.fromkeys(names))
    backbones = []
    for n in names:
        s = get_spec(n)
        backbones.append({"name": n, "weights": weights_id(ctx, n), "source": s.weights.describe(), "licence": s.licence,
                          "pretrained": s.weights.kind != "random"})
    timings = []
    for name, d in ctx.outputs.items():
        meta = d / "_meta.json"
        if meta.is_file():
            timings.append((name, read_json(meta)["seconds"]))
    spec = resolved_spec(ctx, jobs[0][1]) if jobs else None
    features_json = ctx.outputs["features"] / "features.json" if "features" in ctx.outputs else None
    features_run = read_json(features_json) if features_json and features_json.is_file() else {}
    return {
        "computed_on": ", ".join(features_run.get("computed_on", [])),
        "features_extracted": features_run.get("extracted"),
        "version": __version__, "git": _git_commit(), "config_hash": ctx.config.hash(),
        "seed": ctx.config.seed, "python": platform.python_version(),
        "tensorflow": _version("tensorflow-cpu", "tensorflow"), "keras": _version("keras"),
        "numpy": _version("numpy"), "sklearn": _version("scikit-learn"),
        "backbones": backbones, "engine": _engine(spec.engine if spec else cfg.features.engine),
        "precision": spec.precision if spec else cfg.features.precision,
        "head_precision": _head_precision(ctx),
        "datasets": ctx.memo.get("provenance.datasets", []),
        "machine": _machine(), "timings": timings,
    }
