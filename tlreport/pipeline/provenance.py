"""What the post's provenance box prints: versions, machine, hashes, timings.

Where the numbers were computed is recorded by the stages that computed them
(:func:`environment`, kept in each computing stage's ``_meta.json`` by the
engine); the render stage only reads it, so a post re-rendered elsewhere from a
cache still names the machine and the libraries that made its numbers.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.pipeline.feature_sets import weights_id
from tlreport.util.cpu import BF16_FLAGS, cpu_flags
from tlreport.util.files import read_json


def _version(dist: str, *alts: str) -> str:
    for d in (dist, *alts):
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


#: the checkout holding tlreport/
_CHECKOUT = Path(__file__).resolve().parents[2]


def _git_commit(here: Path = _CHECKOUT) -> str:
    if not (here / ".git").exists():
        return ""
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


#: what a post's text and figures are made from, besides the config and the dataset: a change here that is
#: not committed means the named commit alone does not render the same post
RENDER_INPUTS = ("tlreport", "templates", "data")


def render_git(here: Path = _CHECKOUT) -> dict:
    """The commit the render runs at, and whether its code, templates or data have uncommitted changes.

    The computing stages record the commit they ran at (:func:`environment`); a cached stage keeps that
    commit, so a post rendered later names both: the first computed its numbers, the second wrote it.
    """
    commit = _git_commit(here)
    if not commit:
        return {"commit": "", "modified": False}
    try:
        r = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--",
                            *RENDER_INPUTS], capture_output=True, text=True, timeout=5)
        modified = r.returncode == 0 and bool(r.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        modified = False
    return {"commit": commit, "modified": modified}


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


def environment() -> dict:
    """Where a computing stage runs: this machine, the libraries that compute, tlreport's version and commit."""
    from tlreport import __version__

    return {"machine": _machine(), "python": platform.python_version(),
            "tensorflow": _version("tensorflow-cpu", "tensorflow"), "keras": _version("keras"),
            "numpy": _version("numpy"), "scipy": _version("scipy"), "sklearn": _version("scikit-learn"),
            "version": __version__, "git": _git_commit()}


#: the stages whose numbers the post reports, the one that made its tables last (its libraries are named)
COMPUTING_STAGES = ("classify", "features", "train", "experiments")


def recorded_environments(ctx: BuildContext) -> list[tuple[str, dict]]:
    """``(stage, environment)`` of each computing stage of this build, as the stage recorded it."""
    found = []
    for name in COMPUTING_STAGES:
        meta = ctx.outputs[name] / "_meta.json" if name in ctx.outputs else None
        env = read_json(meta).get("environment") if meta is not None and meta.is_file() else None
        if env:
            found.append((name, env))
    return found


def machines_line(envs: list[tuple[str, dict]]) -> str:
    """One machine, or each with the stages that ran on it: ``A (classify, features); B (train)``."""
    by_machine: dict[str, list[str]] = {}
    for stage, env in envs:
        by_machine.setdefault(env.get("machine", "unknown"), []).append(stage)
    if len(by_machine) <= 1:
        return next(iter(by_machine), "")
    return "; ".join(f"{m} ({', '.join(stages)})" for m, stages in by_machine.items())


def _provenance(ctx: BuildContext) -> dict:
    from tlreport.backbones import get_spec
    from tlreport.pipeline.feature_sets import feature_jobs, resolved_spec

    cfg = ctx.config
    envs = recorded_environments(ctx)
    libraries = envs[-1][1] if envs else {}        # the libraries of the stage that made the tables
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
        **{k: libraries.get(k, "" if k == "git" else "not recorded")
           for k in ("version", "git", "python", "tensorflow", "keras", "numpy", "scipy", "sklearn")},
        # asked of git once per build: the render's key and the post must see the same state
        "rendered": ctx.once("render_git", render_git),
        "config_hash": ctx.config.hash(), "seed": ctx.config.seed,
        "backbones": backbones, "engine": _engine(spec.engine if spec else cfg.features.engine),
        "precision": spec.precision if spec else cfg.features.precision,
        "head_precision": _head_precision(ctx),
        "datasets": ctx.memo.get("provenance.datasets", []),
        "machine": machines_line(envs) or "not recorded", "timings": timings,
    }
