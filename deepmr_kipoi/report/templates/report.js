/* The report's interactive parts: the global table (sort, filter, pages), the zoomable heatmap,
   the pair-detail switch and links from the graph to the table. No network, no libraries; every
   value reaches the page through textContent, never as HTML. */
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  function readJSON(id) {
    var el = byId(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function isP(name) { return name === "pvalue" || name === "qvalue" || /_pvalue$/.test(name); }

  function fmt(v, name) {
    if (v === null || v === undefined) { return "\u2013"; }
    if (typeof v === "boolean") { return v ? "yes" : "no"; }
    if (typeof v === "string") { return v; }
    if (v === 0) { return "0"; }
    var a = Math.abs(v);
    if (isP(name) && a < 1e-3) { return v.toExponential(1); }
    if (a < 1e-3 || a >= 1e5) { return v.toExponential(2); }
    if (Number.isInteger(v)) { return String(v); }
    return a >= 1 ? String(Number(v.toPrecision(3))) : v.toFixed(3);
  }

  /* ---------------------------------------------------------------- table */

  function bytesOf(b64) {
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { out[i] = s.charCodeAt(i); }
    return out.buffer;
  }

  /* columns arrive as level codes (text, flags, numbers with few values) or float32 values */
  function decodeColumn(c) {
    if (c.float32 !== undefined) {
      c.f32 = new Float32Array(bytesOf(c.float32));
    } else {
      var buf = bytesOf(c.codes);
      c.idx = c.width === 1 ? new Uint8Array(buf) : (c.width === 2 ? new Uint16Array(buf) : new Uint32Array(buf));
    }
    return c;
  }

  function GlobalTable(data) {
    var self = this;
    this.cols = data.columns.map(decodeColumn);
    this.n = data.n_rows;
    this.byName = {};
    this.cols.forEach(function (c) { self.byName[c.name] = c; });
    this.table = byId("global-table");
    this.sortCol = null;
    this.sortDir = 1;
    this.page = 0;
    this.pageSize = 50;
    this.order = null;
    this.rows = null;
    this.applyFilter();
  }

  GlobalTable.prototype.value = function (col, i) {
    if (col.f32) { var v = col.f32[i]; return v !== v ? null : v; }
    return col.levels[col.idx[i]];
  };

  GlobalTable.prototype.visible = function () {
    var tech = byId("show-technical");
    var all = tech && tech.checked;
    return this.cols.filter(function (c) { return all || c.group === "decision"; });
  };

  /* rows whose text column matches: a flag per level, then one look-up per row */
  GlobalTable.prototype.levelMatch = function (name, test) {
    var col = this.byName[name];
    if (!col || col.type !== "text") { return null; }
    return col.levels.map(function (lv) { return lv !== null && test(String(lv).toLowerCase()); });
  };

  GlobalTable.prototype.applyFilter = function () {
    var q = (byId("filter-feature") || {}).value || "";
    var verdict = (byId("filter-verdict") || {}).value || "";
    var method = (byId("filter-method") || {}).value || "";
    q = q.trim().toLowerCase();
    var ex = null, out = null, either = null;
    if (q.indexOf("->") >= 0) {
      var parts = q.split("->").map(function (s) { return s.trim(); });
      ex = this.levelMatch("exposure", function (s) { return s.indexOf(parts[0]) >= 0; });
      out = this.levelMatch("outcome", function (s) { return s.indexOf(parts[1]) >= 0; });
    } else if (q) {
      either = [this.levelMatch("exposure", function (s) { return s.indexOf(q) >= 0; }),
                this.levelMatch("outcome", function (s) { return s.indexOf(q) >= 0; })];
    }
    /* a verdict asked of a table without verdicts matches nothing */
    var vm = verdict ? (this.levelMatch("verdict", function (s) { return s === verdict; }) || []) : null;
    var mm = method ? this.levelMatch("method", function (s) { return s === method.toLowerCase(); }) : null;
    var ce = (this.byName.exposure || {}).idx, co = (this.byName.outcome || {}).idx;
    var cv = (this.byName.verdict || {}).idx, cm = (this.byName.method || {}).idx;
    var keep = [];
    for (var i = 0; i < this.n; i++) {
      if (ex && !(ex[ce[i]] && out[co[i]])) { continue; }
      if (either && !((either[0] && either[0][ce[i]]) || (either[1] && either[1][co[i]]))) { continue; }
      if (vm && !(cv && vm[cv[i]])) { continue; }
      if (mm && !(cm && mm[cm[i]])) { continue; }
      keep.push(i);
    }
    this.rows = keep;
    this.page = 0;
    this.applySort();
  };

  GlobalTable.prototype.applySort = function () {
    var self = this;
    if (this.sortCol) {
      var col = this.byName[this.sortCol], dir = this.sortDir;
      var key = function (i) { return self.value(col, i); };
      this.rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var xn = x === null || x === undefined, yn = y === null || y === undefined;
        if (xn || yn) { return xn === yn ? a - b : (xn ? 1 : -1); }  /* missing values last */
        if (x < y) { return -dir; }
        if (x > y) { return dir; }
        return a - b;
      });
    } else {
      this.rows.sort(function (a, b) { return a - b; });
    }
    this.render();
  };

  GlobalTable.prototype.sortBy = function (name) {
    if (this.sortCol === name) { this.sortDir = -this.sortDir; } else { this.sortCol = name; this.sortDir = 1; }
    this.page = 0;
    this.applySort();
  };

  GlobalTable.prototype.render = function () {
    var self = this, cols = this.visible();
    var thead = this.table.tHead, tbody = this.table.tBodies[0];
    var tr = document.createElement("tr");
    cols.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.name;
      th.dataset.column = c.name;
      if (c.type === "text") { th.className = "l"; }
      if (self.sortCol === c.name) { th.classList.add(self.sortDir > 0 ? "sorted-asc" : "sorted-desc"); }
      th.title = "sort by " + c.name;
      th.addEventListener("click", function () { self.sortBy(c.name); });
      tr.appendChild(th);
    });
    thead.replaceChildren(tr);
    var pages = Math.max(1, Math.ceil(this.rows.length / this.pageSize));
    this.page = Math.min(this.page, pages - 1);
    var start = this.page * this.pageSize, stop = Math.min(this.rows.length, start + this.pageSize);
    var frag = document.createDocumentFragment();
    for (var k = start; k < stop; k++) {
      var i = this.rows[k], row = document.createElement("tr");
      cols.forEach(function (c) {
        var td = document.createElement("td"), v = self.value(c, i);
        td.textContent = fmt(v, c.name);
        if (c.type === "text") { td.className = "l"; }
        if (c.name === "verdict_reason") { td.className = "reason"; }
        if (c.name === "verdict") { td.className = "l v-" + String(v).replace(/ /g, "-"); }
        row.appendChild(td);
      });
      frag.appendChild(row);
    }
    tbody.replaceChildren(frag);
    this.table.dataset.matching = String(this.rows.length);
    this.table.dataset.shown = String(stop - start);
    var info = byId("page-info");
    if (info) {
      info.textContent = this.rows.length ? " rows " + (start + 1) + "\u2013" + stop + " of " + this.rows.length
        + " (page " + (this.page + 1) + " of " + pages + ") " : " no matching rows ";
    }
  };

  GlobalTable.prototype.showPair = function (exposure, outcome) {
    var f = byId("filter-feature");
    if (!f) { return; }
    f.value = outcome === undefined ? exposure : exposure + " -> " + outcome;
    this.applyFilter();
    var sec = byId("global-effects");
    if (sec && sec.scrollIntoView) { sec.scrollIntoView(); }
  };

  function wireTable(table) {
    var timer = null;
    var f = byId("filter-feature");
    if (f) {
      f.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () { table.applyFilter(); }, 120);
      });
    }
    ["filter-verdict", "filter-method"].forEach(function (id) {
      var el = byId(id);
      if (el) { el.addEventListener("change", function () { table.applyFilter(); }); }
    });
    var tech = byId("show-technical");
    if (tech) { tech.addEventListener("change", function () { table.render(); }); }
    var prev = byId("page-prev"), next = byId("page-next");
    if (prev) { prev.addEventListener("click", function () { if (table.page > 0) { table.page--; table.render(); } }); }
    if (next) {
      next.addEventListener("click", function () {
        if ((table.page + 1) * table.pageSize < table.rows.length) { table.page++; table.render(); }
      });
    }
  }

  /* -------------------------------------------------------------- heatmap */

  function decode(b64, signed) {
    var s = atob(b64), n = s.length;
    var out = signed ? new Int8Array(n) : new Uint8Array(n);
    for (var i = 0; i < n; i++) { out[i] = s.charCodeAt(i); }
    return out;
  }

  var BLUE = [33, 102, 172], WHITE = [247, 247, 247], RED = [178, 24, 43], MISSING = [230, 230, 230];

  function colour(code) {
    if (code === -128) { return MISSING; }
    var t = code / 127, end = t < 0 ? BLUE : RED, a = Math.abs(t);
    return [0, 1, 2].map(function (k) { return Math.round(WHITE[k] + (end[k] - WHITE[k]) * a); });
  }

  function Heatmap(d, table) {
    this.d = d;
    this.table = table;
    this.nr = d.rows.length;
    this.nc = d.cols.length;
    this.values = decode(d.values, true);
    this.verdict = decode(d.verdict, false);
    this.canvas = byId("heatmap");
    this.ctx = this.canvas.getContext("2d");
    this.tip = byId("heatmap-tip");
    this.ctx.font = "10px sans-serif";
    var longest = 0, ctx = this.ctx;
    d.rows.concat(d.cols).forEach(function (s) { longest = Math.max(longest, ctx.measureText(s).width); });
    this.margin = Math.min(170, Math.ceil(longest) + 8);
    this.image = this.paint();
    this.reset();
    this.wire();
  }

  Heatmap.prototype.paint = function () {
    var off = document.createElement("canvas");
    off.width = this.nc;
    off.height = this.nr;
    var octx = off.getContext("2d"), img = octx.createImageData(this.nc, this.nr);
    for (var i = 0; i < this.values.length; i++) {
      var c = colour(this.values[i]);
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    return off;
  };

  Heatmap.prototype.plot = function () {
    var m = this.margin, w = this.canvas.width, h = this.canvas.height;
    return { x: m, y: 6, w: w - m - 8, h: h - m - 6 };
  };

  Heatmap.prototype.reset = function () {
    this.view = { r0: 0, r1: this.nr, c0: 0, c1: this.nc };
    this.draw();
  };

  Heatmap.prototype.draw = function (sel) {
    var ctx = this.ctx, v = this.view, p = this.plot();
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.image, v.c0, v.r0, v.c1 - v.c0, v.r1 - v.r0, p.x, p.y, p.w, p.h);
    var ch = p.h / (v.r1 - v.r0), cw = p.w / (v.c1 - v.c0);
    ctx.strokeStyle = "#000000";
    ctx.lineWidth = 1;
    for (var r = v.r0; r < v.r1; r++) {
      for (var c = v.c0; c < v.c1; c++) {
        if (this.verdict[r * this.nc + c] === 3) {
          var x = p.x + (c - v.c0) * cw, y = p.y + (r - v.r0) * ch;
          ctx.strokeRect(x + 0.5, y + 0.5, Math.max(cw - 1, 2), Math.max(ch - 1, 2));
        }
      }
    }
    this.labels(p, ch, cw);
    if (sel) {
      ctx.strokeStyle = "#333333";
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(sel.x, sel.y, sel.w, sel.h);
      ctx.setLineDash([]);
    }
    var info = byId("heatmap-view");
    if (info) {
      info.textContent = "showing exposures " + (v.r0 + 1) + "\u2013" + v.r1 + " of " + this.nr
        + ", outcomes " + (v.c0 + 1) + "\u2013" + v.c1 + " of " + this.nc;
    }
  };

  /* labels where they fit: every k-th name so that names stay at least 10 px apart */
  Heatmap.prototype.labels = function (p, ch, cw) {
    var ctx = this.ctx, v = this.view, d = this.d;
    var rs = Math.max(1, Math.ceil(10 / ch)), cs = Math.max(1, Math.ceil(10 / cw));
    ctx.fillStyle = "#222222";
    ctx.font = Math.max(8, Math.min(12, Math.floor(Math.min(ch * rs, 14) - 1))) + "px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    var nr = 0, nc = 0;
    for (var r = v.r0; r < v.r1; r += rs) {
      ctx.fillText(d.rows[r], p.x - 4, p.y + (r - v.r0 + 0.5) * ch, this.margin - 6);
      nr++;
    }
    ctx.font = Math.max(8, Math.min(12, Math.floor(Math.min(cw * cs, 14) - 1))) + "px sans-serif";
    for (var c = v.c0; c < v.c1; c += cs) {
      ctx.save();
      ctx.translate(p.x + (c - v.c0 + 0.5) * cw, p.y + p.h + 4);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(d.cols[c], 0, 0, this.margin - 6);
      ctx.restore();
      nc++;
    }
    this.canvas.dataset.rowLabels = String(nr);
    this.canvas.dataset.colLabels = String(nc);
    this.canvas.dataset.view = [v.r0, v.r1, v.c0, v.c1].join(",");
  };

  Heatmap.prototype.cellAt = function (ev) {
    var rect = this.canvas.getBoundingClientRect();
    var sx = this.canvas.width / rect.width, sy = this.canvas.height / rect.height;
    var x = (ev.clientX - rect.left) * sx, y = (ev.clientY - rect.top) * sy, p = this.plot(), v = this.view;
    var c = v.c0 + Math.floor((x - p.x) / p.w * (v.c1 - v.c0));
    var r = v.r0 + Math.floor((y - p.y) / p.h * (v.r1 - v.r0));
    var inside = x >= p.x && x < p.x + p.w && y >= p.y && y < p.y + p.h;
    return { r: r, c: c, x: x, y: y, inside: inside };
  };

  Heatmap.prototype.zoomTo = function (r0, r1, c0, c1) {
    r0 = Math.max(0, Math.min(r0, this.nr - 1)); c0 = Math.max(0, Math.min(c0, this.nc - 1));
    r1 = Math.max(r0 + 1, Math.min(r1, this.nr)); c1 = Math.max(c0 + 1, Math.min(c1, this.nc));
    this.view = { r0: r0, r1: r1, c0: c0, c1: c1 };
    this.draw();
  };

  Heatmap.prototype.wire = function () {
    var self = this, start = null;
    var names = ["", "not causal", "undetermined", "causal"];
    this.canvas.addEventListener("mousedown", function (ev) { start = self.cellAt(ev); });
    this.canvas.addEventListener("mousemove", function (ev) {
      var at = self.cellAt(ev);
      if (start) {
        self.draw({ x: Math.min(start.x, at.x), y: Math.min(start.y, at.y),
                    w: Math.abs(at.x - start.x), h: Math.abs(at.y - start.y) });
      }
      if (!at.inside) { self.tip.style.display = "none"; return; }
      var k = at.r * self.nc + at.c, code = self.values[k];
      var est = code === -128 ? "not estimable" : "about " + fmt(code / 127 * self.d.vmax, "estimate");
      self.tip.textContent = self.d.rows[at.r] + " \u2192 " + self.d.cols[at.c] + ": " + est
        + (self.verdict[k] ? " (" + names[self.verdict[k]] + ")" : "");
      var rect = self.canvas.getBoundingClientRect();
      self.tip.style.left = (ev.clientX - rect.left + 12) + "px";
      self.tip.style.top = (ev.clientY - rect.top + 12) + "px";
      self.tip.style.display = "block";
    });
    this.canvas.addEventListener("mouseleave", function () { self.tip.style.display = "none"; });
    this.canvas.addEventListener("mouseup", function (ev) {
      var at = self.cellAt(ev);
      if (start && (Math.abs(at.c - start.c) >= 1 || Math.abs(at.r - start.r) >= 1)) {
        self.zoomTo(Math.min(start.r, at.r), Math.max(start.r, at.r) + 1,
                    Math.min(start.c, at.c), Math.max(start.c, at.c) + 1);
      } else if (start && at.inside && self.table) {
        self.table.showPair(self.d.rows[at.r], self.d.cols[at.c]);
      }
      start = null;
    });
    this.canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var at = self.cellAt(ev), v = self.view, f = ev.deltaY > 0 ? 1.25 : 0.8;
      var nr = Math.max(1, Math.round((v.r1 - v.r0) * f)), nc = Math.max(1, Math.round((v.c1 - v.c0) * f));
      var fr = (at.r - v.r0) / (v.r1 - v.r0), fc = (at.c - v.c0) / (v.c1 - v.c0);
      var r0 = Math.round(at.r - fr * nr), c0 = Math.round(at.c - fc * nc);
      r0 = Math.max(0, Math.min(r0, self.nr - nr)); c0 = Math.max(0, Math.min(c0, self.nc - nc));
      self.zoomTo(r0, r0 + nr, c0, c0 + nc);
    }, { passive: false });
    this.canvas.addEventListener("dblclick", function () { self.reset(); });
    var btn = byId("heatmap-reset");
    if (btn) { btn.addEventListener("click", function () { self.reset(); }); }
  };

  /* ---------------------------------------------------------- pair details */

  function wirePairs() {
    var sel = byId("pair-select");
    if (!sel) { return; }
    var show = function () {
      document.querySelectorAll(".pair-figs").forEach(function (div) {
        div.style.display = div.dataset.pair === sel.value ? "block" : "none";
      });
    };
    sel.addEventListener("change", show);
    show();
  }

  /* graph arrows and nodes (SVG groups named edge:X|Y and node:X) show their rows */
  function wireGraph(table) {
    document.querySelectorAll("#overview svg g[id^='edge:'], #overview svg g[id^='node:']").forEach(function (g) {
      g.style.cursor = "pointer";
      g.addEventListener("click", function () {
        var id = g.id;
        if (id.indexOf("edge:") === 0) {
          var pair = id.slice(5).split("|");
          table.showPair(pair[0], pair[1]);
        } else {
          table.showPair(id.slice(5));
        }
      });
    });
  }

  function main() {
    var data = readJSON("deepmr-table");
    var table = data ? new GlobalTable(data) : null;
    if (table) { wireTable(table); wireGraph(table); }
    var hm = readJSON("deepmr-heatmap");
    if (hm) { window.deepmrHeatmap = new Heatmap(hm, table); }
    window.deepmrTable = table;
    wirePairs();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", main);
  } else {
    main();
  }
}());
