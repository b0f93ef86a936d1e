// The report site: a small hash-routed page over /api. Everything from the server is inserted as
// text (never as HTML), except the report mail body, which renders in a sandboxed frame.
"use strict";
(function () {
  var main = document.getElementById("main");
  var me = null;

  // --- helpers -------------------------------------------------------------------------------
  function h(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== undefined && attrs[k] !== null && attrs[k] !== false) e.setAttribute(k, attrs[k]);
    }
    function add(x) {
      if (x === null || x === undefined) return;
      if (Array.isArray(x)) x.forEach(add);
      else e.appendChild(typeof x === "object" ? x : document.createTextNode(String(x)));
    }
    for (var i = 2; i < arguments.length; i++) add(arguments[i]);
    return e;
  }
  function api(path) {
    return fetch("api/" + path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().catch(function () { return { message: r.statusText }; }).then(function (body) {
        if (!r.ok) {
          var msg = body && body.message ? body.message : ("HTTP " + r.status);
          if (r.status === 401) msg += " — your login may have expired; reload the page.";
          var err = new Error(msg); err.status = r.status; throw err;
        }
        return body;
      });
    });
  }
  function show() {
    var page = h.apply(null, ["div", null].concat(Array.prototype.slice.call(arguments)));
    main.textContent = "";
    while (page.firstChild) main.appendChild(page.firstChild);
  }
  function fail(err) { show(h("div", { class: "error", role: "alert" }, err.message || String(err))); }
  function pct(f) { return f === null || f === undefined ? "–" : (100 * f).toFixed(0) + " %"; }
  function hours(x) {
    if (x === null || x === undefined) return "–";
    return x === 0 ? "0" : x < 0.01 ? x.toFixed(4) : x < 10 ? x.toFixed(2) : x.toFixed(1);
  }
  function dur(s) {
    if (s === null || s === undefined) return "–";
    var d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), mm = Math.floor(s % 3600 / 60), ss = s % 60;
    var t = String(hh).padStart(2, "0") + ":" + String(mm).padStart(2, "0") + ":" + String(ss).padStart(2, "0");
    return d ? d + "-" + t : t;
  }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : "–"; }
  function day(t) { return new Date(t * 1000).toLocaleDateString(); }
  function bytes(b) {
    if (b === null || b === undefined) return "–";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (b < 10 && i ? b.toFixed(1) : b.toFixed(0)) + " " + u[i];
  }
  // A missing figure says why (never a red 0 %): "no data yet" while the job runs, "n/a" otherwise.
  function noData(why) { return why === "running" ? "no data yet" : "n/a"; }
  function pctOr(f, why) { return f === null || f === undefined ? (why ? noData(why) : "–") : pct(f); }
  // A running job's figure from its samples reads "62 % (live)", in the live colour, never red:
  // the job is not over, and nothing of it counts as waste yet.
  function liveTitle(since) {
    return "running: from the job's samples " + (since ? "since " + new Date(since * 1000).toLocaleTimeString() : "of the whole run so far");
  }
  function effCell(f, low, why, live, since) {
    if (live && f !== null && f !== undefined) return h("td", { class: "num live", title: liveTitle(since) }, pct(f) + " (live)");
    return h("td", { class: "num " + (f !== null && f !== undefined && f < low ? "bad" : ""), title: why || "" }, pctOr(f, why));
  }
  // The job page's memory line: accounting's peak, else the resident peak from samples.
  function memPeak(s, m) {
    var used = s.mem_used_bytes, note;
    if (used !== null && used !== undefined) note = s.mem_live ? pct(s.mem_frac) + ", resident peak from samples, live" : pctOr(s.mem_frac, s.mem_no_data);
    else if (m && m.resident_peak_bytes) {
      used = m.resident_peak_bytes;
      note = (s.req_mem_bytes ? pct(used / s.req_mem_bytes) + ", " : "") + "resident peak from samples";
    } else note = pctOr(s.mem_frac, s.mem_no_data);
    return bytes(used) + " / " + bytes(s.req_mem_bytes) + " (" + note + ")";
  }
  function parseHash() {
    var raw = location.hash.replace(/^#\/?/, ""), q = {}, i = raw.indexOf("?");
    var path = i < 0 ? raw : raw.slice(0, i);
    if (i >= 0) new URLSearchParams(raw.slice(i + 1)).forEach(function (v, k) { q[k] = v; });
    return { parts: path.split("/").filter(Boolean), q: q };
  }
  function go(page, q) {
    var s = new URLSearchParams();
    for (var k in q) if (q[k] !== "" && q[k] !== undefined && q[k] !== null) s.set(k, q[k]);
    var t = "#/" + page + (String(s) ? "?" + s : "");
    if (location.hash === t) route(); else location.hash = t;
  }
  function periodSelect(periods, current, onchange) {
    var sel = h("select", { id: "period", onchange: function () { onchange(sel.value); } },
      periods.slice().reverse().map(function (p) {
        return h("option", { value: p.start, selected: String(p.start) === String(current) }, day(p.start) + " – " + day(p.end) + (p.closed ? "" : " (open)"));
      }));
    return h("label", null, "Period", sel);
  }
  function userInput(q, page) {
    if (!me || (!me.admin && !me.visible_users.length)) return null;
    var inp = h("input", { id: "user", value: q.user || "", placeholder: me.user, list: "users", size: 10 });
    inp.addEventListener("change", function () { q.user = inp.value.trim(); q.page = ""; go(page, q); });
    return h("label", null, "User", inp, h("datalist", { id: "users" }, me.visible_users.map(function (u) { return h("option", { value: u }); })));
  }

  // --- pages ---------------------------------------------------------------------------------
  function reportPage(q) {
    api("periods").then(function (periods) {
      if (!periods.length) return show(h("h1", { text: "My report" }), h("p", { class: "muted" }, "No analysis period yet."));
      var period = q.period || periods[periods.length - 1].start;
      var controls = h("div", { class: "controls" },
        periodSelect(periods, period, function (v) { q.period = v; go("report", q); }), userInput(q, "report"));
      var path = "report?period=" + encodeURIComponent(period) + (q.user ? "&user=" + encodeURIComponent(q.user) : "");
      return api(path).then(function (r) {
        var frame = h("iframe", { class: "report", title: "report", sandbox: "allow-same-origin allow-popups allow-top-navigation-by-user-activation" });
        frame.srcdoc = r.html;
        var toc = h("nav", { class: "toc", "aria-label": "sections" });
        frame.addEventListener("load", function () {
          try {
            enhanceReport(frame, toc, period, q.user || r.user);
            frame.style.height = (frame.contentDocument.documentElement.scrollHeight + 24) + "px";
          } catch (e) { /* a frame we cannot reach keeps its default size */ }
        });
        var jobsLink = h("a", { href: "#/jobs?period=" + period + (q.user ? "&user=" + encodeURIComponent(q.user) : "") }, "Jobs of this period →");
        var data = h("details", { class: "card" }, h("summary", null, "Report data (JSON)"),
          h("pre", { class: "json" }, r.data !== null ? JSON.stringify(r.data, null, 2) : (r.data_raw || "")));
        show(h("h1", null, "Report of " + r.user), controls,
          h("p", { class: "muted" }, (r.has_findings ? "" : "Nothing to improve this period. ") + "Updated " + when(r.updated_at) + ". ", jobsLink),
          reportEnergy(r.data), toc, frame, data);
      }, function (err) {
        show(h("h1", { text: "My report" }), controls, h("div", { class: "error", role: "alert" }, err.message),
          h("p", null, h("a", { href: "#/jobs?period=" + period }, "See the jobs of this period →")));
      });
    }).catch(fail);
  }

  // Makes the mail body interactive: a table of contents of its headings, and job ids that
  // link to the job's page (only ids of jobs the API lists for this user and period).
  function enhanceReport(frame, toc, period, user) {
    var doc = frame.contentDocument;
    var heads = doc.querySelectorAll("h1, h2, h3");
    toc.textContent = "";
    if (heads.length > 1) {
      toc.appendChild(h("strong", null, "Sections: "));
      Array.prototype.forEach.call(heads, function (hd) {
        toc.appendChild(h("a", { href: "#", onclick: function (ev) {
          ev.preventDefault();
          window.scrollTo(0, frame.getBoundingClientRect().top + window.scrollY + hd.getBoundingClientRect().top - 8);
        } }, hd.textContent));
      });
    }
    api("jobs?page_size=500&period=" + encodeURIComponent(period) + "&user=" + encodeURIComponent(user)).then(function (page) {
      var ids = {};
      page.jobs.forEach(function (j) { ids[String(j.id)] = true; ids[j.display_id] = true; });
      var walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT), hits = [], n;
      while ((n = walker.nextNode())) if (ids[n.nodeValue.trim()] && n.parentNode.nodeName !== "A") hits.push(n);
      hits.forEach(function (t) {
        var a = doc.createElement("a");
        a.href = location.pathname + "#/job/" + encodeURIComponent(t.nodeValue.trim());
        a.target = "_top";
        a.textContent = t.nodeValue;
        t.parentNode.replaceChild(a, t);
      });
    }).catch(function () { /* links are a convenience */ });
  }

  var COLS = [
    ["id", "Job", "id"], ["name", "Name", "name"], ["user", "User", "user"], ["state", "State", "state"],
    ["start", "Start", "start_at"], ["elapsed", "Elapsed", "elapsed_secs"], ["cpus", "CPUs", "alloc_cpus"],
    ["cpu", "CPU eff.", "cpu_frac"], ["mem", "Mem eff.", "mem_frac"], ["time", "Time used", "time_frac"],
    ["wasted", "Wasted core-h", "wasted_core_hours"]];

  function jobsPage(q) {
    Promise.all([api("periods"), api("jobs?" + new URLSearchParams(q))]).then(function (res) {
      var periods = res[0], page = res[1], sort = q.sort || "-start";
      var sel = periodSelect([{ start: "", end: 0, closed: true }].concat(periods), q.period || "", function (v) { q.period = v; q.page = ""; go("jobs", q); });
      var all = sel.querySelector("option[value='']");
      all.textContent = "All time";
      all.parentNode.insertBefore(all, all.parentNode.firstChild);
      var states = ["", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "RUNNING"];
      var stateSel = h("select", { id: "state", onchange: function () { q.state = stateSel.value; q.page = ""; go("jobs", q); } },
        states.map(function (s) { return h("option", { value: s, selected: (q.state || "") === s }, s || "any"); }));
      var head = h("tr", null, COLS.map(function (c) {
        var mark = sort === c[0] ? " ▲" : sort === "-" + c[0] ? " ▼" : "";
        return h("th", { class: "sort " + (c[0] === "name" || c[0] === "user" || c[0] === "state" ? "" : "num"),
          onclick: function () { q.sort = sort === "-" + c[0] ? c[0] : "-" + c[0]; go("jobs", q); } }, c[1] + mark);
      }));
      var rows = page.jobs.map(function (j) {
        return h("tr", { class: "job-row" },
          h("td", null, h("a", { href: "#/job/" + j.id }, j.display_id)), h("td", { text: j.name }), h("td", { text: j.user }),
          h("td", { text: j.state }), h("td", { text: when(j.start_at) }), h("td", { class: "num" }, dur(j.elapsed_secs)),
          h("td", { class: "num" }, j.alloc_cpus), effCell(j.cpu_frac, 0.5, j.cpu_no_data, j.cpu_live, j.live_since), effCell(j.mem_frac, 0.25, j.mem_no_data, j.mem_live, j.live_since), effCell(j.time_frac, 0.1, j.time_no_data),
          h("td", { class: "num" }, hours(j.wasted_core_hours)));
      });
      var pages = Math.max(1, Math.ceil(page.total / page.page_size));
      var pager = h("div", { class: "pager" },
        h("button", { disabled: page.page <= 1, onclick: function () { q.page = page.page - 1; go("jobs", q); } }, "← Newer"),
        h("span", null, "Page " + page.page + " of " + pages + " (" + page.total + " jobs)"),
        h("button", { disabled: page.page >= pages, onclick: function () { q.page = page.page + 1; go("jobs", q); } }, "Older →"));
      var csvQ = new URLSearchParams(q); csvQ.delete("page"); csvQ.delete("page_size"); csvQ.set("format", "csv");
      show(h("h1", { text: "Jobs" }), h("div", { class: "controls" }, sel, h("label", null, "State", stateSel), userInput(q, "jobs"),
        h("a", { id: "jobs-csv", class: "csv", href: "api/jobs?" + csvQ, download: "jobs.csv" }, "CSV")),
        page.total ? h("div", { class: "scroll card" }, h("table", { id: "jobs" }, h("thead", null, head), h("tbody", null, rows)))
          : h("p", { class: "muted" }, "No jobs match."), pager);
    }).catch(fail);
  }

  // The job page's charts (static/charts.js over uPlot): every metric the samples hold, per node
  // (the job's steps summed) or per step and node, with the allocation and request as lines.
  function drawCharts(into, d, view) {
    TWCharts.reset();
    into.textContent = "";
    var list = view === "step" ? d.step_series : d.series;
    var name = function (n) { return view === "step" ? n.node + " " + n.step : n.node; };
    var lines = function (field, scale, suffix, dash) {
      return list.map(function (n) {
        return { name: name(n) + (suffix || ""), t: n.t, dash: dash, y: n[field].map(function (v) { return scale ? v * scale : v; }) };
      });
    };
    var any = function (field) { return list.some(function (n) { return n[field].some(function (v) { return v > 0; }); }); };
    var C = TWCharts.chart;
    into.appendChild(C({ id: "plot-cores", title: "Cores in use", unit: "cores", series: lines("cores"),
      limits: [{ label: "allocated per node", value: d.cores_requested_per_node }] }));
    into.appendChild(C({ id: "plot-cpu", title: "CPU: user and system time", unit: "cores",
      series: lines("user_cores", 0, " user").concat(lines("sys_cores", 0, " system", [2, 3])) }));
    into.appendChild(C({ id: "plot-mem", title: "Memory: resident" + (any("cache_bytes") ? " and page cache (dashed)" : ""), unit: "bytes",
      series: lines("rss_bytes", 0, " resident").concat(any("cache_bytes") ? lines("cache_bytes", 0, " page cache", [2, 3]) : []),
      limits: [{ label: "requested per node", value: d.mem_requested_per_node_bytes || 0 }] }));
    into.appendChild(C({ id: "plot-io", title: "I/O: read and write calls (page cache hits included)", unit: "bytes/s",
      series: lines("read_bytes_per_sec", 0, " read").concat(lines("write_bytes_per_sec", 0, " write", [2, 3])) }));
    into.appendChild(C({ id: "plot-faults", title: "Page faults", unit: "/s",
      series: lines("minor_faults_per_sec", 0, " minor").concat(lines("major_faults_per_sec", 0, " major", [2, 3])) }));
    if (d.gpu_series.length) {
      var gpus = function (field, scale) {
        return d.gpu_series.map(function (g) { return { name: g.node + " GPU " + g.index, t: g.t, y: g[field].map(function (v) { return v * scale; }) }; });
      };
      into.appendChild(C({ id: "plot-gpu", title: "GPU utilisation", unit: "%", series: gpus("util_pct", 1), ymax: 100,
        limits: [{ label: "100 %", value: 100 }] }));
      into.appendChild(C({ id: "plot-gpu-mem", title: "GPU memory in use", unit: "bytes", series: gpus("mem_used_mib", 1048576) }));
      into.appendChild(C({ id: "plot-gpu-power", title: "GPU power draw", unit: "W", series: gpus("power_w", 1) }));
    }
  }

  function jobPage(id) {
    api("jobs/" + encodeURIComponent(id)).then(function (d) {
      var s = d.summary;
      var kv = h("dl", { class: "kv" }, [["User", s.user], ["Account", s.account], ["Partition", s.partition], ["State", s.state],
        ["Nodes", s.node_list + " (" + s.node_count + ")"], ["Start", when(s.start_at)], ["End", when(s.end_at)],
        ["Elapsed / limit", dur(s.elapsed_secs) + " / " + (s.time_limit_secs === null ? "unlimited" : dur(s.time_limit_secs))], ["CPUs", s.alloc_cpus + " (efficiency " + (s.cpu_live && s.cpu_frac !== null ? pct(s.cpu_frac) + " (live, from samples so far)" : pctOr(s.cpu_frac, s.cpu_no_data)) + ")"],
        ["Memory peak / requested", memPeak(s, d.sampled_memory)]].concat(
        d.sampled_memory && d.sampled_memory.cache_peak_bytes ? [["Page cache (apart)", "up to " + bytes(d.sampled_memory.cache_peak_bytes) + "; " +
          bytes(d.sampled_memory.charged_peak_bytes) + " with cache, as the cgroup charges it (the kernel drops cache before it would kill the job)"]] : [],
        [["GPUs", s.gpus ? s.gpus + " (utilisation " + pct(s.gpu_util_frac) + ")" : "none"],
        ["Core-hours (wasted)", hours(s.core_hours) + " (" + hours(s.wasted_core_hours) + ")"]]).map(function (p) {
        return [h("dt", { text: p[0] }), h("dd", { text: p[1] })];
      }));
      var findings = d.findings.length ? d.findings.map(function (f) {
        return h("div", { class: "finding" }, h("div", { text: f.message }), f.fix ? h("div", null, "Fix: ", h("code", { text: f.fix })) : null);
      }) : h("p", { class: "ok" }, "No findings: this job used what it asked for.");
      var view = h("select", { id: "chart-view", onchange: function () { drawCharts(plots, d, view.value); } },
        h("option", { value: "node" }, "per node"), h("option", { value: "step" }, "per step and node"));
      var plots = h("div", { class: "plots", id: "plots" });
      drawCharts(plots, d, "node");
      var steps = h("div", { class: "scroll card" }, h("table", null, h("thead", null, h("tr", null, ["Step", "Name", "State", "Elapsed", "CPUs", "CPU time", "Max RSS", "Nodes"].map(function (t) { return h("th", { text: t }); }))),
        h("tbody", null, d.steps.map(function (st) {
          return h("tr", null, h("td", { text: st.step }), h("td", { text: st.name }), h("td", { text: st.state }), h("td", null, dur(st.elapsed_secs)),
            h("td", { class: "num" }, st.alloc_cpus), h("td", { class: "num" }, dur(Math.round(st.total_cpu_secs))), h("td", { class: "num" }, bytes(st.max_rss_bytes)), h("td", { text: st.node_list }));
        }))));
      show(h("h1", null, "Job " + s.display_id + " — " + s.name), h("div", { class: "card" }, kv), energyCard(d.energy),
        h("h2", { text: "Findings" }), h("div", { id: "findings" }, findings), h("h2", { text: "Over time" }),
        h("div", { class: "controls" }, h("label", null, "Series", view), h("span", { class: "muted" }, "Drag across a chart to zoom in, double-click to zoom out.")), plots,
        h("h2", { text: "Steps" }), steps);
    }).catch(fail);
  }

  var DIMS = [["user", "User"], ["account", "Account"], ["partition", "Partition"], ["state", "State"], ["name", "Job name"]];
  var MEASURES = [["wasted_core_hours", "Wasted core-h"], ["core_hours", "Core-h"], ["wasted_gpu_hours", "Wasted GPU-h"], ["gpu_hours", "GPU-h"]];

  function pivot(rows, dims) {
    var groups = {};
    rows.forEach(function (r) {
      var key = dims.map(function (d) { return r[d]; }).join("\u0001");
      var g = groups[key] || (groups[key] = { keys: dims.map(function (d) { return r[d]; }), jobs: 0, cpu: 0, cpuN: 0 });
      g.jobs++;
      MEASURES.forEach(function (m) { g[m[0]] = (g[m[0]] || 0) + (r[m[0]] || 0); });
      // Accounting's figures only: a running job's live figure covers a recent window, not its core-hours.
      if (r.cpu_frac !== null && !r.cpu_live) { g.cpu += r.cpu_frac * r.core_hours; g.cpuN += r.core_hours; }
    });
    return Object.keys(groups).map(function (k) { return groups[k]; });
  }

  function adminPage(q) {
    api("periods").then(function (periods) {
      if (!periods.length) return show(h("h1", { text: "Overview" }), h("p", { class: "muted" }, "No analysis period yet."));
      var period = q.period || periods[periods.length - 1].start;
      return api("data?period=" + encodeURIComponent(period)).then(function (table) {
        var dims = (q.by || "user").split(",").filter(function (d) { return DIMS.some(function (x) { return x[0] === d; }); });
        if (!dims.length) dims = ["user"];
        var sortBy = q.measure || "wasted_core_hours";
        var groups = pivot(table.rows, dims).sort(function (a, b) { return (b[sortBy] || 0) - (a[sortBy] || 0); });
        var bySel = h("select", { id: "pivot-by", onchange: function () { q.by = bySel.value; go("admin", q); } },
          [["user"], ["account"], ["account", "user"], ["user", "name"], ["partition", "state"], ["state"]].map(function (ds) {
            var v = ds.join(","); return h("option", { value: v, selected: v === dims.join(",") }, ds.map(function (d) { return DIMS.filter(function (x) { return x[0] === d; })[0][1]; }).join(" › "));
          }));
        var mSel = h("select", { id: "pivot-measure", onchange: function () { q.measure = mSel.value; go("admin", q); } },
          MEASURES.map(function (m) { return h("option", { value: m[0], selected: m[0] === sortBy }, m[1]); }));
        var head = h("tr", null, dims.map(function (d) { return h("th", { text: DIMS.filter(function (x) { return x[0] === d; })[0][1] }); }),
          h("th", { class: "num" }, "Jobs"), MEASURES.map(function (m) { return h("th", { class: "num", text: m[1] }); }), h("th", { class: "num" }, "CPU eff."));
        var body = groups.map(function (g) {
          return h("tr", { class: "pivot-row" }, g.keys.map(function (k, i) {
            return h("td", null, dims[i] === "user" ? h("a", { href: "#/jobs?user=" + encodeURIComponent(k) + "&period=" + period + "&sort=-wasted" }, k) : String(k));
          }), h("td", { class: "num" }, g.jobs), MEASURES.map(function (m) { return h("td", { class: "num" }, hours(g[m[0]])); }),
          effCell(g.cpuN ? g.cpu / g.cpuN : null, 0.5));
        });
        show(h("h1", { text: "Overview" }),
          h("div", { class: "controls" }, periodSelect(periods, period, function (v) { q.period = v; go("admin", q); }),
            h("label", null, "Group by", bySel), h("label", null, "Rank by", mSel),
            h("a", { id: "data-csv", class: "csv", href: "api/data?format=csv&period=" + encodeURIComponent(period), download: "" }, "CSV of the jobs")),
          h("p", { class: "muted" }, table.rows.length + " jobs in this period" + (me && me.admin ? "" : " that you may see") + ". Wasted = allocated but unused."),
          coverageCard(table.coverage),
          h("div", { class: "scroll card" }, h("table", { id: "pivot" }, h("thead", null, head), h("tbody", null, body))),
          me && me.admin ? [energyRanking(period), outcomesCard()] : null);
      });
    }).catch(fail);
  }

  // The period's sampling coverage (admins only; the API sends null to others).
  function coverageCard(c) {
    if (!c) return null;
    return h("div", { class: "card", id: "coverage" }, h("strong", null, "Sampling coverage: "), h("span", { text: c.text }),
      h("div", { class: "muted" }, "Share of the core-hours allocated to this period's jobs (CPUs × elapsed, all users) during which samples were stored. " +
        "Findings from samples (idle spans, cores in use, GPU use) exist only for that share; jobs without samples are judged on SLURM's accounting alone."));
  }

  // --- energy and outcomes (#19) ------------------------------------------------------------
  function kwhText(k) {
    if (k === null || k === undefined) return "–";
    return k >= 1 ? k.toFixed(2) + " kWh" : k >= 0.001 ? (k * 1000).toFixed(0) + " Wh" : k > 0 && k < 0.000005 ? "< 0.01 Wh" : (k * 1000).toFixed(2) + " Wh";
  }
  function co2Text(g) {
    if (g === null || g === undefined) return "–";
    return g >= 1000 ? (g / 1000).toFixed(1) + " kg CO2e" : g >= 1 ? g.toFixed(0) + " g CO2e" : g > 0 && g < 0.005 ? "< 0.01 g CO2e" : g.toFixed(2) + " g CO2e";
  }
  var SOURCES = { measured: "measured (RAPL and NVML energy counters)", mixed: "partly measured, partly estimated",
    estimated: "estimated (Green Algorithms model)" };
  // A job's energy: kWh, carbon, the wasted part, where the figures come from and the factors.
  function energyCard(e) {
    if (!e) return null;
    return h("div", { class: "card", id: "energy" }, h("dl", { class: "kv" }, [["Energy", kwhText(e.kwh) + " (" + co2Text(e.co2e_g) + ")"],
      ["Wasted (allocated, not used)", kwhText(e.wasted_kwh) + " (" + co2Text(e.wasted_co2e_g) + ")"],
      ["Source", SOURCES[e.source] || e.source], ["Factors", e.factors]].map(function (p) {
      return [h("dt", { text: p[0] }), h("dd", { text: p[1] })];
    })));
  }
  // The period's totals of a report (its data's Report object).
  function reportEnergy(data) {
    var r = data && data.Report;
    if (!r || r.energy_kwh === undefined) return null;
    return h("div", { class: "card", id: "report-energy" }, h("strong", null, "Energy this period: "),
      h("span", { text: kwhText(r.energy_kwh) + " (" + co2Text(r.co2e_g) + "), of which " + kwhText(r.wasted_kwh) + " (" +
        co2Text(r.wasted_co2e_g) + ") went to what was allocated and not used" }));
  }
  // Admins: users or accounts by wasted kWh in the period.
  function energyRanking(period) {
    var box = h("div", { class: "card", id: "energy-ranking" }, h("p", { class: "muted" }, "Loading energy…"));
    api("admin/energy?period=" + encodeURIComponent(period)).then(function (r) {
      var by = "users";
      function draw() {
        var rows = r[by];
        var sel = h("select", { id: "energy-by", onchange: function () { by = sel.value; draw(); } },
          [["users", "Users"], ["accounts", "Accounts"]].map(function (o) { return h("option", { value: o[0], selected: o[0] === by }, o[1]); }));
        box.textContent = "";
        box.appendChild(h("div", { class: "controls" }, h("strong", null, "Energy ranking (wasted kWh)"), h("label", null, "By", sel)));
        box.appendChild(rows.length ? h("div", { class: "scroll" }, h("table", { id: "energy-table" },
          h("thead", null, h("tr", null, ["Name", "Jobs", "Energy", "CO2e", "Wasted", "Wasted CO2e"].map(function (t, i) { return h("th", { class: i ? "num" : "", text: t }); }))),
          h("tbody", null, rows.map(function (x) {
            return h("tr", { class: "energy-row" }, h("td", { text: x.name }), h("td", { class: "num" }, x.jobs), h("td", { class: "num" }, kwhText(x.kwh)),
              h("td", { class: "num" }, co2Text(x.co2e_g)), h("td", { class: "num" }, kwhText(x.wasted_kwh)), h("td", { class: "num" }, co2Text(x.wasted_co2e_g)));
          })))) : h("p", { class: "muted" }, "No analysed jobs in this period."));
        box.appendChild(h("div", { class: "muted" }, "Factors: " + r.factors));
      }
      draw();
    }).catch(function (err) { box.textContent = "Energy: " + err.message; });
    return box;
  }
  // Admins: does a finding recur after the first mail about it, mailed vs held back?
  function outcomesCard() {
    var box = h("div", { class: "card", id: "outcomes" }, h("p", { class: "muted" }, "Loading outcomes…"));
    function rate(a) {
      if (a.recurrence) return pct(a.recurrence.rate) + " [" + pct(a.recurrence.low) + "–" + pct(a.recurrence.high) + "] of " + a.followed;
      return a.pairs ? a.pairs + " user(s), no later period yet" : "–";
    }
    function waste(a) { return a.families ? hours(a.wasted_core_hours_per_job_before) + " → " + hours(a.wasted_core_hours_per_job_after) + " (" + a.families + ")" : "–"; }
    api("admin/outcomes").then(function (o) {
      box.textContent = "";
      box.appendChild(h("strong", null, "Do the mails change anything?"));
      box.appendChild(h("p", { class: "muted" }, "Per finding: the share of users in whose next period with jobs it was found again after the first mail about it, " +
        "and the wasted core-hours per job of the job families it was about, before → after. " +
        (o.holdout_share > 0 ? "Holdout: " + pct(o.holdout_share) + " of users get no mail; effect = recurrence mailed − held back. " : "No holdout configured ([mail] holdout_share = 0): no effect can be measured. ") +
        "Brackets: 95 % intervals. " + o.method + ". " + o.periods + " periods."));
      box.appendChild(o.kinds.length ? h("div", { class: "scroll" }, h("table", { id: "outcomes-table" },
        h("thead", null, h("tr", null, ["Finding", "Mailed: recurred", "Mailed: wasted core-h/job", "Held back: recurred", "Held back: wasted core-h/job", "Effect"].map(function (t) { return h("th", { text: t }); }))),
        h("tbody", null, o.kinds.map(function (k) {
          var e = k.effect;
          return h("tr", { class: "outcome-row" }, h("td", { text: k.title || k.kind }), h("td", { text: rate(k.mailed) }), h("td", { text: waste(k.mailed) }),
            h("td", { text: rate(k.held) }), h("td", { text: waste(k.held) }),
            h("td", { text: e ? (100 * e.difference).toFixed(0) + " pp [" + (100 * e.low).toFixed(0) + ", " + (100 * e.high).toFixed(0) + "]" : "–" }));
        })))) : h("p", { class: "muted" }, "No finding has been mailed yet."));
    }).catch(function (err) { box.textContent = "Outcomes: " + err.message; });
    return box;
  }

  function tipsPage() {
    fetch("static/tips.json").then(function (r) { return r.json(); }).then(function (tips) {
      show(h("h1", { text: "Tips" }), tips.map(function (t) {
        return h("div", { class: "tip card" }, h("strong", { text: t.title }), h("p", { text: t.text }), t.example ? h("code", { text: t.example }) : null);
      }));
    }).catch(fail);
  }

  // The user's own mail settings: the site's one write, a JSON POST with the page's CSRF token.
  var DAYS = [["mon", "Mon"], ["tue", "Tue"], ["wed", "Wed"], ["thu", "Thu"], ["fri", "Fri"], ["sat", "Sat"], ["sun", "Sun"]];
  function settingsPage() {
    api("settings").then(function (v) {
      var p = v.prefs;
      var out = h("input", { type: "checkbox", id: "opt-out", checked: p.opted_out });
      var days = DAYS.map(function (d) {
        return h("label", { class: "day" }, h("input", { type: "checkbox", class: "quiet-day", value: d[0], checked: p.quiet_days.indexOf(d[0]) >= 0 }), d[1]);
      });
      var status = h("p", { id: "settings-status", class: "muted", role: "status" },
        p.updated_at ? "Last changed " + when(p.updated_at) + "." : "You have not changed anything yet: you get the report mail of every period.");
      var save = h("button", { id: "settings-save", type: "submit" }, "Save");
      var form = h("form", { id: "settings", class: "card", onsubmit: function (ev) {
        ev.preventDefault();
        save.disabled = true;
        var body = { opted_out: out.checked, quiet_days: Array.prototype.filter.call(form.querySelectorAll(".quiet-day"), function (c) { return c.checked; }).map(function (c) { return c.value; }) };
        fetch("api/settings", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": v.csrf_token, Accept: "application/json" }, body: JSON.stringify(body) })
          .then(function (r) { return r.json().then(function (b) { if (!r.ok) throw new Error(b.message || ("HTTP " + r.status)); return b; }); })
          .then(function (nv) { v = nv; status.className = "ok"; status.textContent = "Saved: " + (nv.prefs.opted_out ? "no report mails." : nv.prefs.quiet_days.length ? "no mail on " + nv.prefs.quiet_days.join(", ") + "." : "every report mail."); },
            function (err) { status.className = "error"; status.textContent = err.message; })
          .then(function () { save.disabled = false; });
      } },
        h("label", { class: "check" }, out, " Send me no report mails"),
        h("fieldset", null, h("legend", null, "No mail on these days (a mail due then waits for the next day without)"), days),
        save, status);
      show(h("h1", { text: "Mail settings of " + p.user }),
        p.opted_out_by_admin ? h("div", { class: "error", role: "alert" }, "The administrators have turned your report mails off; what you choose here counts once they turn them back on.") : null,
        v.site_quiet_days.length ? h("p", { class: "muted" }, "Nobody gets mail on " + v.site_quiet_days.join(", ") + ".") : null,
        form, me && me.admin ? h("div", { id: "all-settings" }) : null);
      if (me && me.admin) api("settings/all").then(function (all) {
        var rows = all.users.filter(function (u) { return u.opted_out || u.quiet_days.length; }).map(function (u) {
          return h("tr", { class: "settings-row" }, h("td", { text: u.user }), h("td", { text: u.opted_out ? "opted out" : "" }),
            h("td", { text: u.quiet_days.join(", ") }), h("td", null, when(u.updated_at)));
        });
        var box = document.getElementById("all-settings");
        if (box) box.appendChild(h("div", null, h("h2", { text: "Users' own choices" }),
          rows.length ? h("div", { class: "scroll card" }, h("table", { id: "settings-all" }, h("thead", null, h("tr", null, h("th", null, "User"), h("th", null, "Mail"), h("th", null, "Quiet days"), h("th", null, "Changed"))), h("tbody", null, rows)))
            : h("p", { class: "muted" }, "Nobody opted out or chose quiet days."),
          h("p", { class: "muted" }, "Opted out by the admins ([mail] opt_out): " + (all.opted_out_by_admin.join(", ") || "nobody") + ".")));
      }).catch(function () { /* the list is for admins only */ });
    }).catch(fail);
  }

  function route() {
    var r = parseHash(), page = r.parts[0] || "report";
    document.querySelectorAll("nav a").forEach(function (a) { a.classList.toggle("active", a.dataset.page === page); });
    if (page === "jobs") jobsPage(r.q);
    else if (page === "job" && r.parts[1]) jobPage(r.parts[1]);
    else if (page === "admin") adminPage(r.q);
    else if (page === "tips") tipsPage();
    else if (page === "settings") settingsPage();
    else if (page === "cluster") TWCluster.page(r.q);
    else if (page === "trend") TWCluster.trend(r.q);
    else reportPage(r.q);
  }

  // Helpers for the pages in cluster.js.
  window.TW = { h: h, api: api, show: show, fail: fail, pct: pct, hours: hours, dur: dur, when: when, day: day,
    effCell: effCell, periodSelect: periodSelect, go: go, me: function () { return me; } };

  window.addEventListener("hashchange", route);
  api("user").then(function (u) {
    me = u;
    document.getElementById("who").textContent = u.user + (u.admin ? " (admin)" : u.coordinator_of.length ? " (coordinator)" : "");
    document.getElementById("nav-admin").hidden = !(u.admin || u.visible_users.length);
    document.getElementById("nav-cluster").hidden = !(u.admin || u.visible_users.length);
    route();
  }).catch(fail);
})();
