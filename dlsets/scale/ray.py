"""Expansion on Ray: the shards as Ray tasks (:func:`expand_on_ray`), or the samples as a lazy
``ray.data.Dataset`` (:func:`expand_ray_dataset`) for Ray Train.

Ray is imported on first use (``pip install 'dlsets[ray]'``). Both use the cluster that
``ray.init()`` finds (``RAY_ADDRESS``, or one started with ``ray start``), or start a local one
if Ray is not initialised yet; either way they leave it running, as Ray Data does. The source
arrays go to the object store once; the workers read them from there (zero-copy on a node),
write their shards straight to the output folder and hand back only the manifest entries, so no
augmented sample passes through the driver.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeadlineError, DlsetsError

_REMOTE: dict[str, Any] = {}
CONNECT_SECONDS = 10.0
"""Seconds a cluster address may take to accept a connection (``$DLSETS_DEADLINE`` may lower
it): Ray itself retries an address that does not answer for minutes."""


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the extra is installed where tested
        raise ImportError("dlsets' Ray engine needs Ray: pip install 'dlsets[ray]'") from exc
    if not ray.is_initialized():
        start(ray)
    return ray


def start(ray, **kw) -> None:
    """``ray.init(**kw)``, after checking that a ``host:port`` cluster address answers at all:
    one that refuses, or does not accept a connection within ``$DLSETS_DEADLINE`` (at most
    :data:`CONNECT_SECONDS`), or accepts but does not complete a gRPC handshake in that time
    (Ray's cluster and client servers speak gRPC), is a DeadlineError naming it, at once and
    before Ray's retries print their C++ warnings. ``ray.init`` itself runs on the calling
    thread (Ray needs the main thread for its signal handlers: started on another, a later
    run died silently)."""
    from ..common.config import deadline

    address = kw.get("address") or os.environ.get("RAY_ADDRESS") or ""
    _answers(address, min(deadline(None) or CONNECT_SECONDS, CONNECT_SECONDS))
    try:
        ray.init(**kw)
    except ConnectionError as exc:
        raise DeadlineError(f"Ray: cannot reach a cluster at {address or 'auto'} ({exc}); start "
                            "it (`ray start --head`), or correct or unset RAY_ADDRESS") from None


@contextlib.contextmanager
def session(verbose: bool = False):
    """Ray for one command: started with :func:`start` unless already initialised (its own
    notices and its workers' output only when ``verbose``; errors always), and shut down on
    leaving when it was started here. Yields the ``ray`` module."""
    import ray

    started = not ray.is_initialized()
    if started:
        # Ray's own notices (token authentication, "Started a local Ray instance", its
        # workers' output) are for -v; errors still show
        quiet = logging.WARNING if verbose else logging.ERROR
        logging.getLogger("ray").setLevel(quiet)
        start(ray, logging_level=quiet, log_to_driver=bool(verbose))
    try:
        yield ray
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _limit_threads(augmenter, threads: int | None):
    """An augmenter that uses ``threads`` threads (the task's CPUs), and OpenCV likewise."""
    if threads is None:
        return augmenter
    import cv2

    cv2.setNumThreads(int(threads))
    from ..augment import Augmenter

    if isinstance(augmenter, Augmenter):
        augmenter = copy.copy(augmenter)
        augmenter.workers = int(threads)
    return augmenter


def _shard_task(x, y, target, out, shard, shards, augmenter, threads, kw, masks=None):
    from .shards import expand_shard

    return expand_shard(x, y, target, out, shard=shard, shards=shards, masks=masks,
                        augmenter=_limit_threads(augmenter, threads), progress=False,
                        index=False, **kw)


def _raise_cause(ray, exc: BaseException):
    """A task's expected failure (a DlsetsError, a full disk) as itself, without Ray's wrapper
    and remote traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, (DlsetsError,
                                                                           OSError)):
        raise cause from None
    raise exc


def expand_on_ray(
    x: np.ndarray | str,
    y: np.ndarray | None,
    target: int,
    out: str | os.PathLike,
    *,
    shards: int | None = None,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    channels: str | None = None,
    format: str = "hdf5",
    name: str | None = None,
    classes: Sequence[str] | None = None,
    compression: str | None = None,
    chunk_size: int | None = None,
    cpus_per_shard: int = 1,
    progress: bool | None = None,
    masks: np.ndarray | None = None,
) -> Path:
    """:func:`~dlsets.scale.shards.expand_to_shards` with one Ray task per shard (``cpus_per_shard``
    CPUs and augmenter threads each); returns the path of ``out/index.json``.

    ``out`` must be a folder every worker sees (the same path on a shared file system). Shards
    already there and verified are kept; the result is the same, bit for bit, as
    ``expand(...)`` and as the local and job-array runs; ``masks`` travel with their images
    as in ``expand(..., masks=)``.
    """
    from ..augment.expand import check_count
    from .shard_claim import released_on_failure
    from .shards import _prepare, _shape_dtype, default_shards

    cpus = check_count("cpus_per_shard", cpus_per_shard, 1)
    if shards is None:
        shape, dtype = _shape_dtype(x, channels)
        shards = default_shards(int(target), shape, dtype)
    kw = dict(balance=balance, keep_originals=keep_originals, seed=seed, channels=channels,
              format=format, name=name, classes=classes, compression=compression,
              chunk_size=chunk_size)
    # validate and check the folder here, before any task starts
    exp = _prepare(x, y, target, out, shards=shards, augmenter=augmenter, masks=masks, **kw)
    kw["name"], kw["classes"] = exp.settings["name"], exp.settings["classes"]
    with released_on_failure(exp.folder, exp.made):  # Ray may not start, a task may fail
        return _run_tasks(exp, kw, cpus, augmenter, progress)


def _run_tasks(exp, kw: dict, cpus: int, augmenter, progress) -> Path:
    from ..common.progress import bar
    from .shard_index import write_index

    folder = exp.folder.resolve()
    ray = _ray()
    remote = _REMOTE.get("shard") or _REMOTE.setdefault("shard", ray.remote(_shard_task))
    xr, yr = ray.put(np.ascontiguousarray(exp.x)), ray.put(np.asarray(exp.y))
    mr = None if exp.masks is None else ray.put(np.ascontiguousarray(exp.masks))
    pending = {
        remote.options(num_cpus=cpus).remote(xr, yr, exp.target, str(folder), i, exp.shards,
                                             augmenter, cpus, kw, mr): i
        for i in range(exp.shards)
    }
    entries: dict[int, dict] = {}
    with bar(exp.target, "augment", progress=progress, unit="img") as pbar:
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    entry = ray.get(ref)
                    entries[pending.pop(ref)] = entry
                    pbar.update(entry["count"])
        except BaseException as exc:  # Ctrl-C too: the shards not started yet are dropped
            for ref in pending:
                ray.cancel(ref)
            _raise_cause(ray, exc)
    return write_index(folder, exp.settings, exp.key, [entries[i] for i in range(exp.shards)])


def _answers(address: str, limit: float) -> None:
    """A ``host:port`` (or ``ray://host:port``) that refuses or ignores a connection, or
    accepts one but does not complete a gRPC handshake within ``limit`` seconds, fails here:
    at once, and without Ray's retries and their C++ warnings on stderr (which no log level
    silences). Skipped under ``RAY_USE_TLS`` (the handshake would need the cluster's
    certificates)."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "://" in target:
        return  # "auto", "local" and the like: Ray's own business
    how = "start it (`ray start --head`), or correct or unset RAY_ADDRESS"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=limit).close()
    except OSError as exc:
        raise DeadlineError(f"Ray: no cluster answers at {address} ({exc.strerror or exc}); "
                            f"{how}") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("", "0", "false"):
        return
    import grpc  # installed with Ray

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=limit)
    except grpc.FutureTimeoutError:
        raise DeadlineError(f"Ray: {address} accepts connections but did not answer as a Ray "
                            f"cluster (no gRPC handshake in {limit:g} s); {how}") from None
    finally:
        channel.close()


# ---------------------------------------------------------------------------- Ray Data
_PLANS: dict[str, tuple] = {}


def _expand_batch(batch: dict, x, y, spec: dict, masks=None) -> dict:
    """Rows ``batch["id"]`` of the expansion ``spec`` describes (x, y, masks: object refs)."""
    import ray

    from ..augment.expand import copy_augmenter, copy_sources, produce_chunks

    cached = _PLANS.get(spec["token"])
    x, y = ray.get([x, y])  # zero-copy views of the object store
    masks = None if masks is None else ray.get(masks)
    if cached is None:
        src = copy_sources(y, spec["target"], balance=spec["balance"],
                           keep_originals=spec["keep_originals"], seed=spec["seed"])
        aug = _limit_threads(copy_augmenter(spec["augmenter"], spec["seed"], len(src)),
                             spec["threads"])
        if len(_PLANS) > 8:
            _PLANS.clear()
        cached = _PLANS[spec["token"]] = (src, aug)
    src, aug = cached
    ids = np.asarray(batch["id"], np.int64)
    images = np.empty((len(ids), *x.shape[1:]), x.dtype)
    labels = np.empty(len(ids), y.dtype)
    out_m = None if masks is None else np.empty((len(ids), *masks.shape[1:]), masks.dtype)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    # contiguous runs of ids, each produced as one range of rows
    cuts = np.flatnonzero(np.diff(sorted_ids) != 1) + 1
    for run in np.split(np.arange(len(ids)), cuts):
        if not len(run):
            continue
        lo, hi = int(sorted_ids[run[0]]), int(sorted_ids[run[-1]]) + 1
        at = order[run]

        def write(pos: int, chunk: np.ndarray, lab: np.ndarray, mk=None, at=at, lo=lo) -> None:
            images[at[pos - lo:pos - lo + len(chunk)]] = chunk
            labels[at[pos - lo:pos - lo + len(lab)]] = lab
            if mk is not None:
                out_m[at[pos - lo:pos - lo + len(mk)]] = mk

        produce_chunks(x, y, src, spec["keep_originals"], aug, max(1, hi - lo), write,
                       channels=spec["channels"], rows=(lo, hi), masks=masks)
    out = {"id": ids, "image": images, "label": labels}
    return out if out_m is None else out | {"mask": out_m}


def expand_ray_dataset(
    x: np.ndarray | str,
    y: np.ndarray | None,
    target: int,
    *,
    augmenter: object = None,
    balance: bool = True,
    keep_originals: bool = True,
    seed: int = 0,
    channels: str | None = None,
    batch_size: int | None = None,
    threads: int = 1,
    masks: np.ndarray | None = None,
):
    """A lazy ``ray.data.Dataset`` of the ``target`` samples ``expand(...)`` returns, as rows
    ``{"id": int64, "image": (H, W[, C]) array, "label": int}``; row ``id`` is ``expand``'s row
    ``id``. Nothing is computed until the dataset is consumed (by Ray Train, ``iter_batches``,
    a ``write_*``); each Ray Data task augments ``batch_size`` samples on ``threads`` threads.
    With ``masks`` (a dataset name brings its own), rows have a ``"mask"`` too, moved with
    their image as in ``expand(..., masks=)``.
    Rows come in no particular order unless the ``DataContext`` preserves order.
    """
    from ..augment.expand import (
        check_count,
        check_masks,
        check_xy,
        chunk_rows,
        copy_augmenter,
        copy_sources,
    )
    from ..augment.params import check_seed

    if isinstance(x, str):
        from ..sources.loaders import load

        ds = load(x)
        x, y = ds.train.images, ds.train.labels
        masks = ds.train.masks if masks is None else masks
    x, y = check_xy(x, y, channels)
    masks = check_masks(masks, x, channels)
    seed = check_seed(seed)
    src = copy_sources(y, target, balance=balance, keep_originals=keep_originals, seed=seed)
    # the same errors as expand, now rather than in a task
    copy_augmenter(augmenter, seed, len(src))
    batch_size = chunk_rows(x, batch_size)
    threads = check_count("threads", threads, 1)
    ray = _ray()
    spec = {"token": uuid.uuid4().hex, "target": int(target), "balance": bool(balance),
            "keep_originals": bool(keep_originals), "seed": seed, "augmenter": augmenter,
            "channels": channels, "threads": threads}
    xr, yr = ray.put(np.ascontiguousarray(x)), ray.put(np.asarray(y))
    blocks = max(1, min(-(-int(target) // batch_size), 4096))
    return ray.data.range(int(target), override_num_blocks=blocks).map_batches(
        _expand_batch, batch_format="numpy", batch_size=batch_size, num_cpus=threads,
        fn_kwargs={"x": xr, "y": yr, "spec": spec,
                   "masks": None if masks is None else ray.put(np.ascontiguousarray(masks))})
