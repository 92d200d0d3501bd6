"""The package's skeleton: imports cleanly, ships its command, declares its plugin group."""

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_does_not_load_frameworks():
    code = (
        "import sys, deepmr_kipoi, deepmr_kipoi.cli\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_lists_every_command(capsys):
    from deepmr_kipoi import cli

    assert cli.main(["--help"]) == 0
    printed = capsys.readouterr().out
    for command in ("demo", "run", "simulate", "compare", "adapters"):
        assert command in printed


def test_console_script_and_adapter_group_declared():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    entry_points = cfg["options.entry_points"]
    assert "deepmr = deepmr_kipoi.cli:main" in entry_points["console_scripts"]
    assert "deepmr_kipoi.adapters" in entry_points


def test_shipped_adapters_are_installed_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="deepmr_kipoi.adapters")}
    assert {"deepsea", "basset", "bpnet-oskn", "kipoi-generic"} <= names


def test_version_matches_metadata():
    from importlib.metadata import version

    import deepmr_kipoi

    assert version("deepmr_kipoi") == deepmr_kipoi.__version__


def test_code_is_ruff_clean():
    ruff = Path(sys.executable).with_name("ruff")
    dirs = ["deepmr_kipoi", "model_adapters", "tests", "examples", "benchmarks"]
    out = subprocess.run([str(ruff), "check", *dirs], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:]
