// Live traffic: the last ten minutes from /api/v1/stats/history, then one point a second
// from the server-sent events of /api/v1/stats/stream. Graphs by uPlot (vendor/); the newest
// values also go into the table cells marked data-series / data-metric, which is what the
// browser tests read.
"use strict";
(function () {
  var WINDOW = 600; // seconds shown
  var hasCharts = !!document.getElementById("chart-rate");
  var pick = document.getElementById("series-pick");
  var selected = pick ? pick.value : "total";
  var data = {}; // series key -> columns
  var charts = {};

  function fmt(v) {
    if (v >= 1e9) { return (v / 1e9).toFixed(1) + "G"; }
    if (v >= 1e6) { return (v / 1e6).toFixed(1) + "M"; }
    if (v >= 1e4) { return (v / 1e3).toFixed(1) + "k"; }
    return v >= 100 || v === 0 ? v.toFixed(0) : v.toFixed(1);
  }

  function empty() {
    return { t: [], rps: [], cps: [], active: [], bytes_in: [], bytes_out: [], classes: [[], [], [], [], []] };
  }

  function push(key, p) {
    var c = data[key] || (data[key] = empty());
    c.t.push(p.t); c.rps.push(p.rps); c.cps.push(p.cps); c.active.push(p.active);
    c.bytes_in.push(p.bytes_in); c.bytes_out.push(p.bytes_out);
    for (var i = 0; i < 5; i++) { c.classes[i].push(p.classes[i]); }
    var drop = c.t.length - 3600;
    if (drop > 0) {
      ["t", "rps", "cps", "active", "bytes_in", "bytes_out"].forEach(function (k) { c[k].splice(0, drop); });
      c.classes.forEach(function (a) { a.splice(0, drop); });
    }
  }

  function rate(c) { // requests/s when the series has requests, else connections/s
    var anyReq = c.rps.some(function (v) { return v > 0; });
    return anyReq ? c.rps : c.cps;
  }

  function width(el) { return Math.max(300, el.clientWidth || 300); }

  function chart(id, series, columns) {
    var el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") { return; }
    var opts = {
      width: width(el), height: 180,
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, vals) { return vals.map(fmt); }, size: 60 }],
      series: [{}].concat(series),
      legend: { live: false }
    };
    if (charts[id]) { charts[id].setData(columns); return; }
    charts[id] = new uPlot(opts, columns, el);
  }

  var COLORS = ["#2b6cb0", "#1e8e3e", "#b06000", "#c5221f", "#6b46c1", "#0f766e", "#be185d", "#4b5563"];

  function draw() {
    if (!hasCharts) { return; }
    var c = data[selected] || empty();
    var since = (c.t.length ? c.t[c.t.length - 1] : 0) - WINDOW;
    var start = 0;
    while (start < c.t.length && c.t[start] <= since) { start++; }
    function cut(a) { return a.slice(start); }
    var t = cut(c.t);
    chart("chart-rate", [{ label: "per second", stroke: COLORS[0], fill: "rgba(43,108,176,.08)" }], [t, cut(rate(c))]);
    chart("chart-active", [{ label: "active", stroke: COLORS[1] }], [t, cut(c.active)]);
    chart("chart-bw", [{ label: "in", stroke: COLORS[0] }, { label: "out", stroke: COLORS[2] }], [t, cut(c.bytes_in), cut(c.bytes_out)]);
    chart("chart-classes", ["1xx", "2xx", "3xx", "4xx", "5xx"].map(function (l, i) {
      return { label: l, stroke: ["#9ca3af", COLORS[1], COLORS[0], COLORS[2], COLORS[3]][i] };
    }), [t].concat(c.classes.map(cut)));
    // Per server: one line each, on the servers' common time axis.
    var keys = Object.keys(data).filter(function (k) { return k.indexOf("server:") === 0; }).sort();
    if (keys.length) {
      var base = data.total ? cut(data.total.t) : t;
      var cols = [base];
      keys.forEach(function (k) {
        var s = data[k], r = rate(s), byT = {};
        s.t.forEach(function (tt, i) { byT[tt] = r[i]; });
        cols.push(base.map(function (tt) { return byT[tt] === undefined ? null : byT[tt]; }));
      });
      var id = "chart-servers";
      if (charts[id] && charts[id].series.length !== keys.length + 1) { charts[id].destroy(); delete charts[id]; }
      chart(id, keys.map(function (k, i) { return { label: k.slice(7), stroke: COLORS[i % COLORS.length] }; }), cols);
    }
  }

  function table(frame) {
    document.querySelectorAll("[data-series]").forEach(function (row) {
      var p = frame.series[row.getAttribute("data-series")];
      if (!p) { return; }
      row.querySelectorAll("[data-metric]").forEach(function (cell) {
        var m = cell.getAttribute("data-metric");
        if (m in p) { cell.textContent = fmt(p[m]); cell.setAttribute("data-value", String(p[m])); }
      });
      var server = row.getAttribute("data-series").replace(/^server:/, "");
      var st = frame.servers[server];
      if (st) {
        row.querySelectorAll("[data-metric=state]").forEach(function (cell) { cell.textContent = st.admin + " · " + st.health; });
        row.querySelectorAll("[data-metric=admin]").forEach(function (cell) { cell.textContent = st.admin; cell.className = "badge admin-" + st.admin; });
        row.querySelectorAll("[data-metric=health]").forEach(function (cell) { cell.textContent = st.health; cell.className = "badge health-" + st.health; });
      }
    });
    var clock = document.getElementById("live-clock");
    if (clock) { clock.textContent = "live · " + new Date(frame.t * 1000).toLocaleTimeString(); clock.setAttribute("data-t", String(frame.t)); }
  }

  function start() {
    fetch("/api/v1/stats/history?seconds=" + WINDOW, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (h) {
        Object.keys(h).forEach(function (k) { data[k] = h[k]; });
        draw();
      })
      .catch(function () {})
      .then(function () {
        var es = new EventSource("/api/v1/stats/stream");
        es.addEventListener("frame", function (ev) {
          var frame = JSON.parse(ev.data);
          Object.keys(frame.series).forEach(function (k) { push(k, frame.series[k]); });
          table(frame);
          draw();
          document.body.setAttribute("data-frames", String((+document.body.getAttribute("data-frames") || 0) + 1));
        });
      });
  }

  if (pick) { pick.addEventListener("change", function () { selected = pick.value; Object.keys(charts).forEach(function (k) { if (k !== "chart-servers") { charts[k].destroy(); delete charts[k]; } }); draw(); }); }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) { var el = document.getElementById(k); charts[k].setSize({ width: width(el), height: 180 }); });
  });
  // The graph data, readable by tests: window.tandemGraph.series("server:web/web1").
  window.tandemGraph = { series: function (k) { return data[k]; } };
  start();
})();
