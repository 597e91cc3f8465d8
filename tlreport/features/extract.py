"""Bottleneck extraction: images decoded in parallel (once for every backbone), batched through each backbone,
written to the store."""

from __future__ import annotations

import hashlib
import os
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlreport.datasets.images import DEFAULT_MAX_PIXELS, BadImage, load_prepared_many
from tlreport.datasets.scan import Entry, Manifest
from tlreport.errors import UserError
from tlreport.features.cache import FeatureStore, backbone_key, feature_dtype
from tlreport.util.progress import bar
from tlreport.util.text import display_name

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
    images, status = prepare_bytes_many(data, [spec], max_pixels)
    return images[0], status


def prepare_bytes_many(data: bytes, specs: Sequence[Any], max_pixels: int) -> tuple[list[np.ndarray], int]:
    """Encoded image -> (one prepared uint8 (S, S, 3) per spec, ``_OK``), decoded once
    (:func:`~tlreport.datasets.images.load_prepared_many`), or zeros and ``_BAD`` if it does not decode."""
    try:
        return load_prepared_many(data, specs, max_pixels=max_pixels), _OK
    except BadImage:
        return _blank(specs), _BAD


def _blank(specs: Sequence[Any]) -> list[np.ndarray]:
    return [np.zeros((int(s.input_size), int(s.input_size), 3), np.uint8) for s in specs]


def _decoder(specs: Sequence[Any], max_pixels: int) -> Callable[[str, str], tuple[list[np.ndarray], int]]:
    def decode(path: str, sha: str) -> tuple[list[np.ndarray], int]:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return _blank(specs), _MISSING
        if hashlib.sha256(data).hexdigest() != sha:
            return _blank(specs), _CHANGED
        return prepare_bytes_many(data, specs, max_pixels)

    return decode


# a loader: (paths, shas, specs, batch_size, workers, max_pixels) -> batches of (one uint8 (B, S, S, 3) per spec,
# status (B,)), in the paths' order
ImageBatches = Iterator[tuple[list[np.ndarray], np.ndarray]]


def _tfdata_batches(paths: Sequence[str], shas: Sequence[str], specs: Sequence[Any], batch_size: int, workers: int,
                    max_pixels: int) -> ImageBatches:
    """tf.data: parallel read+decode+prepare (PIL in ``tf.numpy_function``), batch, prefetch."""
    import tensorflow as tf

    decode = _decoder(specs, max_pixels)

    def py(path: bytes, sha: bytes) -> tuple[Any, ...]:
        images, status = decode(os.fsdecode(path), sha.decode())
        return (*images, np.int32(status))

    def tf_map(path: Any, sha: Any) -> tuple[Any, Any]:
        *images, status = tf.numpy_function(py, [path, sha], [tf.uint8] * len(specs) + [tf.int32], stateful=False)
        for img, spec in zip(images, specs, strict=True):
            img.set_shape([int(spec.input_size), int(spec.input_size), 3])
        status.set_shape([])
        return tuple(images), status

    ds = tf.data.Dataset.from_tensor_slices(([os.fsencode(p) for p in paths], list(shas)))
    ds = ds.map(tf_map, num_parallel_calls=workers, deterministic=True)
    ds = ds.batch(batch_size).prefetch(2)
    opts = tf.data.Options()
    opts.autotune.enabled = False  # AUTOTUNE can stall 10-40 s on iterator teardown
    opts.threading.private_threadpool_size = max(2, workers)
    opts.deterministic = True
    ds = ds.with_options(opts)
    for images, status in ds.as_numpy_iterator():
        yield list(images), status


def _thread_batches(paths: Sequence[str], shas: Sequence[str], specs: Sequence[Any], batch_size: int, workers: int,
                    max_pixels: int) -> ImageBatches:
    """A plain thread pool (PIL releases the GIL in decode/resize), in order, 2 batches ahead."""
    decode = _decoder(specs, max_pixels)
    window = batch_size * 3
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[tuple[list[np.ndarray], int]]] = deque()
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
            yield ([np.stack([t[0][i] for t in take]) for i in range(len(specs))],
                   np.array([t[1] for t in take], dtype=np.int32))


LOADERS = {"tfdata": _tfdata_batches, "threads": _thread_batches}

# entries whose features are missing -> (entries, their features (len, D)) per batch, in any order
BatchSource = Callable[[list[Entry]], Iterator[tuple[list[Entry], np.ndarray]]]


def _image_batches(entries: Sequence[Entry], root: str, specs: Sequence[Any], *, batch_size: int,
                   workers: int | None, max_pixels: int, loader: str) -> Iterator[tuple[list[Entry], list[np.ndarray]]]:
    """(entries, one prepared uint8 batch per spec), each image read and decoded once; an image that
    changed since the scan is a one-line error."""
    paths = [os.path.join(root, *e.relpath.split("/")) for e in entries]
    batches = LOADERS[loader](paths, [e.sha256 for e in entries], specs, batch_size,
                              workers or os.cpu_count() or 1, max_pixels)
    start = 0
    for images, status in batches:
        chunk = list(entries[start:start + len(status)])
        start += len(status)
        bad = np.flatnonzero(status != _OK)
        if bad.size:
            raise stale_image_error(chunk[int(bad[0])], int(status[bad[0]]))
        yield chunk, images


def _checked(feats: np.ndarray, n: int, spec: Any) -> np.ndarray:
    if feats.shape != (n, spec.feature_dim):
        raise ValueError(f"model returned features of shape {feats.shape}; spec {spec.name} "
                         f"says ({n}, {spec.feature_dim})")
    return feats


def extract_shard(entries: Sequence[Entry], root: str | os.PathLike, spec: Any, model: Any, *,
                  batch_size: int = 32, workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  loader: str = "tfdata") -> np.ndarray:
    """Pure: features (len(entries), D) float32 for a list of manifest entries (no cache)."""
    fn = batch_function(model, spec)
    out = np.empty((len(entries), spec.feature_dim), np.float32)
    i = 0
    for chunk, (images,) in _image_batches(entries, os.fspath(root), [spec], batch_size=batch_size,
                                           workers=workers, max_pixels=max_pixels, loader=loader):
        out[i:i + len(chunk)] = _checked(fn(images), len(chunk), spec)
        i += len(chunk)
    return out


@dataclass(frozen=True)
class Extraction:
    """One feature matrix to complete: a spec, what computes it, and where the store keeps it."""

    spec: Any
    model: Any                                           # a Keras model or an engine's callable
    key: str | None = None                               # default: :func:`backbone_key` of ``spec``
    on_batch: Callable[[int], None] | None = None        # called with the images computed in each batch


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
    job = Extraction(spec, model, key, on_batch)
    return extract_features_many(manifest, [job], store, batch_size=batch_size, shard_size=shard_size,
                                 progress=progress, workers=workers, max_pixels=max_pixels, loader=loader,
                                 batches=batches)[0]


def extract_features_many(manifest: Manifest, jobs: Sequence[Extraction], store: FeatureStore, *,
                          batch_size: int = 32, shard_size: int = 512, progress: bool = True,
                          workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, loader: str = "tfdata",
                          batches: BatchSource | None = None) -> list[np.ndarray]:
    """:func:`extract_features` for several specs of one dataset in one pass over its images.

    Each image missing from any job's store entry is read and decoded once and
    prepared for every job (:func:`~tlreport.datasets.images.load_prepared_many`);
    each job's model runs on the images its entry lacks (a little faster than a
    pass per backbone: resizing, done per backbone, costs more than decoding;
    ``benchmarks/extract_together.py``).  Each job's images are prepared as they would be
    alone; a job whose entry already holds some of a batch's images gets the
    others as a smaller batch, which can move TensorFlow's last bits (OpenVINO
    runs one image per request).  ``batches`` (a Ray runner) serves one job only.
    """
    if batches is not None and len(jobs) != 1:
        raise ValueError("a batch source computes one spec's features; got several jobs")
    keys = [job.key or backbone_key(job.spec) for job in jobs]
    shas = [e.sha256 for e in manifest.entries]
    looked_up = [store.lookup(key, shas) for key in keys]
    missing: list[set[str]] = []
    for job, key, (found, rows) in zip(jobs, keys, looked_up, strict=True):
        if rows.shape[1] not in (0, job.spec.feature_dim):
            raise ValueError(f"store has {rows.shape[1]}-wide features for key {key[:12]}, "
                             f"spec says {job.spec.feature_dim}")
        missing.append({e.sha256 for e, hit in zip(manifest.entries, found, strict=True) if not hit})
    todo: dict[str, Entry] = {}                          # missing from any job, in manifest order, once per sha256
    for e in manifest.entries:
        if any(e.sha256 in lacks for lacks in missing):
            todo.setdefault(e.sha256, e)
    computed: list[dict[str, np.ndarray]] = [{} for _ in jobs]
    if todo:
        active = [i for i, lacks in enumerate(missing) if lacks]
        writers = {i: _ShardWriter(store, keys[i], jobs[i].spec, shard_size) for i in active}
        if batches is None:
            specs = [jobs[i].spec for i in active]
            fns = [batch_function(jobs[i].model, jobs[i].spec) for i in active]

            def local(entries: list[Entry]) -> Iterator[tuple[int, list[Entry], np.ndarray]]:
                for chunk, images in _image_batches(entries, manifest.root, specs, batch_size=batch_size,
                                                    workers=workers, max_pixels=max_pixels, loader=loader):
                    for i, fn, imgs in zip(active, fns, images, strict=True):
                        rows = [r for r, e in enumerate(chunk) if e.sha256 in missing[i]]
                        if rows:                  # each job's rows go to its writer at once: an interrupt keeps them
                            part = imgs if len(rows) == len(chunk) else imgs[rows]
                            yield i, [chunk[r] for r in rows], _checked(fn(part), len(rows), jobs[i].spec)

            stream = local(list(todo.values()))
        else:
            stream = ((0, chunk, feats) for chunk, feats in batches(list(todo.values())))
        names = ", ".join(jobs[i].spec.name for i in active)
        with bar(total=sum(len(missing[i]) for i in active), desc=f"features {names}", enabled=progress) as pbar:
            try:
                for i, chunk, feats in stream:
                    for e, row in zip(chunk, writers[i].add(chunk, feats), strict=True):
                        computed[i][e.sha256] = row
                    pbar.update(len(chunk))
                    if jobs[i].on_batch is not None:
                        jobs[i].on_batch(len(chunk))
            finally:
                for w in writers.values():
                    w.flush()
    outs = []
    for job, (found, rows), done in zip(jobs, looked_up, computed, strict=True):
        out = np.empty((len(shas), job.spec.feature_dim), np.float32)
        for r, sha in enumerate(shas):
            out[r] = rows[r] if found[r] else done[sha]
        outs.append(out)
    return outs


class _ShardWriter:
    """One job's computed rows, written to the store every ``shard_size`` rows and on :meth:`flush`."""

    def __init__(self, store: FeatureStore, key: str, spec: Any, shard_size: int) -> None:
        self.store, self.key, self.shard_size = store, key, shard_size
        self.dtype = feature_dtype(spec)
        self.shas: list[str] = []
        self.rows: list[np.ndarray] = []
        store.write_meta(key, {"name": getattr(spec, "variant", spec.name), "fingerprint": spec.fingerprint(),
                               "precision": spec.precision, "engine": getattr(spec, "engine", "tensorflow"),
                               "weights_sha256": spec.weights.sha256, "feature_dim": spec.feature_dim,
                               "dtype": str(self.dtype)})

    def add(self, chunk: Sequence[Entry], feats: np.ndarray) -> np.ndarray:
        """Queue a batch; returns its rows as a cache hit will return them (stored dtype, as float32)."""
        self.shas.extend(e.sha256 for e in chunk)
        self.rows.append(feats)
        if len(self.shas) >= self.shard_size:
            self.flush()
        return feats.astype(self.dtype).astype(np.float32)

    def flush(self) -> None:
        if self.shas:
            self.store.add_shard(self.key, self.shas, np.concatenate(self.rows).astype(self.dtype))
            self.shas.clear()
            self.rows.clear()
