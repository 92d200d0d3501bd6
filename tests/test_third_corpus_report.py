"""Feature names that are markup, mathtext or slug alike (third bad-input corpus).

* ``<!--<script>`` (or ``a<!--b`` + ``c<script d``, split over two names) inside the page's JSON
  blocks switched the HTML parser into its escaped-script state and swallowed later sections: every
  ``<``, ``>``, ``&``, U+2028/U+2029 in a ``<script>`` block is now a JSON escape;
* ``p+q``, ``p*q``, ``p q``, ``p/q`` slug alike: each pair's figures get their own files;
* ``$x^$`` (mathtext to matplotlib) ended in an internal error: labels are drawn as typed.
"""

import json
import re
from pathlib import Path

import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.report.table import to_json
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent


def _run(tmp_path: Path, names: tuple, *extra) -> Path:
    factory = tmp_path / "named.py"
    factory.write_text(
        "from tests._helpers_pipeline import tiny_model\n"
        f"def f():\n    return tiny_model(features={names!r})\n"
    )
    fa = helpers.write_fasta(tmp_path / "in.fa", helpers.random_dna(6, 40, seed=5))
    out = tmp_path / "out"
    argv = ["run", "--model", f"{factory}:f", "--fasta", str(fa), "--window", "10", "20"]
    assert cli.main([*argv, "--quiet", "--out", str(out), *extra]) == 0
    return out


def _script_blocks(html: str) -> list[str]:
    return re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.DOTALL | re.IGNORECASE)


MARKUP = ("a<!--b", "c<script d", "<!--<script>", "e&f\u2028g>")


def test_markup_in_feature_names_cannot_leave_the_json_blocks(tmp_path):
    out = _run(tmp_path, MARKUP)  # with figures: names in inline SVG and attributes too
    html = (out / "report.html").read_text(encoding="utf-8")
    # the page's own markup only: no comment opened and no script opened by a name, in any context
    assert "<!--" not in html
    assert len(re.findall("<script", html, flags=re.IGNORECASE)) == html.lower().count("</script>")
    blocks = [b for b in _script_blocks(html) if b.lstrip().startswith(("{", "["))]
    assert blocks, "the page has no JSON blocks"
    for block in blocks:
        assert not re.search("[<>&\u2028\u2029]", block), block[:200]
    assert set(MARKUP) <= _strings(json.loads(blocks[-1]))
    # every section of the page follows the blocks intact
    assert html.count("<section") == html.count("</section>") and html.rstrip().endswith("</html>")


def _strings(obj) -> set:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(_strings(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_strings(v) for v in obj)) if obj else set()
    return set()


@pytest.mark.parametrize("text", ["</script>", "<!--", "<script", "a&b", "x\u2028y\u2029z", ">"])
def test_to_json_escapes_every_script_context_and_reads_back(text):
    encoded = to_json({"k": [text]})
    assert not re.search("[<>&\u2028\u2029]", encoded)
    assert json.loads(encoded) == {"k": [text]}


def test_pairs_whose_names_slug_alike_get_their_own_figures(tmp_path):
    out = _run(tmp_path, ("p+q", "p*q", "p q", "p/q"))
    listed = json.loads((out / "run.json").read_text())["figures"]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.name for p in (out / "figures").iterdir())
    assert len(on_disk) == len(listed), (on_disk, listed)
    pair_files = [n for n in on_disk if n.startswith(("scatter_", "forest_", "instruments_"))]
    assert len(pair_files) >= 4


def test_mathtext_in_feature_names_is_drawn_as_typed(tmp_path):
    out = _run(tmp_path, ("$x^$", "a_{b", "$", "w"))
    assert (out / "report.html").exists()
    assert any(p.suffix in (".png", ".svg") for p in (out / "figures").iterdir())
