"""Executors: where the chunks of a run are computed (this process, or Dask tasks).

The run is embarrassingly parallel over chunks of sequences: stages 2-3 of one chunk
(:func:`~deepmr_kipoi.run.chunk.compute_chunk`, ISM + local MR) need only the plan and the model.
An :class:`Executor` maps that function over the chunks still to compute
(``map_chunks(plan, chunk_indices)``) and yields each result as it is done; the runner reads back
the finished chunks and writes each new one through its chunk store, whichever executor ran it.
:class:`LocalExecutor` runs them in this process. With ``executor="dask"``
(:class:`DaskExecutor`) every chunk is one Dask task:

* the cluster is a ``distributed.LocalCluster`` of ``dask_workers`` single-threaded worker
  processes, or an existing scheduler at ``dask_address`` (``tcp://HOST:PORT`` or a scheduler
  file: ``dask scheduler`` + ``dask worker``, dask-jobqueue's ``SLURMCluster``, Kubernetes);
* the plan without its model and sequences, and the sequences, are scattered once;
* the model is prepared once per worker process by the client's own function
  (:func:`deepmr_kipoi.run.inputs.prepare_model`: loaded from the config, local paths made
  absolute, and put on the config's ``device``) and cached there under the run's config hash and
  weight md5s; only a model object handed to ``run(model=...)`` (the demo, notebooks) has no config
  to load it from, and is then scattered once to every worker instead (and put on the device there);
* results come back to the client, which writes each chunk through the run's chunk store
  (:class:`~deepmr_kipoi.run.folder.ChunkStore`) as it arrives, exactly as a local run does:
  workers need no access to the run folder, and a killed client resumes from the chunks written;
* a task whose worker dies is rescheduled on another worker by the scheduler (up to its
  ``distributed.scheduler.allowed-failures``, default 3), and a task that raises is retried
  ``TASK_RETRIES`` times;
* the chunks keep their indices and seeds, so the tables equal a single-process run's.

The aggregate stage (global meta-analysis) and the outputs stay on the client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.chunk import ChunkResult, compute_chunk

logger = logging.getLogger(__name__)

#: Extra attempts of a chunk task that raised (a lost worker is handled by the scheduler).
TASK_RETRIES = 2
#: Seconds to wait for an existing scheduler to answer (a few: a wrong address fails fast).
CONNECT_TIMEOUT_S = 10

#: Worker-side model cache: model key (config hash, weight md5s) -> model, of the last run served.
_MODELS: dict[str, object] = {}


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise DeepMRInputError(
            "--executor dask needs Dask's distributed package; pip install 'deepmr_kipoi[dask]'"
        ) from None
    return distributed


def _cores() -> int:
    """Cores this process may use (a SLURM or container CPU set, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Thread-count variables of the numerical libraries, capped to 1 in local workers.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def local_cluster(n_workers: int):
    """The ``distributed.LocalCluster`` a run with ``dask_workers=n_workers`` starts.

    One thread per worker process: the model's own threads (torch, BLAS) are capped to one by the
    nanny's environment, so N workers use N cores without oversubscription. Two of Dask's worker
    defaults are turned off, each measured to slow ISM on the torch demo model by 1.5-2x: the
    statistical profiler (its thread samples the running task every 10 ms, holding the GIL), and
    ``MALLOC_TRIM_THRESHOLD_=65536`` in the workers' environment (setting it fixes glibc's mmap
    threshold, so every large temporary array is mapped and unmapped again, page faults included).

    Parameters
    ----------
    n_workers : int

    Returns
    -------
    distributed.LocalCluster
        Close it after use (``with`` block or ``.close()``).
    """
    import dask

    distributed = _import_distributed()
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ["MALLOC_TRIM_THRESHOLD_"] = None  # None: left unset in the workers
    # the nanny hands the config to the worker processes it spawns
    with dask.config.set(
        {
            "distributed.worker.profile.enabled": False,
            "distributed.nanny.pre-spawn-environ": environ,
        }
    ):
        # the nanny's pre-spawn environment yields to variables the client already has, so the
        # one-thread caps are also given explicitly (they win over an inherited OMP_NUM_THREADS)
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={k: "1" for k in _THREAD_VARIABLES},
        )


@contextlib.contextmanager
def dask_client(config) -> Iterator[object]:
    """A ``distributed.Client`` for the config's cluster, closed (with a cluster it started) on exit.

    Parameters
    ----------
    config : RunConfig
        Validated, ``executor="dask"``.

    Yields
    ------
    distributed.Client

    Raises
    ------
    DeepMRInputError
        When distributed is not installed, the scheduler file does not exist or the scheduler
        does not answer.
    """
    distributed = _import_distributed()
    address = config.dask_address
    if address is None:
        n = config.dask_workers or _cores()
        cluster = local_cluster(n)
        client = distributed.Client(cluster)
        logger.info("Dask LocalCluster of %d worker processes (1 thread each)", n)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    client = _connect(distributed, address)
    logger.info(
        "Dask scheduler %s with %d workers", address, len(client.scheduler_info()["workers"])
    )
    try:
        yield client
    finally:
        client.close()


def _scheduler_address(address: str) -> tuple[dict, str]:
    """``distributed.Client`` arguments for ``--dask-address`` and the address it leads to.

    Raises
    ------
    DeepMRInputError
        An unknown scheme, a missing file, or a file that is no scheduler file.
    """
    from distributed.comm.registry import backends

    if "://" in address:
        scheme = address.split("://", 1)[0]
        if scheme not in backends:
            raise DeepMRInputError(
                f"--dask-address {address}: unknown address scheme {scheme!r}; give tcp://HOST:PORT "
                f"(or {', '.join(sorted(backends))}) or a scheduler file"
            )
        return {"address": address}, address
    path = Path(address)
    if not path.is_file():
        raise DeepMRInputError(
            f"--dask-address {address}: no such scheduler file; give tcp://HOST:PORT or the file "
            "written by `dask scheduler --scheduler-file`"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        target = info["address"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise DeepMRInputError(
            f"--dask-address {address} is not a Dask scheduler file (JSON naming the scheduler's "
            "address, as `dask scheduler --scheduler-file` writes); give that file or tcp://HOST:PORT"
        ) from None
    return {"scheduler_file": address}, str(target)


def _connect(distributed, address: str):
    """A client of the scheduler at ``address``, or one line within ``CONNECT_TIMEOUT_S`` + 5 s.

    ``distributed.Client`` waits without end for the answer of a server that accepts the connection
    but says nothing (any server other than a Dask scheduler); the client is therefore made in a
    daemon thread that is given up after the deadline.
    """
    kwargs, target = _scheduler_address(address)
    if target.startswith("tcp://"):
        from distributed.comm.addressing import parse_host_port

        try:
            host, port = parse_host_port(target[len("tcp://") :])
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as err:
            raise DeepMRInputError(
                f"cannot reach the Dask scheduler at {address} ({' '.join(str(err).split())}); start it or "
                "fix --dask-address"
            ) from None
    box: dict = {}

    def make():
        try:
            box["client"] = distributed.Client(timeout=CONNECT_TIMEOUT_S, **kwargs)
        except BaseException as err:  # noqa: BLE001 - reported on the calling thread
            box["error"] = err

    thread = threading.Thread(target=make, name="deepmr-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5)
    if "client" in box:
        return box["client"]
    why = (
        f"{type(box['error']).__name__}: {' '.join(str(box['error']).split())[:200]}"
        if "error" in box
        else f"no Dask answer within {CONNECT_TIMEOUT_S + 5} s; is a Dask scheduler listening there?"
    )
    raise DeepMRInputError(
        f"cannot reach the Dask scheduler at {address} ({why}); start it or fix --dask-address"
    )


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path and os.path.exists(path) else path


def _worker_config(config):
    """The config a worker loads the model from: the client's local paths made absolute.

    Workers started in another folder (``dask worker`` on another node of a shared file system)
    would not find ``models/my.py:build``, ``model_dir`` or ``fold1.pt`` relative to the client's.
    """
    if isinstance(config.model, dict):  # a panel: each member's paths, as a single run's
        from deepmr_kipoi.run.config import panel_members

        members = {}
        for label, member in panel_members(config):
            member = _worker_config(member)
            members[label] = {
                "model": member.model,
                "source": member.source,
                "weight_files": list(member.weight_files),
            }
            for key in ("alphabet", "uncertainty", "n_samples", "feature_names", "adapter"):
                members[label][key] = getattr(member, key)
        return config.replace(model=members)
    model = config.model
    target, sep, attr = (model or "").rpartition(":")
    if sep and target.endswith(".py"):
        model = f"{_absolute(target)}:{attr}"
    else:
        model = _absolute(model)
    return config.replace(
        model=model,
        source=_absolute(config.source),
        weight_files=tuple(_absolute(w) for w in config.weight_files),
    )


def _model_key(plan) -> str:
    """What a worker's cached model must match: the config hash and the weight/factory md5s."""
    ident = plan.identity
    payload = [plan.config_hash, ident.get("weights"), ident.get("factory_md5")]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _worker_model(key: str, config, shipped):
    """The model of run ``key`` in this worker process, prepared as the client prepares its own
    (:func:`~deepmr_kipoi.run.inputs.prepare_model`: loaded and put on ``config.device``)."""
    from deepmr_kipoi.run import inputs

    if shipped is not None:  # kept in the worker's memory by Dask for the whole run
        return inputs.prepare_model(config, shipped)[0]
    model = _MODELS.get(key)
    if model is None:
        logger.info("worker %d: loading model %s", os.getpid(), config.model)
        model, _ = inputs.prepare_model(config)
        _MODELS.clear()  # one run's model at a time: a worker serving runs in turn keeps its memory
        _MODELS[key] = model
    return model


def _chunk_task(light_plan, key: str, onehot, shipped, chunk_index: int):
    """Stages 2-3 of one chunk on a worker; returns (ChunkResult, timings)."""
    model = _worker_model(key, light_plan.config, shipped)
    plan = dataclasses.replace(light_plan, model=model, onehot=onehot)
    timings: dict[str, float] = {}
    return compute_chunk(plan, chunk_index, timings=timings, keep_effects=True), timings


class Executor(Protocol):
    """Where the chunks of a run are computed."""

    def map_chunks(
        self, plan, chunk_indices: Sequence[int]
    ) -> Iterator[tuple[int, ChunkResult, dict]]:
        """Compute the chunks ``chunk_indices`` of ``plan``.

        Parameters
        ----------
        plan : RunPlan
        chunk_indices : sequence of int
            Indices into ``plan.bounds`` (the chunks not read back from the store).

        Yields
        ------
        chunk_index : int
        result : ChunkResult
        timings : dict
            ``"ism"`` and ``"mr"`` seconds spent on the chunk.
        """
        ...


def clamped_update(bar):
    """``bar.update`` that never passes the total (shares of the work add up with rounding)."""
    return lambda done: bar.update(max(0.0, min(done, bar.total - bar.n)))


class LocalExecutor:
    """The chunks one after the other in this process, with a progress bar over sequences."""

    def map_chunks(
        self, plan, chunk_indices: Sequence[int]
    ) -> Iterator[tuple[int, ChunkResult, dict]]:
        from tqdm.auto import tqdm

        todo = set(chunk_indices)
        done = sum(b - a for i, (a, b) in enumerate(plan.bounds) if i not in todo)
        bar = tqdm(
            total=plan.n_sequences,
            initial=done,
            unit="seq",
            desc="Deep MR",
            disable=not plan.config.progress,
            leave=False,
        )
        try:
            for chunk_index in chunk_indices:
                timings: dict[str, float] = {}
                result = compute_chunk(
                    plan,
                    chunk_index,
                    on_progress=clamped_update(bar),
                    timings=timings,
                    keep_effects=True,
                )
                yield chunk_index, result, timings
        finally:
            bar.close()


@dataclasses.dataclass(frozen=True)
class DaskExecutor:
    """Every chunk one Dask task on the config's cluster (see the module docstring).

    Attributes
    ----------
    model_given : bool
        The plan's model was handed to ``run`` rather than loaded from the config: scatter it to
        the workers once instead of loading it there.
    """

    model_given: bool = False

    def map_chunks(
        self, plan, chunk_indices: Sequence[int]
    ) -> Iterator[tuple[int, ChunkResult, dict]]:
        from tqdm.auto import tqdm

        n = len(plan.bounds)
        # progress in finished chunks: a task reports nothing until it is done
        bar = tqdm(
            total=n,
            initial=n - len(chunk_indices),
            unit="chunk",
            desc="Deep MR (dask)",
            disable=not plan.config.progress,
            leave=False,
        )
        try:
            if chunk_indices:
                yield from self._run(plan, list(chunk_indices), bar)
        finally:
            bar.close()

    def _run(self, plan, todo: list[int], bar):
        distributed = _import_distributed()
        with dask_client(plan.config) as client:
            futures = _submit(client, plan, todo, self.model_given)
            try:
                for future in distributed.as_completed(futures):
                    result, timings = future.result()
                    bar.update(1)
                    yield futures[future], result, timings
            finally:
                client.cancel(list(futures))


def executor_for(config, *, model_given: bool = False) -> Executor:
    """The executor a (validated) config names."""
    if config.executor == "dask":
        return DaskExecutor(model_given=model_given)
    return LocalExecutor()


def _submit(client, plan, todo: list[int], model_given: bool) -> dict:
    """Scatter the plan's parts once and submit one task per chunk; returns future -> chunk index."""
    light = dataclasses.replace(plan, model=None, onehot=None, config=_worker_config(plan.config))
    # scattered once (and replicated to every worker), not serialised into each task
    light_f = client.scatter(light, broadcast=True, hash=False)
    onehot_f = client.scatter(plan.onehot, broadcast=True, hash=False)
    shipped = client.scatter(plan.model, broadcast=True, hash=False) if model_given else None
    token = uuid.uuid4().hex[:8]  # a rerun on the same scheduler never meets a stale key
    return {
        client.submit(
            _chunk_task,
            light_f,
            _model_key(plan),
            onehot_f,
            shipped,
            chunk_index,
            retries=TASK_RETRIES,
            key=f"deepmr-chunk-{plan.config_hash}-{token}-{chunk_index}",
        ): chunk_index
        for chunk_index in todo
    }
