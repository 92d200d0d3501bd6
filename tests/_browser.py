"""Reports checked in headless Chromium: a copy of the page gets a probe that records every error
(uncaught exceptions, rejected promises, ``console.error``) before the report's own script runs,
then, after it ran, exercises the page as a reader would (sort, filter, zoom) and writes what it
found into the document; ``chromium --dump-dom`` returns that document.

Chromium is installed by ``.ci/run``; where it is absent the tests that need it skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-extensions",
    "--mute-audio",
]

_ERRORS = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) { window.__errors.push("rejection: " + e.reason); });
(function () { var orig = console.error; console.error = function () {
  window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
  return orig.apply(console, arguments); }; }());
</script>"""

# Runs after the report's script: sorts and filters the table through its controls, reads the graph
# and heatmap, and writes a JSON summary into <pre id="probe-results">.
_PROBE = """<script>
(function () {
  var out = {};
  function cells(name) {
    var heads = Array.prototype.map.call(document.querySelectorAll("#global-table thead th"),
      function (th) { return th.dataset.column; });
    var k = heads.indexOf(name);
    if (k < 0) { return []; }
    return Array.prototype.map.call(document.querySelectorAll("#global-table tbody tr"),
      function (tr) { return tr.children[k].textContent; });
  }
  function raw(name) {
    var t = window.deepmrTable, col = t.byName[name];
    return t.rows.slice(0, t.pageSize).map(function (i) { return t.value(col, i); });
  }
  function click(name) {
    var th = document.querySelector("#global-table thead th[data-column='" + name + "']");
    th.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  }
  function finish() {
    out.errors = window.__errors;
    var pre = document.createElement("pre");
    pre.id = "probe-results";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  function guarded(step) {
    return function () {
      try { step(); } catch (e) { window.__errors.push("probe: " + e); finish(); }
    };
  }
  var table = null, filter = null;
  var first = guarded(function () {
    table = document.getElementById("global-table");
    out.initial_rows = table.tBodies[0].rows.length;
    out.matching = Number(table.dataset.matching);
    click("estimate"); out.asc = raw("estimate");
    click("estimate"); out.desc = raw("estimate");
    out.sorted_class = document.querySelector("#global-table th.sorted-desc").dataset.column;
    filter = document.getElementById("filter-feature");
    filter.value = PROBE.feature;
    filter.dispatchEvent(new Event("input"));
    setTimeout(second, 400);  /* the filter waits for typing to pause */
  });
  var second = guarded(function () {
    out.feature_matching = Number(table.dataset.matching);
    out.feature_exposures = cells("exposure");
    out.feature_outcomes = cells("outcome");
    filter.value = "";
    filter.dispatchEvent(new Event("input"));
    setTimeout(third, 400);
  });
  var third = guarded(function () {
    var v = document.getElementById("filter-verdict");
    v.value = "causal"; v.dispatchEvent(new Event("change"));
    out.causal_matching = Number(table.dataset.matching);
    out.causal_cells = cells("verdict");
    var tech = document.getElementById("show-technical");
    out.columns_decision = table.tHead.rows[0].cells.length;
    tech.checked = true; tech.dispatchEvent(new Event("change"));
    out.columns_all = table.tHead.rows[0].cells.length;
    out.svg_labels = Array.prototype.map.call(document.querySelectorAll("#overview svg text"),
      function (t) { return t.textContent; });
    var canvas = document.getElementById("heatmap");
    if (canvas) {
      out.heatmap_labels = [Number(canvas.dataset.rowLabels), Number(canvas.dataset.colLabels)];
      var px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      var distinct = {};
      for (var i = 0; i < px.length; i += 4 * 97) { distinct[px[i] + "," + px[i + 1] + "," + px[i + 2]] = 1; }
      out.heatmap_colours = Object.keys(distinct).length;
      window.deepmrHeatmap.zoomTo(0, 12, 0, 12);
      out.zoomed_labels = [Number(canvas.dataset.rowLabels), Number(canvas.dataset.colLabels)];
    }
    finish();
  });
  window.addEventListener("load", function () { setTimeout(first, 50); });
}());
</script>"""


def probe(report: Path, tmp: Path, feature: str) -> dict:
    """Load a copy of ``report`` with the probe in headless Chromium; the probe's findings.

    Parameters
    ----------
    report : Path
    tmp : Path
        Scratch folder (the copy and Chromium's profile).
    feature : str
        The name typed into the table's feature filter.

    Returns
    -------
    dict
        ``errors`` and what the probe read (see ``_PROBE``).
    """
    text = report.read_text(encoding="utf-8")
    head = text.index("<head>") + len("<head>")
    setup = f"<script>var PROBE = {json.dumps({'feature': feature})};</script>"
    text = text[:head] + _ERRORS + setup + text[head:]
    end = text.rindex("</body>")
    copy = tmp / "probed.html"
    copy.write_text(text[:end] + _PROBE + text[end:], encoding="utf-8")
    cmd = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=20000",
        "--window-size=1280,2000",
        "--dump-dom",
        copy.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'id="probe-results"' in dom, "the probe did not finish: " + proc.stderr[-1500:]
    found = dom.split('id="probe-results">', 1)[1].split("</pre>", 1)[0]
    import html

    return json.loads(html.unescape(found))


def screenshot(page: Path, out: Path, tmp: Path, size=(1280, 2400)) -> Path:
    """A PNG of ``page`` as Chromium draws it at ``size`` (width, height)."""
    cmd = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp / 'profile-shot'}",
        "--virtual-time-budget=10000",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out
