// The job page's charts, drawn with uPlot (vendored: static/uPlot.iife.min.js, MIT, see
// web/assets/vendor/uplot/VENDORED.md). Every chart of a page shares its time axis: drag over
// one to zoom all of them, double-click to zoom out; the cursor and its values follow across.
"use strict";
(function () {
  var COLORS = ["#1a5fb4", "#c64600", "#26a269", "#9141ac", "#a51d2d", "#986a44", "#0e7c86", "#5e5c64",
    "#e5a50a", "#3584e4", "#2ec27e", "#c061cb"];
  var LIMIT = "#a51d2d";
  var charts = [];
  var syncing = false;

  function color(k) { return COLORS[k % COLORS.length]; }

  // Series with their own time stamps onto one shared x axis (null where a series has no
  // reading at that time: uPlot draws across the gap).
  function align(series) {
    var ts = {};
    series.forEach(function (s) { s.t.forEach(function (t) { ts[t] = true; }); });
    var xs = Object.keys(ts).map(Number).sort(function (a, b) { return a - b; });
    var at = {};
    xs.forEach(function (t, i) { at[t] = i; });
    var data = [xs];
    series.forEach(function (s) {
      var ys = new Array(xs.length).fill(null);
      s.t.forEach(function (t, i) { ys[at[t]] = s.y[i]; });
      data.push(ys);
    });
    return data;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return "–";
    if (unit === "bytes" || unit === "bytes/s") {
      var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, x = Math.abs(v);
      while (x >= 1024 && i < u.length - 1) { x /= 1024; v /= 1024; i++; }
      return (x < 10 && i ? v.toFixed(1) : v.toFixed(0)) + " " + u[i] + (unit === "bytes/s" ? "/s" : "");
    }
    var a = Math.abs(v), t = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.01 || a === 0 ? v.toFixed(2) : v.toExponential(1);
    return t + (unit ? " " + unit : "");
  }

  function syncScales(u) {
    if (syncing) return;
    syncing = true;
    var min = u.scales.x.min, max = u.scales.x.max;
    charts.forEach(function (c) { if (c !== u && c.root.isConnected) c.setScale("x", { min: min, max: max }); });
    syncing = false;
  }

  // opts: {id, title, unit, series: [{name, t, y, dash}], limits: [{label, value}], ymax, points}
  // Returns a card element holding the chart (drawn once the element is in the page).
  function chart(opts) {
    var card = document.createElement("div");
    card.className = "card chart";
    if (opts.id) card.id = opts.id;
    var title = document.createElement("div");
    title.className = "chart-title";
    var sized = opts.unit === "bytes" || opts.unit === "bytes/s";
    title.textContent = opts.title + (opts.unit && !sized ? " (" + opts.unit + ")" : "");
    card.appendChild(title);
    var withData = opts.series.filter(function (s) { return s.t.length; });
    if (!withData.length) {
      var none = document.createElement("p");
      none.className = "muted nodata";
      none.textContent = "No samples for this job.";
      card.appendChild(none);
      return card;
    }
    var limits = (opts.limits || []).filter(function (l) { return l.value > 0; });
    var data = align(withData);
    limits.forEach(function (l) { data.push(data[0].map(function () { return l.value; })); });
    var ser = [{ value: function (u, v) { return v === null ? "–" : new Date(v * 1000).toLocaleTimeString(); } }];
    withData.forEach(function (s, k) {
      ser.push({ label: s.name, stroke: color(k), width: 1.5, spanGaps: true, dash: s.dash, points: { show: !!opts.points, size: 6 },
        value: function (u, v) { return fmt(v, opts.unit); } });
    });
    limits.forEach(function (l) {
      ser.push({ label: l.label, stroke: LIMIT, width: 1.5, dash: [6, 4], points: { show: false }, class: "limit",
        value: function (u, v) { return fmt(v, opts.unit); } });
    });
    var yRange = function (u, min, max) {
      var top = Math.max(max || 0, opts.ymax || 0);
      return [0, top > 0 ? top * 1.08 : 1];
    };
    var holder = document.createElement("div");
    card.appendChild(holder);
    var width = function () { return Math.max(240, holder.clientWidth || card.clientWidth - 24 || 600); };
    var u = new uPlot({
      width: 600, height: 220,
      series: ser,
      scales: { x: { time: true }, y: { range: yRange } },
      // Byte scales carry their unit on each tick (KiB … GiB); other units are in the title.
      axes: [{}, { size: sized ? 80 : 52, values: function (u, vals) { return vals.map(function (v) { return fmt(v, sized ? opts.unit : ""); }); } }],
      cursor: { sync: { key: "tw-job" }, drag: { x: true, y: false } },
      legend: { live: true },
      hooks: { setScale: [function (u, key) { if (key === "x") syncScales(u); }] }
    }, data, holder);
    u.twLimits = limits.map(function (l) { return l.label; });
    u.twId = opts.id;
    charts.push(u);
    // Drawn at the holder's width once the card is in the page, and again when it changes.
    var fit = function () { if (u.root.isConnected) u.setSize({ width: width(), height: 220 }); };
    requestAnimationFrame(fit);
    if (window.ResizeObserver) new ResizeObserver(fit).observe(card);
    return card;
  }

  // Forgets the charts of a page left behind.
  function reset() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
  }

  window.TWCharts = { chart: chart, reset: reset, all: function () { return charts; }, align: align, fmt: fmt };
})();
