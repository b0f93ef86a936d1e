// The cluster at a glance (admins; coordinators see their accounts' part) and one user over time.
// Both are computed in the browser from the tables the API already serves (/api/data per
// period, /api/jobs of a user), so they obey the same access rules and need no new data path.
// Uses app.js's helpers (window.TW) and the charts of charts.js.
"use strict";
(function () {
  // Splits each job's allocation over the days of [from, to): allocated, used and wasted
  // core-hours and GPU-hours per day. A job without a CPU figure (running, or no elapsed time)
  // counts as allocated and apart ("no figure"), never as waste.
  // Local midnight at or before t, and the one after (days are the viewer's calendar days).
  function dayStart(t) { var d = new Date(t * 1000); d.setHours(0, 0, 0, 0); return d.getTime() / 1000; }
  function nextDay(t) { var d = new Date(t * 1000); d.setHours(0, 0, 0, 0); d.setDate(d.getDate() + 1); return d.getTime() / 1000; }

  function perDay(rows, from, to) {
    var days = {};
    for (var d = dayStart(from); d < to; d = nextDay(d)) days[d] = { t: d, alloc: 0, used: 0, wasted: 0, unknown: 0, gpu: 0, gpuWasted: 0 };
    var now = Date.now() / 1000;
    rows.forEach(function (r) {
      if (!r.start_at) return;
      var s = Math.max(r.start_at, from), e = Math.min(r.end_at || now, to);
      for (var d = dayStart(s); d < e; d = nextDay(d)) {
        var part = Math.max(0, Math.min(e, nextDay(d)) - Math.max(s, d)) / 3600, day = days[d];
        if (!day || !part) continue;
        var ch = r.alloc_cpus * part;
        day.alloc += ch;
        if (r.cpu_frac !== null && !r.cpu_live) { day.used += ch * r.cpu_frac; day.wasted += ch * (1 - Math.min(1, r.cpu_frac)); }
        else day.unknown += ch;
        day.gpu += r.gpus * part;
        if (r.gpu_util_frac !== null) day.gpuWasted += r.gpus * part * (1 - Math.min(1, r.gpu_util_frac));
      }
    });
    return Object.keys(days).map(function (k) { return days[k]; }).sort(function (a, b) { return a.t - b.t; });
  }

  // Per group (partition or account): its core-hours and GPU-hours, and its users ranked by
  // wasted core-hours with their share of the group's hours.
  function wasters(rows, key, top) {
    var groups = {};
    rows.forEach(function (r) {
      var g = groups[r[key]] || (groups[r[key]] = { name: r[key], ch: 0, gh: 0, users: {} });
      g.ch += r.core_hours; g.gh += r.gpu_hours;
      var u = g.users[r.user] || (g.users[r.user] = { user: r.user, ch: 0, wasted: 0, gh: 0, gpuWasted: 0, jobs: 0 });
      u.ch += r.core_hours; u.wasted += r.wasted_core_hours; u.gh += r.gpu_hours; u.gpuWasted += r.wasted_gpu_hours || 0; u.jobs++;
    });
    return Object.keys(groups).sort().map(function (k) {
      var g = groups[k];
      g.top = Object.keys(g.users).map(function (u) { return g.users[u]; })
        .sort(function (a, b) { return (b.wasted + b.gpuWasted) - (a.wasted + a.gpuWasted); }).slice(0, top);
      return g;
    });
  }

  // SLURM's compressed host lists ("n[1-3,5],gpu7") as names.
  function hosts(list) {
    var out = [], re = /([^,\[]+)(\[([^\]]*)\])?/g, m;
    while ((m = re.exec(list || ""))) {
      if (!m[3]) { if (m[1]) out.push(m[1]); continue; }
      m[3].split(",").forEach(function (part) {
        var ab = part.split("-"), a = ab[0], b = ab[1] === undefined ? a : ab[1];
        for (var i = parseInt(a, 10); i <= parseInt(b, 10); i++) out.push(m[1] + String(i).padStart(a.length, "0"));
      });
    }
    return out;
  }

  function table(id, head, rows) {
    var h = TW.h;
    return h("div", { class: "scroll card" }, h("table", { id: id }, h("thead", null, h("tr", null, head.map(function (c) {
      return h("th", { class: c[1] ? "num" : "" }, c[0]);
    }))), h("tbody", null, rows)));
  }

  function clusterPage(q) {
    var h = TW.h;
    TW.api("periods").then(function (periods) {
      if (!periods.length) return TW.show(h("h1", { text: "Cluster" }), h("p", { class: "muted" }, "No analysis period yet."));
      var period = q.period || periods[periods.length - 1].start;
      var p = periods.filter(function (x) { return String(x.start) === String(period); })[0] || periods[periods.length - 1];
      // The last six periods for the trend; the chosen one in detail.
      var recent = periods.slice(-6);
      return Promise.all(recent.map(function (x) { return TW.api("data?period=" + x.start); })).then(function (tables) {
        var i = recent.indexOf(p);
        return (i >= 0 ? Promise.resolve(tables[i]) : TW.api("data?period=" + p.start)).then(function (t) { draw(q, periods, p, t, recent, tables); });
      });
    }).catch(TW.fail);
  }

  function draw(q, periods, p, t, recent, tables) {
    var h = TW.h, rows = t.rows, me = TW.me();
    TWCharts.reset();
    var days = perDay(rows, p.start, Math.min(p.end, nextDay(Date.now() / 1000)));
    var dayChart = TWCharts.chart({ id: "plot-days", title: "Core-hours per day (at each day's start): allocated, used, wasted", unit: "core-h", points: true, series: [
      { name: "allocated", t: days.map(function (d) { return d.t; }), y: days.map(function (d) { return d.alloc; }) },
      { name: "used", t: days.map(function (d) { return d.t; }), y: days.map(function (d) { return d.used; }) },
      { name: "wasted", t: days.map(function (d) { return d.t; }), y: days.map(function (d) { return d.wasted; }), dash: [4, 3] }] });
    var dayRows = days.map(function (d) {
      return h("tr", { class: "day-row" }, h("td", null, TW.day(d.t)), h("td", { class: "num" }, TW.hours(d.alloc)), h("td", { class: "num" }, TW.hours(d.used)),
        h("td", { class: "num" }, TW.hours(d.wasted)), TW.effCell(d.alloc - d.unknown > 0 ? d.used / (d.alloc - d.unknown) : null, 0.5),
        h("td", { class: "num" }, TW.hours(d.unknown)), h("td", { class: "num" }, TW.hours(d.gpu)), h("td", { class: "num" }, TW.hours(d.gpuWasted)));
    });
    var periodRows = recent.map(function (x, i) {
      var rs = tables[i].rows, ch = 0, w = 0, gh = 0, gw = 0, known = 0, used = 0;
      rs.forEach(function (r) {
        ch += r.core_hours; w += r.wasted_core_hours; gh += r.gpu_hours; gw += r.wasted_gpu_hours || 0;
        if (r.cpu_frac !== null && !r.cpu_live) { known += r.core_hours; used += r.core_hours * r.cpu_frac; }
      });
      return h("tr", { class: "period-row" }, h("td", null, TW.day(x.start) + " – " + TW.day(x.end) + (x.closed ? "" : " (open)")),
        h("td", { class: "num" }, rs.length), h("td", { class: "num" }, TW.hours(ch)), h("td", { class: "num" }, TW.hours(w)),
        TW.effCell(known ? used / known : null, 0.5), h("td", { class: "num" }, TW.hours(gh)), h("td", { class: "num" }, TW.hours(gw)));
    });
    var share = function (x, of) { return of > 0 ? TW.pct(x / of) : "–"; };
    var waste = function (key, label) {
      return wasters(rows, key, 5).map(function (g) {
        return [h("h3", null, label + " " + g.name + " — " + TW.hours(g.ch) + " core-h, " + TW.hours(g.gh) + " GPU-h"),
          table("wasters-" + key + "-" + g.name, [["User"], ["Jobs", 1], ["Core-h", 1], ["Share of core-h", 1], ["Wasted core-h", 1], ["Wasted share", 1], ["GPU-h", 1], ["Share of GPU-h", 1], ["Wasted GPU-h", 1]],
            g.top.map(function (u) {
              return h("tr", { class: "waster-row" }, h("td", null, h("a", { href: "#/trend?user=" + encodeURIComponent(u.user) }, u.user)), h("td", { class: "num" }, u.jobs),
                h("td", { class: "num" }, TW.hours(u.ch)), h("td", { class: "num" }, share(u.ch, g.ch)), h("td", { class: "num" }, TW.hours(u.wasted)),
                h("td", { class: "num" }, share(u.wasted, g.ch)), h("td", { class: "num" }, TW.hours(u.gh)), h("td", { class: "num" }, share(u.gh, g.gh)),
                h("td", { class: "num" }, TW.hours(u.gpuWasted)));
            }))];
      });
    };
    var running = rows.filter(function (r) { return r.state === "RUNNING"; });
    var runRows = running.map(function (r) {
      return h("tr", { class: "running-row" }, h("td", null, h("a", { href: "#/job/" + r.id }, r.display_id)), h("td", { text: r.user }), h("td", { text: r.name }),
        h("td", { class: "num" }, TW.dur(r.elapsed_secs)), h("td", { class: "num" }, r.alloc_cpus),
        TW.effCell(r.cpu_frac, 0.5, r.cpu_no_data, r.cpu_live, r.live_since), TW.effCell(r.mem_frac, 0.25, r.mem_no_data, r.mem_live, r.live_since),
        h("td", { text: r.node_list }));
    });
    var nodes = {};
    running.forEach(function (r) { hosts(r.node_list).forEach(function (n) { (nodes[n] = nodes[n] || []).push(r); }); });
    var nodeRows = Object.keys(nodes).sort().map(function (n) {
      return h("tr", { class: "node-row" }, h("td", { text: n }), h("td", null, nodes[n].map(function (r, i) {
        return [i ? ", " : "", h("a", { href: "#/job/" + r.id }, r.display_id), " " + r.user + " (" + r.alloc_cpus + " CPUs)"];
      })));
    });
    var days2 = [["Day"], ["Allocated core-h", 1], ["Used", 1], ["Wasted", 1], ["CPU eff.", 1], ["No figure yet", 1], ["GPU-h", 1], ["Wasted GPU-h", 1]];
    TW.show(h("h1", { text: "Cluster" }),
      h("div", { class: "controls" }, TW.periodSelect(periods, p.start, function (v) { q.period = v; TW.go("cluster", q); })),
      h("p", { class: "muted" }, rows.length + " jobs in this period" + (me && me.admin ? "" : " that you may see") +
        ". Used = allocated × CPU efficiency (seff's); running jobs count as allocated with no figure until they end."),
      h("h2", { text: "Per day" }), dayChart, table("days", days2, dayRows),
      h("h2", { text: "Per period" }), table("periods", [["Period"], ["Jobs", 1], ["Core-h", 1], ["Wasted core-h", 1], ["CPU eff.", 1], ["GPU-h", 1], ["Wasted GPU-h", 1]], periodRows),
      h("h2", { text: "Top wasters per partition" }), waste("partition", "Partition"),
      h("h2", { text: "Top wasters per account" }), waste("account", "Account"),
      h("h2", { text: "Running now" }), running.length ? table("running", [["Job"], ["User"], ["Name"], ["Elapsed", 1], ["CPUs", 1], ["CPU eff.", 1], ["Mem eff.", 1], ["Nodes"]], runRows)
        : h("p", { class: "muted" }, "No job of this period is running."),
      h("h2", { text: "Nodes and what runs on them" }), nodeRows.length ? table("nodes", [["Node"], ["Jobs"]], nodeRows)
        : h("p", { class: "muted" }, "No running jobs."));
  }

  // One user over time: efficiency per period and per job family (job name), from the user's
  // jobs (the latest ones the API pages out, all time).
  function trendPage(q) {
    var h = TW.h, me = TW.me(), user = q.user || (me && me.user) || "";
    Promise.all([TW.api("periods"), TW.api("jobs?page_size=500&sort=-start&user=" + encodeURIComponent(user))]).then(function (res) {
      var periods = res[0], page = res[1], jobs = page.jobs;
      var agg = function () { return { jobs: 0, ch: 0, wasted: 0, known: 0, used: 0, mem: 0, memN: 0 }; };
      var add = function (a, j) {
        a.jobs++; a.ch += j.core_hours; a.wasted += j.wasted_core_hours;
        if (j.cpu_frac !== null && !j.cpu_live) { a.known += j.core_hours; a.used += j.core_hours * j.cpu_frac; }
        if (j.mem_frac !== null && !j.mem_live) { a.mem += j.mem_frac; a.memN++; }
      };
      var per = periods.map(function (p) {
        var a = agg(); a.p = p;
        jobs.forEach(function (j) { var end = j.end_at || Date.now() / 1000; if (j.end_at && end >= p.start && end < p.end) add(a, j); });
        return a;
      }).filter(function (a) { return a.jobs; });
      var fam = {};
      jobs.forEach(function (j) { add(fam[j.name] || (fam[j.name] = agg()), j); });
      var eff = function (a) { return a.known ? a.used / a.known : null; };
      TWCharts.reset();
      var chart = TWCharts.chart({ id: "plot-trend", title: "CPU and memory efficiency per period", unit: "%", ymax: 100, points: true, series: [
        { name: "CPU efficiency", t: per.map(function (a) { return a.p.start; }), y: per.map(function (a) { var e = eff(a); return e === null ? null : 100 * e; }) },
        { name: "memory efficiency", t: per.map(function (a) { return a.p.start; }), y: per.map(function (a) { return a.memN ? 100 * a.mem / a.memN : null; }), dash: [4, 3] }] });
      var row = function (cls, label, a) {
        return h("tr", { class: cls }, h("td", null, label), h("td", { class: "num" }, a.jobs), h("td", { class: "num" }, TW.hours(a.ch)),
          h("td", { class: "num" }, TW.hours(a.wasted)), TW.effCell(eff(a), 0.5), TW.effCell(a.memN ? a.mem / a.memN : null, 0.25));
      };
      var head = function (first) { return [[first], ["Jobs", 1], ["Core-h", 1], ["Wasted core-h", 1], ["CPU eff.", 1], ["Mem eff. (mean)", 1]]; };
      var inp = h("input", { id: "trend-user", value: user, size: 10 });
      inp.addEventListener("change", function () { TW.go("trend", { user: inp.value.trim() }); });
      TW.show(h("h1", { text: "Over time: " + user }),
        me && (me.admin || me.visible_users.length) ? h("div", { class: "controls" }, h("label", null, "User", inp)) : null,
        h("p", { class: "muted" }, jobs.length + (page.total > jobs.length ? " latest of " + page.total : "") + " jobs; a job counts in the period it ended in."),
        chart, table("trend-periods", head("Period"), per.slice().reverse().map(function (a) { return row("trend-row", TW.day(a.p.start) + " – " + TW.day(a.p.end), a); })),
        h("h2", { text: "Per job family (job name)" }),
        table("trend-families", head("Job name"), Object.keys(fam).sort(function (a, b) { return fam[b].wasted - fam[a].wasted; }).map(function (n) { return row("family-row", n, fam[n]); })));
    }).catch(TW.fail);
  }

  window.TWCluster = { page: clusterPage, trend: trendPage, perDay: perDay, wasters: wasters, hosts: hosts };
})();
