"""The Dask executor: a LocalCluster and an external ``dask scheduler`` + ``dask worker`` cluster.

Every Dask run is compared with the single-process run of the same config (global and local
tables equal, not close: the chunks keep their indices and seeds). The external cluster runs on
127.0.0.1 with random ports, started and cleaned up by this module; one test kills a worker process
with SIGKILL while it runs a chunk.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import plan as plan_stage
from deepmr_kipoi.run import runner
from deepmr_kipoi.run.config import RunConfig, validate
from tests._helpers_dask import LOAD_LOG

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
N_SEQ, CHUNK = 24, 3  # 8 chunks
BASE = RunConfig(
    model="tests/_helpers_dask.py:counting_model",
    n_sequences=N_SEQ,
    chunk_size=CHUNK,
    figures=False,
    report=False,
    progress=False,
    n_boot=50,
    seed=3,
)
SLOW = BASE.replace(model="tests/_helpers_dask.py:slow_model", n_sequences=36)  # 12 chunks


def _assert_same_tables(result, reference):
    pd.testing.assert_frame_equal(result.global_effects, reference.global_effects)
    pd.testing.assert_frame_equal(result.local_effects, reference.local_effects)


@pytest.fixture(scope="module")
def reference():
    """The single-process run of ``BASE``."""
    return runner.run(BASE)


@pytest.fixture(scope="module")
def slow_reference():
    """The single-process run of ``SLOW``'s numbers: the slow model is the counting model with a
    pause in each forward pass (same members, same outputs), so the pause is left out here."""
    return runner.run(SLOW.replace(model=BASE.model))


def _env() -> dict:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes (1 thread each) on 127.0.0.1.

    Yields the scheduler file, the tcp address and the file the workers log model loads to.
    """
    tmp = tmp_path_factory.mktemp("dask_cluster")
    sched_file, load_log = tmp / "scheduler.json", tmp / "loads.txt"
    # the worker settings the Dask guide recommends
    (tmp / "dask_config").mkdir()
    (tmp / "dask_config" / "distributed.yaml").write_text(
        "distributed:\n  worker:\n    profile:\n      enabled: false\n"
        "  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: null\n"
    )
    env = {**_env(), LOAD_LOG: str(load_log), "DASK_CONFIG": str(tmp / "dask_config")}
    procs = []

    def start(*args):
        # own process group: teardown kills exactly what this fixture started (nannies' children too)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=tmp,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    try:
        start(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        )
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            start(
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--local-directory",
                str(tmp / f"w{i}"),
            )
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield sched_file, address, load_log
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_local_cluster_two_workers_matches_single_process(reference, tmp_path, monkeypatch):
    log = tmp_path / "loads.txt"
    monkeypatch.setenv(LOAD_LOG, str(log))
    out = tmp_path / "run"
    result = runner.run(BASE.replace(executor="dask", dask_workers=2, out=str(out)))
    _assert_same_tables(result, reference)
    assert len(list((out / "chunks").glob("local_*.parquet"))) == N_SEQ // CHUNK
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "local_effects.parquet"), reference.local_effects
    )
    # the model is loaded by the client (checks) and once in each of the 2 worker processes, not per
    # chunk (8 chunks)
    pids = log.read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 3 and pids[0] == str(os.getpid())


def test_local_cluster_worker_settings():
    from deepmr_kipoi.run import executors

    def settings():
        import dask

        return (
            os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            os.environ.get("OMP_NUM_THREADS"),
            dask.config.get("distributed.worker.profile.enabled"),
        )

    with executors.local_cluster(1) as cluster, distributed.Client(cluster) as client:
        assert list(client.run(settings).values()) == [(None, "1", False)]
        assert list(client.nthreads().values()) == [1]


def test_external_cluster_matches_single_process(cluster, reference):
    sched_file, address, load_log = cluster
    result = runner.run(BASE.replace(executor="dask", dask_address=str(sched_file)))
    _assert_same_tables(result, reference)
    # each of the 2 worker processes loaded the model once; the worker-side cache holds this run
    assert len(load_log.read_text().split()) == 2
    from deepmr_kipoi.run import executors

    with distributed.Client(address, timeout=30) as client:
        cached = client.run(lambda: list(executors._MODELS))
        trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert sorted(cached.values()) == [[executors._model_key(plan_stage.make_plan(BASE))]] * 2
    assert set(trim.values()) == {None}


def test_model_object_is_shipped_not_loaded(cluster, reference):
    """A model handed to ``run`` (no config to load it from) is scattered to the workers."""
    from tests._helpers_pipeline import tiny_model

    sched_file, _, load_log = cluster
    before = load_log.read_text()
    result = runner.run(
        BASE.replace(model=None, executor="dask", dask_address=str(sched_file)),
        model=tiny_model(BASE.seed),
        identity={"name": "tiny"},
    )
    _assert_same_tables(result, reference)
    assert load_log.read_text() == before


def test_resume_across_executors(cluster, reference, tmp_path):
    """A local run killed after 3 chunks resumes on the cluster, skipping those chunks."""
    _, address, _ = cluster
    out = tmp_path / "run"

    def stop(ci, n):
        if ci == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(BASE.replace(out=str(out)), on_chunk=stop)
    seen = []
    result = runner.run(
        BASE.replace(out=str(out), executor="dask", dask_address=address),
        on_chunk=lambda ci, n: seen.append(ci),
    )
    assert result.record.chunks.resumed == (0, 1, 2)
    assert sorted(seen) == [3, 4, 5, 6, 7]
    _assert_same_tables(result, reference)


def test_worker_killed_mid_run_completes(cluster, slow_reference):
    _, address, _ = cluster
    killed = []

    def kill_one(ci, n):
        if killed:
            return
        with distributed.Client(address, timeout=30) as client:
            busy = {w: keys for w, keys in client.processing().items() if keys}
            worker, keys = sorted(busy.items())[0]
            pid = client.run(os.getpid, workers=[worker])[worker]
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, [k for k in keys if str(k).startswith("deepmr-chunk-")]))

    result = runner.run(SLOW.replace(executor="dask", dask_address=address), on_chunk=kill_one)
    pid, keys = killed[0]
    assert keys, "the killed worker was running no chunk"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    _assert_same_tables(result, slow_reference)
    assert sorted(result.record.chunks.resumed) == []


def test_cli_dask_address(cluster, reference, tmp_path):
    from deepmr_kipoi import cli

    sched_file, _, _ = cluster
    out = tmp_path / "cli"
    code = cli.main(
        [
            "run",
            "--model",
            BASE.model,
            "--n-sequences",
            str(N_SEQ),
            "--chunk-size",
            str(CHUNK),
            "--n-boot",
            "50",
            "--seed",
            "3",
            "--no-figures",
            "--no-report",
            "--out",
            str(out),
            "--executor",
            "dask",
            "--dask-address",
            str(sched_file),
            "-q",
        ]
    )
    assert code == 0
    local = pd.read_parquet(out / "local_effects.parquet")
    pd.testing.assert_frame_equal(local, reference.local_effects)
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["config"]["executor"] == "dask"
    assert run_json["config_hash"] == reference.record.config_hash


def test_cli_executor_options_replace_those_of_config_file(tmp_path):
    from deepmr_kipoi import cli
    from deepmr_kipoi.run import arguments

    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("model: m.py:f\nout: run\nexecutor: dask\ndask_workers: 4\nseed: 5\n")
    parse = cli.build_parser().parse_args
    args = parse(["run", "--config", str(cfg_file), "--dask-address", "tcp://10.0.0.5:8786"])
    config = validate(arguments.config_from_args(args))
    assert (config.executor, config.dask_workers, config.dask_address, config.seed) == (
        "dask",
        None,
        "tcp://10.0.0.5:8786",
        5,
    )
    args = parse(["run", "--config", str(cfg_file), "--executor", "local"])
    assert validate(arguments.config_from_args(args)).dask_workers is None
    args = parse(["run", "--config", str(cfg_file)])
    assert arguments.config_from_args(args).dask_workers == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dask_workers": 2}, "--dask-workers needs the Dask executor"),
        ({"dask_address": "tcp://127.0.0.1:1"}, "--dask-address needs the Dask executor"),
        ({"executor": "dask", "dask_workers": 2, "dask_address": "x.json"}, "give one"),
        ({"executor": "spark"}, "executor"),
        ({"executor": "dask", "dask_workers": 0}, "dask_workers"),
    ],
)
def test_executor_options_checked(changes, message):
    with pytest.raises(DeepMRInputError, match=message):
        validate(BASE.replace(**changes))


def test_missing_scheduler_file_is_an_input_error(tmp_path):
    config = BASE.replace(executor="dask", dask_address=str(tmp_path / "none.json"))
    with pytest.raises(DeepMRInputError, match="no such scheduler file"):
        runner.run(config)


def test_worker_model_is_on_the_configured_device(cluster):
    """The worker prepares its model with the client's function, device included. CUDA is absent
    here, so the configured device is torch's ``meta`` device (set past the config's validation,
    which offers auto/cpu/cuda): a worker that only loaded the model would leave it on the CPU."""
    pytest.importorskip("torch")
    from deepmr_kipoi.run.executors import _worker_config
    from tests._helpers_dask import torch_model, worker_model_devices

    config = validate(BASE.replace(model="tests/_helpers_dask.py:torch_model")).replace(
        device="meta"
    )
    config = _worker_config(config)  # paths made absolute, as the executor ships the config
    _, address, _ = cluster
    with distributed.Client(address, timeout=30) as client:
        loaded = client.submit(worker_model_devices, config, pure=False).result()
        shipped = client.submit(worker_model_devices, config, torch_model(), pure=False).result()
    assert loaded == shipped == {"meta"}
    assert worker_model_devices(config.replace(device="cpu")) == {"cpu"}
