"""The documentation: the MkDocs site builds warning-free, and nothing cites a document the
repository does not hold."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Built from pieces so that this file does not itself contain the name it searches for.
MISSING_DOC = "DESIGN" + ".md"


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocstrings", reason="mkdocs not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # every page of the navigation was rendered, as a file (the site works opened from disk)
    for page in (
        "index.html",
        "method.html",
        "architecture.html",
        "guides/demo.html",
        "guides/zoo-model.html",
        "guides/custom-adapter.html",
        "guides/compare.html",
        "guides/simulation.html",
        "guides/dask.html",
        "api/index.html",
    ):
        assert (site / page).is_file(), page
    mr_page = (site / "api" / "mr.html").read_text(encoding="utf-8")
    for anchor in (
        "deepmr_kipoi.mr.ivw.ivw",
        "deepmr_kipoi.mr.egger.egger",
        "deepmr_kipoi.mr.mode.weighted_mode",
        "deepmr_kipoi.mr.batched.run_batched",
    ):
        assert f'id="{anchor}"' in mr_page, anchor
    facade = (site / "api" / "pipeline.html").read_text(encoding="utf-8")
    for name in ("run", "RunConfig", "compare"):
        assert f'id="deepmr_kipoi.pipeline.{name}"' in facade, name
    # formulas are marked for the KaTeX copy the site ships; nothing is loaded from elsewhere
    method = (site / "method.html").read_text(encoding="utf-8")
    assert method.count('class="arithmatex"') >= 6
    assert (site / "assets" / "katex" / "katex.min.js").is_file()
    assert len(list((site / "assets" / "katex" / "fonts").glob("*.woff2"))) == 20
    pages = list(site.rglob("*.html"))
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", text), path
        # Sphinx roles of docstrings do not show as literal text
        assert not re.search(r":(mod|func|class|meth|attr|data):<code>", text), path
        # every link to a page names its file (a folder link opens a listing from disk)
        for href in re.findall(r'href="([^"#:]+)"', text):
            assert not href.endswith("/"), (path, href)


def _repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), else every file outside build folders."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]
    skip = {".git", ".venv", "site", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and not skip & set(p.relative_to(ROOT).parts)
        and not any(part.endswith(".egg-info") for part in p.parts)
    ]


def test_no_citation_of_missing_design_document():
    this = Path(__file__).resolve()
    citing = sorted(
        str(p.relative_to(ROOT))
        for p in _repository_files()
        if p.resolve() != this and MISSING_DOC.encode() in p.read_bytes()
    )
    assert not citing, f"files citing {MISSING_DOC}, which the repository does not hold: {citing}"
