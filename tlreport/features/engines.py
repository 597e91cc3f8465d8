"""Which engine runs the backbone for extraction: TensorFlow (the reference) or OpenVINO.

Keras defines every model either way.  With ``features.engine = "openvino"``
the backbone's features sub-model is traced once (a ``tf.function``),
converted by OpenVINO, saved with float32 weights and cached under
``cache_dir/engines/``, keyed by the backbone's feature key (spec, weights
hash, precision, engine) and the OpenVINO version; later builds load the
converted file.  OpenVINO's features differ from TensorFlow's in the last
bits (about 1e-5 for EfficientNet-Lite0, tested to be under 1e-4), so the
engine is part of the feature-cache key: each engine's features are cached
apart.

OpenVINO's model converter sends usage telemetry unless told not to; tlreport
blocks its telemetry package before the converter is imported
(:func:`block_telemetry`), so the converter falls back to its built-in no-op
stub: nothing is sent and no consent file is written.

Precision is explicit: OpenVINO runs bf16 by default on CPUs with AVX-512
BF16 or AMX, so the float32 spec sets ``INFERENCE_PRECISION_HINT=f32``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tlreport.errors import UserError
from tlreport.util.text import first_line

ENGINES = ("tensorflow", "openvino")


INSTALL_HINT = "features.engine = 'openvino' needs OpenVINO: pip install -e '.[openvino]' (or pip install openvino)"


def auto_engine(cpu_flags: frozenset[str] | set[str], *, gpu: bool | None = None) -> str:
    """``features.engine = "auto"``: OpenVINO where it is installed and was measured faster, else TensorFlow.

    Measured on the real Caltech-101's ``features`` stage (the three EfficientNet-Lites, 9,145 images,
    2 cores), OpenVINO float32 against TensorFlow float32, every feature within 2.7e-5 of TensorFlow's:
    on an AMD EPYC 1.84x as fast with AVX-512 (326 s against 600 s) and 2.26x with AVX2 only (414 s
    against 935 s); on an Intel Xeon with AVX-512 and AMX 2.05x (159 s against 327 s).  On a CPU
    with neither (not measured), TensorFlow, the reference, stays; so it does on a machine with a
    GPU TensorFlow can use (OpenVINO runs here on the CPU).  ``gpu`` defaults to
    :func:`cuda_tensorflow`, which does not import TensorFlow.
    """
    import importlib.util

    if gpu is None:
        gpu = cuda_tensorflow()
    if not gpu and {"avx2", "avx512f"} & set(cpu_flags) and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "tensorflow"


def cuda_tensorflow() -> bool:
    """TensorFlow's CUDA build installed (not ``tensorflow-cpu``) and an NVIDIA driver present: the
    machine can extract on a GPU.  Checked without importing TensorFlow (a no-op build stays fast)."""
    from importlib import metadata

    try:
        metadata.distribution("tensorflow")
    except metadata.PackageNotFoundError:
        return False
    return Path("/dev/nvidiactl").exists()


#: The CPU kinds (each a set of flags it must have) on which OpenVINO bf16 features kept every row of
#: the Caltech-101 Zeiler & Fergus table, both heads, within 0.15 points of OpenVINO float32's (docs/performance.md,
#: *Faster extraction*; ``benchmarks/features_precision.py`` runs the check).  None so far: on the Intel
#: Xeon with AMX ``softmax_sgd``'s Lite0 and ``logreg``'s Lite2 at 30 per class fell by 0.167 and 0.163;
#: on the AMD EPYC with AVX-512 BF16 only the earlier release's bf16 path was checked, with ``logreg``
#: only.  A flag such as ``amx_bf16`` stands for every CPU generation that has it: add a kind only
#: with the CPU it was measured on named beside it.
BF16_TABLES_HELD: tuple[frozenset[str], ...] = ()


def auto_precision(engine: str, cpu_flags: frozenset[str] | set[str]) -> str:
    """``features.precision = "auto"``: bf16 where it is faster and every row of the table held.

    bf16 is faster with OpenVINO wherever the CPU has native bf16, but the check that decides is the
    tables, not the speed, and bf16 has passed it on no CPU kind yet (:data:`BF16_TABLES_HELD`), so
    ``auto`` is float32 until one passes.  TensorFlow's own bf16 (Keras mixed_bfloat16) was slower
    than its float32, so it is never automatic.  Measurements: docs/performance.md.
    """
    held = any(kind <= cpu_flags for kind in BF16_TABLES_HELD)
    return "bfloat16" if engine == "openvino" and held else "float32"


def block_telemetry() -> None:
    """Make ``import openvino_telemetry`` fail, so OpenVINO's converter uses its no-op telemetry stub."""
    if sys.modules.get("openvino_telemetry") is not None:
        return                                  # imported by someone else first: their choice stands
    sys.modules["openvino_telemetry"] = None    # type: ignore[assignment]  # None in sys.modules: ImportError


def openvino_version() -> str:
    """The installed OpenVINO's version, or a one-line error naming the install command."""
    block_telemetry()
    try:
        import openvino as ov
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return str(ov.get_version())


class OpenVINOBackbone:
    """A compiled OpenVINO model with the extraction contract: float32 RGB (B, S, S, 3) in, ``{"features"}`` out.

    Each image is its own inference request, and the requests of a batch run on
    the compiled model's streams side by side (an ``AsyncInferQueue``).  So an
    image's features do not depend on which images share its batch, nor on
    ``features.batch_size``.
    """

    def __init__(self, compiled: Any, xml: Path) -> None:
        import openvino as ov

        self.compiled = compiled
        self.xml = xml
        self._queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue.set_callback(self._store)
        self._out: np.ndarray | None = None

    def _store(self, request: Any, row: int) -> None:
        assert self._out is not None
        self._out[row] = request.get_output_tensor(0).data[0]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        width = int(self.compiled.output(0).get_partial_shape()[-1].get_length())
        self._out = out = np.empty((len(x), width), np.float32)
        try:
            for row in range(len(x)):
                self._queue.start_async({0: x[row:row + 1]}, row)
            self._queue.wait_all()
        finally:
            self._out = None
        return {"features": out}


def converted_path(cache_dir: Path, key: str) -> Path:
    """Where the OpenVINO conversion of the backbone with feature ``key`` lives, one folder per OpenVINO build.

    The full version string names the build (``2026.4.1-22982-e213a147257-releases/2026/4``); its
    slashes and any other character a file name should not hold become ``_``, so it stays one folder.
    """
    build = re.sub(r"[^A-Za-z0-9._-]", "_", openvino_version())
    return Path(cache_dir) / "engines" / f"openvino-{build}" / key[:24] / "model.xml"


def load_keras_model(spec: Any, *, cache_dir: Path, data_root: str | None) -> Any:
    """The backbone's Keras model, built in the precision TensorFlow runs it in for ``spec``.

    OpenVINO converts the float32 network whatever the precision and runs it in bf16 by its own
    precision hint: converted, Keras' mixed_bfloat16 network keeps its bf16 casts, which OpenVINO ran
    slower.  TensorFlow runs bf16 by Keras' mixed policy.
    """
    from tlreport.backbones import load_model

    if spec.engine != "tensorflow":
        return load_model(spec.with_precision("float32"), cache_dir=cache_dir, data_root=data_root)
    if spec.precision == "bfloat16":
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            return load_model(spec, cache_dir=cache_dir, data_root=data_root)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    return load_model(spec, cache_dir=cache_dir, data_root=data_root)


def load_extractor(spec: Any, *, cache_dir: Path, data_root: str | None, key: str,
                   threads: int | None = None) -> Any:
    """What computes ``spec``'s features on this machine: its Keras model, or that model's OpenVINO
    conversion (``key``: the feature key of the unmirrored backbone, which names the converted file;
    ``threads``: OpenVINO's inference threads, default every core)."""
    def keras_model() -> Any:
        return load_keras_model(spec, cache_dir=cache_dir, data_root=data_root)

    if spec.engine == "tensorflow":
        return keras_model()
    return openvino_backbone(spec, build_keras=keras_model, cache_dir=cache_dir, key=key, threads=threads)


def openvino_backbone(spec: Any, *, build_keras: Callable[[], Any], cache_dir: Path, key: str,
                      threads: int | None = None) -> OpenVINOBackbone:
    """The backbone's features as an OpenVINO model, converted once per (feature key, OpenVINO version).

    ``build_keras()`` gives the backbone's Keras model; it is called only when no conversion is cached
    (building the three EfficientNet-Lites took 11 s of a Caltech-101 features stage; a backbone only
    the experiments use is then never built).
    """
    ver = openvino_version()
    import openvino as ov

    xml = converted_path(cache_dir, key)
    if not xml.is_file():
        _convert(build_keras(), xml)
    precision = {"float32": "f32", "bfloat16": "bf16"}[spec.precision]
    core = ov.Core()
    threads = int(threads or os.cpu_count() or 1)
    # one single-threaded stream per core, each image its own request (OpenVINOBackbone): on 2 cores of
    # an AMD EPYC (AVX-512, bf16) that ran all three EfficientNet-Lites 1.2-1.4x as fast as one 2-thread
    # stream on batches of 32, in float32 and bf16 (benchmarks/extract.py --openvino).  The layout
    # changes the features' last bits: change it, bump "openvino" in backbones.spec.ENGINE_REVISIONS.
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT",
              "NUM_STREAMS": threads, "INFERENCE_NUM_THREADS": threads}
    try:
        compiled = core.compile_model(str(xml), "CPU", config)
    except RuntimeError as e:
        raise UserError(f"OpenVINO {ver} could not compile {spec.name} ({first_line(e, 160)})") from None
    return OpenVINOBackbone(compiled, xml)


def features_submodel(keras_model: Any) -> Any:
    """The backbone's Keras model cut at its ``features`` output: what OpenVINO converts."""
    import keras

    struct = keras_model.output
    features = struct["features"] if isinstance(struct, dict) else keras_model.outputs[0]
    return keras.Model(keras_model.inputs, features, name="features")


def _convert(keras_model: Any, xml: Path) -> None:
    """Keras features sub-model -> OpenVINO IR (float32 weights), written atomically.

    The sub-model is traced in memory (a ``tf.function`` on float32 images) and converted from
    that graph: the same bits as through a SavedModel on disk, without the slow export
    (``benchmarks/convert.py`` compares them).
    """
    import tensorflow as tf

    block_telemetry()
    import openvino as ov

    sub = features_submodel(keras_model)
    shape = [None, *keras_model.inputs[0].shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def run(image: Any) -> Any:
        return sub(image, training=False)

    ov_model = ov.convert_model(run.get_concrete_function())
    xml.parent.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=xml.parent.parent))
    try:
        ir = work / "ir"
        ir.mkdir()
        # compress_to_fp16=False: OpenVINO would otherwise store the weights in float16
        ov.save_model(ov_model, str(ir / "model.xml"), compress_to_fp16=False)
        try:
            os.replace(ir, xml.parent)
        except OSError:
            if not xml.is_file():               # not another build's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
