"""Bottleneck extraction: images decoded in parallel, batched through the backbone, written to the store."""

from __future__ import annotations

import hashlib
import os
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from tlreport.datasets.images import DEFAULT_MAX_PIXELS, BadImage, display_name, load_prepared
from tlreport.datasets.scan import Entry, Manifest
from tlreport.errors import UserError
from tlreport.features.store import FeatureStore, backbone_key, feature_dtype
from tlreport.util.progress import bar

# --------------------------------------------------------------------------- the pipeline

def _is_keras(model: Any) -> bool:
    keras = sys.modules.get("keras")  # a Keras model implies Keras is imported already
    return keras is not None and isinstance(model, keras.Layer)


_FN_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[int, tuple[str, ...]], Callable[[np.ndarray], np.ndarray]]] = \
    weakref.WeakKeyDictionary()


def batch_function(model: Any, spec: Any, devices: Sequence[str] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (B, S, S, 3) -> float32 (B, D) features.

    A Keras model is wrapped in one ``tf.function`` with a fixed input
    signature (the cast to float32 happens inside the graph); any other
    callable gets float32 in [0, 255] and must return a dict with "features".

    With several ``devices`` (default: :func:`~tlreport.backbones.device.extraction_devices`,
    every GPU, or the logical CPUs the CPU was split into), each batch is split
    into near-equal parts, one per device, which TensorFlow runs side by side in
    the same graph; the features are those of one device, in the same order.
    """
    s = int(spec.input_size)
    if _is_keras(model):
        if devices is None:
            from tlreport.backbones.device import extraction_devices

            devices = extraction_devices()
        devices = tuple(devices)
        cached = _FN_CACHE.get(model, {}).get((s, devices))
        if cached is not None:
            return cached
        import tensorflow as tf

        ref = weakref.ref(model)  # the cache must not keep the model alive

        def features(x: Any) -> Any:
            return tf.cast(ref()(tf.cast(x, tf.float32), training=False)["features"], tf.float32)

        if len(devices) <= 1:
            @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8)], reduce_retracing=True)
            def run(x: Any) -> Any:
                return features(x)

            def keras_call(x: np.ndarray) -> np.ndarray:
                return run(x).numpy()
        else:
            split_fns: dict[int, Any] = {}

            def split_fn(k: int) -> Any:
                """The graph for a batch in ``k`` parts on the first ``k`` devices (a batch smaller than
                the device count uses fewer: an empty part does not go through every model)."""
                if k not in split_fns:
                    @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8)] * k,
                                 reduce_retracing=True)
                    def run_split(*parts: Any) -> Any:
                        outs = []
                        for device, part in zip(devices, parts, strict=False):
                            with tf.device(device):
                                outs.append(features(part))
                        return tf.concat(outs, axis=0)

                    split_fns[k] = run_split
                return split_fns[k]

            def keras_call(x: np.ndarray) -> np.ndarray:
                k = max(1, min(len(devices), len(x)))
                return split_fn(k)(*np.array_split(x, k)).numpy()

        _FN_CACHE.setdefault(model, {})[(s, devices)] = keras_call  # trace once per model, not per call
        return keras_call

    def call(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x.astype(np.float32))["features"], dtype=np.float32)

    return call


_OK, _MISSING, _CHANGED, _BAD = 0, 1, 2, 3
_STATUS = {_MISSING: "vanished or unreadable", _CHANGED: "content changed", _BAD: "no longer decodes"}


def stale_image_error(e: Entry, status: int) -> UserError:
    """The one line for an image that changed (or vanished, or stopped decoding) since the scan."""
    return UserError(f"{display_name(e.relpath)}: {_STATUS[status]} since the dataset was scanned; run the "
                     f"build again to rescan it (features computed so far are kept)")


def prepare_bytes(data: bytes, spec: Any, max_pixels: int) -> tuple[np.ndarray, int]:
    """Encoded image -> (prepared uint8 (S, S, 3), ``_OK``), or zeros and ``_BAD`` if it does not decode."""
    try:
        return load_prepared(data, spec, max_pixels=max_pixels), _OK
    except BadImage:
        s = int(spec.input_size)
        return np.zeros((s, s, 3), np.uint8), _BAD


def _decoder(spec: Any, max_pixels: int) -> Callable[[str, str], tuple[np.ndarray, int]]:
    s = int(spec.input_size)

    def decode(path: str, sha: str) -> tuple[np.ndarray, int]:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return np.zeros((s, s, 3), np.uint8), _MISSING
        if hashlib.sha256(data).hexdigest() != sha:
            return np.zeros((s, s, 3), np.uint8), _CHANGED
        return prepare_bytes(data, spec, max_pixels)

    return decode


def _tfdata_batches(paths: Sequence[str], shas: Sequence[str], spec: Any, batch_size: int, workers: int,
                    max_pixels: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """tf.data: parallel read+decode+prepare (PIL in ``tf.numpy_function``), batch, prefetch."""
    import tensorflow as tf

    s = int(spec.input_size)
    decode = _decoder(spec, max_pixels)

    def py(path: bytes, sha: bytes) -> tuple[np.ndarray, np.int32]:
        img, status = decode(os.fsdecode(path), sha.decode())
        return img, np.int32(status)

    def tf_map(path: Any, sha: Any) -> tuple[Any, Any]:
        img, status = tf.numpy_function(py, [path, sha], [tf.uint8, tf.int32], stateful=False)
        img.set_shape([s, s, 3])
        status.set_shape([])
        return img, status

    ds = tf.data.Dataset.from_tensor_slices(([os.fsencode(p) for p in paths], list(shas)))
    ds = ds.map(tf_map, num_parallel_calls=workers, deterministic=True)
    ds = ds.batch(batch_size).prefetch(2)
    opts = tf.data.Options()
    opts.autotune.enabled = False  # AUTOTUNE can stall 10-40 s on iterator teardown
    opts.threading.private_threadpool_size = max(2, workers)
    opts.deterministic = True
    ds = ds.with_options(opts)
    yield from ds.as_numpy_iterator()


def _thread_batches(paths: Sequence[str], shas: Sequence[str], spec: Any, batch_size: int, workers: int,
                    max_pixels: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A plain thread pool (PIL releases the GIL in decode/resize), in order, 2 batches ahead."""
    decode = _decoder(spec, max_pixels)
    window = batch_size * 3
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[tuple[np.ndarray, int]]] = deque()
        todo = iter(zip(paths, shas, strict=True))
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                nxt = next(todo, None)
                if nxt is None:
                    exhausted = True
                else:
                    pending.append(pool.submit(decode, *nxt))
            if not pending:
                return
            take = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            yield np.stack([t[0] for t in take]), np.array([t[1] for t in take], dtype=np.int32)


LOADERS = {"tfdata": _tfdata_batches, "threads": _thread_batches}

# entries whose features are missing -> (entries, their features (len, D)) per batch, in any order
BatchSource = Callable[[list[Entry]], Iterator[tuple[list[Entry], np.ndarray]]]


def _feature_batches(entries: Sequence[Entry], root: str, spec: Any, fn: Callable[[np.ndarray], np.ndarray], *,
                     batch_size: int, workers: int | None, max_pixels: int,
                     loader: str) -> Iterator[tuple[list[Entry], np.ndarray]]:
    paths = [os.path.join(root, *e.relpath.split("/")) for e in entries]
    batches = LOADERS[loader](paths, [e.sha256 for e in entries], spec, batch_size,
                              workers or os.cpu_count() or 1, max_pixels)
    start = 0
    for imgs, status in batches:
        chunk = list(entries[start:start + len(imgs)])
        start += len(imgs)
        bad = np.flatnonzero(status != _OK)
        if bad.size:
            raise stale_image_error(chunk[int(bad[0])], int(status[bad[0]]))
        feats = fn(imgs)
        if feats.shape != (len(imgs), spec.feature_dim):
            raise ValueError(f"model returned features of shape {feats.shape}; spec {spec.name} "
                             f"says ({len(imgs)}, {spec.feature_dim})")
        yield chunk, feats


def extract_shard(entries: Sequence[Entry], root: str | os.PathLike, spec: Any, model: Any, *,
                  batch_size: int = 32, workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  loader: str = "tfdata") -> np.ndarray:
    """Pure: features (len(entries), D) float32 for a list of manifest entries (no cache)."""
    fn = batch_function(model, spec)
    out = np.empty((len(entries), spec.feature_dim), np.float32)
    i = 0
    for chunk, feats in _feature_batches(entries, os.fspath(root), spec, fn, batch_size=batch_size,
                                         workers=workers, max_pixels=max_pixels, loader=loader):
        out[i:i + len(chunk)] = feats
        i += len(chunk)
    return out


def extract_features(manifest: Manifest, spec: Any, store: FeatureStore, *, model: Any, batch_size: int = 32,
                     shard_size: int = 512, progress: bool = True, on_batch: Callable[[int], None] | None = None,
                     key: str | None = None, workers: int | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, loader: str = "tfdata",
                     batches: BatchSource | None = None) -> np.ndarray:
    """Features (N, D) float32 aligned with ``manifest.entries``, computing only what the store lacks.

    Each ``shard_size`` rows are flushed as one shard as soon as they are
    computed; an exception or Ctrl-C flushes the completed rows too, so a
    rerun resumes where this one stopped.  ``on_batch(n)`` is called with the
    number of images computed in each batch.  ``key`` defaults to
    :func:`backbone_key` of ``spec``.  ``batches(missing_entries)`` computes
    elsewhere (:mod:`tlreport.features.ray_runner`): it yields (entries, features)
    in any order, and ``model`` is not used.
    """
    key = key or backbone_key(spec)
    shas = [e.sha256 for e in manifest.entries]
    found, rows = store.lookup(key, shas)
    if rows.shape[1] not in (0, spec.feature_dim):
        raise ValueError(f"store has {rows.shape[1]}-wide features for key {key[:12]}, spec says {spec.feature_dim}")
    missing: dict[str, Entry] = {}
    for e, hit in zip(manifest.entries, found, strict=True):
        if not hit and e.sha256 not in missing:
            missing[e.sha256] = e
    computed: dict[str, np.ndarray] = {}
    if missing:
        store.write_meta(key, {"name": getattr(spec, "variant", spec.name), "fingerprint": spec.fingerprint(), "precision": spec.precision,
                               "engine": getattr(spec, "engine", "tensorflow"), "weights_sha256": spec.weights.sha256, "feature_dim": spec.feature_dim,
                               "dtype": str(feature_dtype(spec))})
        dtype = feature_dtype(spec)
        if batches is None:
            fn = batch_function(model, spec)

            def batches(todo: list[Entry]) -> Iterator[tuple[list[Entry], np.ndarray]]:
                return _feature_batches(todo, manifest.root, spec, fn, batch_size=batch_size, workers=workers,
                                        max_pixels=max_pixels, loader=loader)
        pend_shas: list[str] = []
        pend_rows: list[np.ndarray] = []

        def flush() -> None:
            if pend_shas:
                store.add_shard(key, pend_shas, np.concatenate(pend_rows).astype(dtype))
                pend_shas.clear()
                pend_rows.clear()

        with bar(total=len(missing), desc=f"features {spec.name}", enabled=progress) as pbar:
            try:
                for chunk, feats in batches(list(missing.values())):
                    stored = feats.astype(dtype).astype(np.float32)  # what a cache hit would return
                    for e, row in zip(chunk, stored, strict=True):
                        computed[e.sha256] = row
                    pend_shas.extend(e.sha256 for e in chunk)
                    pend_rows.append(feats)
                    if len(pend_shas) >= shard_size:
                        flush()
                    pbar.update(len(chunk))
                    if on_batch is not None:
                        on_batch(len(chunk))
            finally:
                flush()
    out = np.empty((len(shas), spec.feature_dim), np.float32)
    for i, sha in enumerate(shas):
        out[i] = rows[i] if found[i] else computed[sha]
    return out
