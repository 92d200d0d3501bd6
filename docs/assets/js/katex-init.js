// Renders the formulas that pymdownx.arithmatex (generic mode) marks with class "arithmatex",
// using the KaTeX copy shipped beside this file: no network.
(function () {
  "use strict";
  function render() {
    document.querySelectorAll(".arithmatex").forEach(function (el) {
      var tex = el.textContent.trim();
      var display = tex.startsWith("\\[");
      tex = tex.replace(/^\\[([]/, "").replace(/\\[\])]$/, "");
      katex.render(tex, el, { displayMode: display, throwOnError: false });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
}());
