"""``--quiet`` prints nothing but errors: ``deepmr run`` in a fresh process on a zoo copy whose
``config.yaml`` names a dependency that is not installed (Kipoi then prints a warning and
``pkg_resources`` raises its deprecation warning) and on a Keras group member (TensorFlow's start-up
lines), with TensorFlow's log level left unset as on a user's machine."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _deepmr(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "deepmr_kipoi.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


RUN = [
    "--n-samples",
    "3",
    "--n-sequences",
    "2",
    "--window",
    "100",
    "112",
    "--z",
    "0",
    "--methods",
    "ivw",
    "--no-figures",
    "--no-report",
    "--quiet",
]


def test_quiet_run_on_a_zoo_copy_prints_nothing(zoo_torch, tmp_path):
    source = tmp_path / "zoo"
    shutil.copytree(os.path.join(zoo_torch, "Basset"), source / "Basset")
    # the real zoo's config.yaml lists pip dependencies; one that is missing makes Kipoi print
    (source / "config.yaml").write_text("dependencies:\n  pip:\n    deepmr-not-installed-pkg>=1\n")
    done = _deepmr(
        ["run", "--model", "Basset", "--source", str(source), "--out", "run", *RUN], tmp_path
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "run" / "global_effects.csv").is_file()


def test_quiet_run_on_a_keras_group_member_prints_nothing(kipoi_groups, tmp_path):
    done = _deepmr(
        [
            "run",
            "--model",
            "CpGenie/A549_ENCSR000DDI",
            "--source",
            kipoi_groups,
            "--out",
            "run",
            *RUN,
        ],
        tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_quiet_still_prints_the_error(tmp_path):
    done = _deepmr(
        ["run", "--model", str(tmp_path / "nowhere"), "--out", "run", "--quiet"], tmp_path
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("deepmr run: error:")
