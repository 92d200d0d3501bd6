"""One line for every user mistake and every failure of the user's own code; no hang.

Each case ends in exit status 2 (``DeepMRInputError`` in Python) with ONE line naming the problem:
the model's own code raising (its traceback only with ``--debug``), a model returning the wrong
shape or NaN, damaged files of a finished run given to ``compare``, a calibration table with a
non-numeric cell, the Python API called with a file name or a model name where objects belong,
stale or odd lock files, and Dask addresses that lead nowhere (within seconds).
"""

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import folder as rf
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent
FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"

MODEL_HEAD = (
    "import numpy as np\nfrom deepmr_kipoi.predictive import DeepEnsemble, from_function\n"
    "from tests._helpers_pipeline import tiny_model\n"
)

#: factories whose model (not the factory itself) misbehaves when it predicts
MODELS = {
    "raises_in_predict": (
        MODEL_HEAD + "def broken(x):\n    raise ValueError('layer 3 expects 8 channels')\n"
        "def f():\n    return DeepEnsemble([from_function(broken, ('a', 'b'), sequence_length=40)] * 3)\n",
        "the model's own code raised ValueError: layer 3 expects 8 channels",
    ),
    "raises_in_ism": (
        MODEL_HEAD + "calls = [0]\ndef fn(x):\n    calls[0] += 1\n    if calls[0] > 3:\n"
        "        raise RuntimeError('out of memory in my layer')\n"
        "    return np.stack([x[:, :, 0].sum(1), x[:, :, 1].sum(1)], 1) * (1 + 0.1 * calls[0])\n"
        "def f():\n    return DeepEnsemble([from_function(fn, ('a', 'b'), sequence_length=40)] * 3)\n",
        "the model's own code raised RuntimeError: out of memory in my layer",
    ),
    "wrong_shape": (
        MODEL_HEAD + "class M:\n    feature_names = ('a', 'b')\n    n_samples = 3\n"
        "    sequence_length = 40\n    alphabet = 'ACGT'\n"
        "    def predict_samples(self, x, batch_size=None):\n        return np.zeros((3, len(x)))\n"
        "def f():\n    return M()\n",
        "predict_samples returned an array of shape (3, 6)",
    ),
    "wrong_feature_count": (
        MODEL_HEAD + "class M:\n    feature_names = ('a', 'b')\n    n_samples = 3\n"
        "    sequence_length = 40\n    alphabet = 'ACGT'\n"
        "    def predict_samples(self, x, batch_size=None):\n"
        "        return np.zeros((3, len(x), 5))\n"
        "def f():\n    return M()\n",
        "expected (S, N, F) = (3, 6, 2)",
    ),
    "no_batch_size": (
        MODEL_HEAD + "class M:\n    feature_names = ('a', 'b')\n    n_samples = 3\n"
        "    sequence_length = 40\n    alphabet = 'ACGT'\n"
        "    def predict_samples(self, x):\n        return np.zeros((3, len(x), 2))\n"
        "def f():\n    return M()\n",
        "predict_samples does not take batch_size",
    ),
    "returns_none": (
        MODEL_HEAD + "class M:\n    feature_names = ('a', 'b')\n    n_samples = 3\n"
        "    sequence_length = 40\n    alphabet = 'ACGT'\n"
        "    def predict_samples(self, x, batch_size=None):\n        return None\n"
        "def f():\n    return M()\n",
        "predict_samples returned NoneType",
    ),
    "nan_reference": (
        MODEL_HEAD + "def fn(x):\n    return np.full((len(x), 2), np.nan)\n"
        "def f():\n    return DeepEnsemble([from_function(fn, ('a', 'b'), sequence_length=40)] * 3)\n",
        "the model returned NaN or inf for the reference sequences",
    ),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("oneline")
    fa = helpers.write_fasta(base / "in.fa", helpers.random_dna(6, 40, seed=1))
    for key, (text, _) in MODELS.items():
        (base / f"m_{key}.py").write_text(text)
    runs = {}
    for name in ("a", "b"):
        runs[name] = base / name
        assert cli.main(_argv(fa, runs[name])) == 0
    return {"base": base, "fa": fa, **runs}


def _argv(fa, out, *extra, model=FACTORY):
    return [
        "run",
        "--model",
        model,
        "--fasta",
        str(fa),
        "--window",
        "10",
        "20",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(out),
        *map(str, extra),
    ]


def _one_line(capsys, words, rc, expected_rc=2):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == expected_rc, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", sorted(MODELS))
def test_model_code_failure_is_one_line(env, tmp_path, capsys, case):
    words = MODELS[case][1]
    model = f"{env['base'] / f'm_{case}.py'}:f"
    rc = cli.main(_argv(env["fa"], tmp_path / "r", model=model))
    _one_line(capsys, words, rc)


def test_debug_shows_the_models_own_traceback(env, tmp_path, capsys):
    model = f"{env['base'] / 'm_raises_in_predict.py'}:f"
    assert cli.main(_argv(env["fa"], tmp_path / "r", "--debug", model=model)) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "m_raises_in_predict.py" in err and "in broken" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("deepmr run: error: the model's own code raised ValueError")
    )


def test_factory_error_traceback_with_debug(env, tmp_path, capsys):
    (tmp_path / "fac.py").write_text(
        "def f():\n    return helper()\n\ndef helper():\n    raise KeyError('w')\n"
    )
    argv = _argv(env["fa"], tmp_path / "r", model=f"{tmp_path / 'fac.py'}:f")
    _one_line(capsys, "raised KeyError: 'w'", cli.main(argv))
    assert cli.main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "in helper" in err


# ---- the Python API ----------------------------------------------------------------------------

API_CASES = [
    (
        "config_file_name",
        lambda e: pipeline.run(str(e["base"] / "config.yaml")),
        "pipeline.run takes a RunConfig",
    ),
    (
        "config_mapping",
        lambda e: pipeline.run({"model": FACTORY}),
        "pipeline.run takes a RunConfig",
    ),
    (
        "model_name_as_model",
        lambda e: pipeline.run(
            pipeline.RunConfig(fasta=str(e["fa"]), progress=False), model="not a model"
        ),
        "model= must be a PredictiveModel",
    ),
    (
        "model_array_as_model",
        lambda e: pipeline.run(
            pipeline.RunConfig(fasta=str(e["fa"]), progress=False), model=np.zeros(3)
        ),
        "got ndarray",
    ),
]


@pytest.mark.parametrize("case,call,words", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_misuse_is_one_line(env, case, call, words):
    with pytest.raises(DeepMRInputError) as info:
        call(env)
    assert "\n" not in str(info.value) and words in str(info.value)


def test_nan_message_is_one_line_in_python_too(env):
    with pytest.raises(DeepMRInputError) as info:
        pipeline.run(
            pipeline.RunConfig(fasta=str(env["fa"]), window=(10, 20), progress=False),
            model=_nan_model(),
            identity={"name": "nan"},
        )
    assert "\n" not in str(info.value) and "NaN or inf" in str(info.value)


def _nan_model():
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    def fn(x):
        out = np.stack([x[:, :, 0].sum(1), x[:, :, 1].sum(1)], 1)
        out[:, 1] = np.where(x[:, 12, 2] > 0, np.nan, out[:, 1])
        return out

    return DeepEnsemble(
        [
            from_function(lambda x, k=k: fn(x) * (1 + 0.1 * k), ("a", "b"), sequence_length=40)
            for k in range(3)
        ]
    )


# ---- damaged files given to compare, and calibration tables -------------------------------------


def _damage(rel, data):
    def act(run):
        (run / rel).write_bytes(data(run / rel) if callable(data) else data)

    return act


COMPARE_CASES = [
    ("run_json_invalid", _damage("run.json", b"{oops"), "run.json is not valid JSON"),
    ("run_json_list", _damage("run.json", b"[1, 2]"), "run.json does not hold a run record"),
    ("run_json_binary", _damage("run.json", b"\xff\xfe\x00"), "run.json is not valid JSON"),
    (
        "table_truncated",
        _damage("global_effects.parquet", lambda p: p.read_bytes()[:100]),
        "global_effects.parquet does not read",
    ),
    ("table_empty", _damage("global_effects.parquet", b""), "global_effects.parquet does not read"),
]


@pytest.mark.parametrize("case,damage,words", COMPARE_CASES, ids=[c[0] for c in COMPARE_CASES])
def test_compare_with_damaged_run_is_one_line(env, tmp_path, capsys, case, damage, words):
    broken = tmp_path / "broken"
    shutil.copytree(env["b"], broken)
    damage(broken)
    rc = cli.main(
        ["compare", str(env["a"]), str(broken), "--out", str(tmp_path / "cmp"), "--quiet"]
    )
    _one_line(capsys, words, rc)
    assert not (tmp_path / "cmp").exists()


TABLES = [
    (
        "text_cell",
        "sequence,x\n{s0},1.0\n{s1},high\n",
        "column 'x' holds 'high' (row 2), not a number",
    ),
    ("empty_column", "sequence,x\n{s0},\n{s1},\n", "column 'x' has no numbers"),
]


@pytest.mark.parametrize("case,text,words", TABLES, ids=[t[0] for t in TABLES])
def test_calibration_table_cells_are_checked(env, tmp_path, capsys, case, text, words):
    seqs = helpers.random_dna(2, 40, seed=9)
    (tmp_path / "cal.csv").write_text(text.format(s0=seqs[0], s1=seqs[1]))
    rc = cli.main(_argv(env["fa"], tmp_path / "r", "--calibration-table", tmp_path / "cal.csv"))
    _one_line(capsys, words, rc)


# ---- lock files --------------------------------------------------------------------------------


def _dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _old(path):
    os.utime(path, (time.time() - 3600, time.time() - 3600))


LOCKS = [
    ("empty_old", lambda p: (p.write_text(""), _old(p)), None),
    ("garbage_old", lambda p: (p.write_text("{garbled"), _old(p)), None),
    ("pid_text_dead", lambda p: p.write_text(f"{_dead_pid()}\n"), None),
    ("pid_json_string_dead", lambda p: p.write_text(json.dumps({"pid": str(_dead_pid())})), None),
    (
        "dead_pid_this_host",
        lambda p: p.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})),
        None,
    ),
    ("empty_fresh", lambda p: p.write_text(""), "is being set up by another deepmr run"),
    (
        "pid_text_alive",
        lambda p: p.write_text(f"{os.getpid()}"),
        f"in use by another deepmr run (pid {os.getpid()}",
    ),
    (
        "other_host",
        lambda p: p.write_text(json.dumps({"pid": 1, "host": "elsewhere"})),
        "(pid 1 on elsewhere",
    ),
    ("folder_named_like_the_lock", lambda p: p.mkdir(), "is not deepmr's lock file"),
]


@pytest.mark.parametrize("case,make,words", LOCKS, ids=[c[0] for c in LOCKS])
def test_lock_files_are_taken_over_or_refused_in_one_line(env, tmp_path, capsys, case, make, words):
    out = tmp_path / "r"
    out.mkdir()
    make(out / rf.LOCK_NAME)
    rc = cli.main(_argv(env["fa"], out))
    if words is None:
        assert rc == 0, capsys.readouterr().err
        assert not (out / rf.LOCK_NAME).exists() and (out / "global_effects.parquet").exists()
    else:
        _one_line(capsys, words, rc)
        assert (out / rf.LOCK_NAME).exists() and not (out / "global_effects.parquet").exists()


# ---- Dask addresses that lead nowhere ----------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (not a Dask scheduler)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


def _file(tmp, text):
    path = tmp / "scheduler.json"
    path.write_text(text)
    return str(path)


DASK = [
    (
        "garbage_scheduler_file",
        lambda t, s: _file(t, "\x00not json"),
        "is not a Dask scheduler file",
    ),
    (
        "scheduler_file_without_address",
        lambda t, s: _file(t, '{"id": 1}'),
        "is not a Dask scheduler file",
    ),
    ("unknown_scheme", lambda t, s: "foo://127.0.0.1:8786", "unknown address scheme 'foo'"),
    ("no_port", lambda t, s: "tcp://127.0.0.1", "cannot reach the Dask scheduler"),
    ("closed_port", lambda t, s: _closed_port(), "cannot reach the Dask scheduler"),
    ("silent_listener", lambda t, s: s, "cannot reach the Dask scheduler"),
]


@pytest.mark.parametrize("case,address,words", DASK, ids=[c[0] for c in DASK])
def test_dask_address_fails_fast_in_one_line(
    env, tmp_path, capsys, monkeypatch, silent_server, case, address, words
):
    pytest.importorskip("distributed")
    from deepmr_kipoi.run import executors

    # a silent listener is given up on after CONNECT_TIMEOUT_S + 5 s: 1 s here instead of 10
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    tick = time.perf_counter()
    rc = cli.main(
        _argv(
            env["fa"],
            tmp_path / "r",
            "--executor",
            "dask",
            "--dask-address",
            address(tmp_path, silent_server),
        )
    )
    assert time.perf_counter() - tick < 1 + 5 + 4
    _one_line(capsys, words, rc)
