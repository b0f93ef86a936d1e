// Tiny SVG line plots for the job page: time on x, one line per series, the request as a dashed line.
// Hand-written (no library) so the page stays small and works offline.
"use strict";
(function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1a5fb4", "#c64600", "#26a269", "#9141ac", "#a51d2d", "#986a44", "#0e7c86", "#5e5c64"];

  function el(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 1.2, 2, 4, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function fmtTime(s, span) {
    var d = new Date(s * 1000);
    var hh = String(d.getHours()).padStart(2, "0"), mm = String(d.getMinutes()).padStart(2, "0");
    if (span < 600) return hh + ":" + mm + ":" + String(d.getSeconds()).padStart(2, "0");
    if (span < 2 * 86400) return hh + ":" + mm;
    return (d.getMonth() + 1) + "/" + d.getDate() + " " + hh + "h";
  }

  function fmtNum(v) {
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1).replace(/\.0$/, "");
    return v.toFixed(2).replace(/\.?0+$/, "");
  }

  // opts: {title, unit, series: [{name, t: [...], y: [...]}], limit, limitLabel}
  function plot(opts) {
    var W = 640, H = 260, L = 48, R = 12, T = 24, B = 28;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "plot", role: "img", "aria-label": opts.title });
    svg.appendChild(el("text", { x: L, y: 15, "font-size": 13, "font-weight": 600, fill: "#1d2430" }, opts.title));
    var t0 = Infinity, t1 = -Infinity, ymax = opts.limit > 0 ? opts.limit : 0;
    opts.series.forEach(function (s) {
      s.t.forEach(function (t, i) {
        if (t < t0) t0 = t; if (t > t1) t1 = t;
        if (s.y[i] > ymax) ymax = s.y[i];
      });
    });
    var frame = el("g", { "font-size": 10, fill: "#556" });
    svg.appendChild(frame);
    if (!isFinite(t0)) {
      frame.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no samples for this job"));
      return svg;
    }
    if (t1 === t0) t1 = t0 + 1;
    ymax = niceMax(ymax * 1.05);
    var x = function (t) { return L + (t - t0) / (t1 - t0) * (W - L - R); };
    var y = function (v) { return H - B - v / ymax * (H - T - B); };
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4, yy = y(v);
      frame.appendChild(el("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e2e5eb" }));
      frame.appendChild(el("text", { x: L - 4, y: yy + 3, "text-anchor": "end" }, fmtNum(v)));
    }
    for (var j = 0; j <= 4; j++) {
      var tt = t0 + (t1 - t0) * j / 4;
      frame.appendChild(el("text", { x: x(tt), y: H - B + 14, "text-anchor": j === 0 ? "start" : j === 4 ? "end" : "middle" },
        fmtTime(tt, t1 - t0)));
    }
    frame.appendChild(el("text", { x: 4, y: T - 8 }, opts.unit));
    if (opts.limit > 0) {
      var ly = y(opts.limit);
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: ly, y2: ly, stroke: "#a51d2d", "stroke-dasharray": "6 4", "stroke-width": 1.5, class: "limit" }));
      svg.appendChild(el("text", { x: W - R, y: ly - 4, "text-anchor": "end", "font-size": 10, fill: "#a51d2d" }, opts.limitLabel || "requested"));
    }
    opts.series.forEach(function (s, k) {
      if (!s.t.length) return;
      var d = s.t.map(function (t, i) { return (i ? "L" : "M") + x(t).toFixed(1) + " " + y(s.y[i]).toFixed(1); }).join("");
      var color = COLORS[k % COLORS.length];
      svg.appendChild(el("path", { d: d, fill: "none", stroke: color, "stroke-width": 2, class: "series" }));
      if (s.t.length === 1) svg.appendChild(el("circle", { cx: x(s.t[0]), cy: y(s.y[0]), r: 3, fill: color }));
    });
    return svg;
  }

  function legend(names) {
    var div = document.createElement("div");
    div.className = "legend";
    names.forEach(function (n, k) {
      var span = document.createElement("span"), i = document.createElement("i");
      i.style.background = COLORS[k % COLORS.length];
      span.appendChild(i);
      span.appendChild(document.createTextNode(n));
      div.appendChild(span);
    });
    return div;
  }

  window.TWPlot = { plot: plot, legend: legend };
})();
