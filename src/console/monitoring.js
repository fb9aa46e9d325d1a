// A cluster's page (Monitoring and EMQX alarms tabs) and the project's
// Overview. EMQX alarm names, messages, details and node names come from
// the managed cluster: untrusted, they only ever become text (h()).
// Charts are uPlot (window.uPlot, vendored: /console/vendor/README.md).
import { t, getLang } from "/console/i18n.js";
import { h, api, $, P, state, enterPage, onLeave, stillOn, refreshWhileShown, announce, when, backToAccess } from "/console/app.js";
import { showAlerts, severityBadge } from "/console/alerting.js";

export const RANGES = [["1h", 3600], ["6h", 6 * 3600], ["24h", 24 * 3600], ["7d", 7 * 24 * 3600]];
const DEFAULT_REFRESH_SECS = 15;

// Each chart: its id, title, and series as [metric, colour].
export const CHARTS = [
  { id: "connections", title: "chart.connections", series: [["connections", "#0a6bd6"], ["live_connections", "#12805c"]] },
  { id: "rates", title: "chart.rates", series: [["received_msg_rate", "#0a6bd6"], ["sent_msg_rate", "#12805c"], ["dropped_msg_rate", "#c0262d"]] },
  { id: "subscriptions", title: "chart.subscriptions", series: [["subscriptions", "#5b4bd6"], ["topics", "#b35c00"]] },
  { id: "nodes", title: "chart.nodes", series: [["nodes_running", "#12805c"], ["nodes_total", "#5b6475"]] },
];

// ------------------------------------------------------------------ pure helpers

/** uPlot's data for `names` from the API's series: [x (unix s), y1, y2…]
 * over the union of the series' timestamps, null where a series has no point. */
export function align(series, names) {
  const byName = new Map((series || []).map((s) => [s.name, new Map(s.points.map(([ts, v]) => [ts, v]))]));
  const times = [...new Set(names.flatMap((n) => [...(byName.get(n)?.keys() || [])]))].sort((a, b) => a - b);
  return [times.map((ts) => ts / 1000), ...names.map((n) => times.map((ts) => byName.get(n)?.get(ts) ?? null))];
}

/** How often the agent collects, seen from as-collected points: the median
 * gap, 1–60 s; null when there are too few points to tell. */
export function collectInterval(series) {
  const ts = [...new Set((series || []).flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const gaps = ts.slice(1).map((v, i) => v - ts[i]).filter((g) => g > 0).sort((a, b) => a - b);
  if (gaps.length < 2) return null;
  return Math.min(60, Math.max(1, Math.round(gaps[Math.floor(gaps.length / 2)] / 1000)));
}

/** 1234567 → "1.23M"; rates keep two decimals. */
export function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : String(+v.toFixed(2));
}

/** 93784000 ms → "1d 2h", "2h 3m", "3m 4s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return t("unknown");
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s %= 86400;
  const hh = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60);
  return d ? t("durDays", d, hh) : hh ? t("durHours", hh, m) : t("durMinutes", m, s % 60);
}

const locale = () => (getLang() === "zh" ? "zh-CN" : "en-GB");

function tick(secs, span) {
  const d = new Date(secs * 1000);
  return span > 86400
    ? d.toLocaleString(locale(), { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
    : d.toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
}

// ------------------------------------------------------------------ charts

// The charts on screen (resized with the window). The browser test reads
// what they plot from window.__ecpCharts.
const shown = { charts: [] };
window.__ecpCharts = {};
window.addEventListener("resize", () => {
  for (const u of shown.charts) if (u.root.isConnected) u.setSize({ width: plotWidth(u.root.parentElement), height: u.height });
});

function plotWidth(el) { return Math.max(280, (el?.clientWidth || 600) - 4); }

function showLatest(u) {
  const n = u.data[0].length;
  if (n) u.setLegend({ idx: n - 1 });
}

/** A uPlot chart in `el` for `spec`; `range()` gives the x range shown (unix s). */
function makeChart(el, spec, data, range) {
  const opts = {
    width: plotWidth(el),
    height: 220,
    scales: { x: { time: true, range: () => range() }, y: { range: (u, min, max) => [0, Math.max(1, max === null ? 1 : max * 1.1)] } },
    axes: [
      { space: 90, values: (u, splits) => { const [a, b] = range(); return splits.map((v) => tick(v, b - a)); } },
      { size: 56, values: (u, splits) => splits.map(fmtNum) },
    ],
    series: [
      { label: t("time"), value: (u, v) => (v === null ? "—" : when(new Date(v * 1000).toISOString())) },
      ...spec.series.map(([name, colour]) => ({
        label: t(`metric.${name}`), stroke: colour, width: 2, spanGaps: false, points: { size: 4 },
        value: (u, v) => fmtNum(v),
      })),
    ],
    legend: { live: true },
    // Off the plot, the legend shows the newest values.
    hooks: { setCursor: [(u) => { if (u.cursor.idx === null || u.cursor.idx === undefined) showLatest(u); }] },
  };
  return new window.uPlot(opts, data, el);
}

// ------------------------------------------------------------------ cluster page

/** A cluster's page: `tab` "monitoring" (charts, live) or "alarms". */
export async function showCluster(id, tab = "monitoring") {
  const view = { tab, range: localStorage.getItem("ecp.range") || "1h", alarms: "active", every: DEFAULT_REFRESH_SECS, seq: 0, charts: new Map(), answer: null };
  if (!RANGES.some(([r]) => r === view.range)) view.range = "1h";
  const nav = enterPage("cluster", () => showCluster(id, view.tab));
  const c = state.clusters.get(id);
  const name = c ? c.name : id;
  shown.charts = [];
  window.__ecpCharts = {};
  const panel = h("div", { id: "cluster-panel" });
  const tabBtn = (key, label) => h("button", { role: "tab", id: `tab-${key}`, "aria-selected": String(view.tab === key), "aria-controls": "cluster-panel",
    onclick: () => { view.tab = key; for (const b of tabs.children) b.setAttribute("aria-selected", String(b.id === `tab-${key}`)); draw(); } }, label);
  const tabs = h("div.tabs", { role: "tablist", "aria-label": name }, tabBtn("monitoring", t("monitoring")), tabBtn("alarms", t("emqxAlarms")));
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("button.link", { id: "cluster-back", onclick: backToAccess }, `← ${t("dataAccess")}`),
      h("h1", { id: "cluster-title" }, name), c ? h(`span.badge.status-${c.status}`, { "data-status": c.status }, t(`status.${c.status}`)) : null),
    tabs, panel);

  // Monitoring -------------------------------------------------------
  const err = h("p.error", { role: "alert", id: "monitor-error" });
  const updated = h("span.muted", { id: "monitor-updated" });
  const charts = h("div.charts", { id: "charts" });
  const rangeBtns = h("div.toggle", { role: "group", id: "range", "aria-label": t("range") }, ...RANGES.map(([r]) =>
    h("button", { "data-range": r, "aria-pressed": String(view.range === r), onclick: () => {
      view.range = r;
      localStorage.setItem("ecp.range", r);
      for (const b of rangeBtns.children) b.setAttribute("aria-pressed", String(b.dataset.range === r));
      loadMetrics();
    } }, t(`range.${r}`))));
  const figures = new Map(CHARTS.map((spec) => {
    const plot = h("div.plot");
    const fig = h("figure.chart", { id: `chart-${spec.id}`, "data-points": "0" }, h("figcaption", {}, t(spec.title)), plot, h("p.empty.nodata", { hidden: true }, t("noSamples")));
    return [spec.id, { spec, fig, plot }];
  }));
  const monitoring = h("section", { id: "monitoring", "aria-label": t("monitoring") },
    h("div.toolbar", {}, rangeBtns, h("span.spacer"), updated), err, charts);
  charts.append(...[...figures.values()].map((f) => f.fig));

  const loadMetrics = async () => {
    const mine = ++view.seq;
    const secs = RANGES.find(([r]) => r === view.range)[1];
    const names = CHARTS.flatMap((s) => s.series.map(([n]) => n));
    // The range from this browser's clock, both ends (as Grafana does): the
    // server answers exactly that range, as collected up to 6 h.
    const until = Date.now();
    const q = new URLSearchParams({ names: names.join(","), since: String(until - secs * 1000), until: String(until) });
    let r;
    try { r = await api("GET", `${P}/clusters/${encodeURIComponent(id)}/metrics?${q}`); }
    catch (ex) { if (mine === view.seq && stillOn(nav)) err.textContent = ex.message; return; }
    if (mine !== view.seq || !stillOn(nav)) return;
    err.textContent = "";
    view.answer = r;
    // As collected: again after each collection (a new cluster's first
    // samples are looked for every few seconds until the interval shows).
    if (r.tier === "raw" && r.step === 0) view.every = collectInterval(r.series) ?? Math.min(5, view.every);
    else view.every = DEFAULT_REFRESH_SECS;
    const range = () => [view.answer.since / 1000, view.answer.until / 1000];
    for (const { spec, fig, plot } of figures.values()) {
      const data = align(r.series, spec.series.map(([n]) => n));
      let u = view.charts.get(spec.id);
      if (u && u.root.isConnected) u.setData(data);
      else if (fig.isConnected) {
        plot.replaceChildren();
        u = makeChart(plot, spec, data, range);
        view.charts.set(spec.id, u);
        shown.charts = [...view.charts.values()];
      } else continue;
      if (u.cursor.idx === null || u.cursor.idx === undefined) showLatest(u);
      fig.dataset.points = String(data[0].length);
      fig.querySelector(".nodata").hidden = data[0].length > 0;
      window.__ecpCharts[spec.id] = { names: spec.series.map(([n]) => n), data: u.data, since: r.since, until: r.until, tier: r.tier, step: r.step };
    }
    updated.textContent = t("updatedAt", new Date().toLocaleTimeString(locale()), view.every);
    updated.dataset.every = String(view.every);
  };

  // EMQX alarms --------------------------------------------------------
  const alarmErr = h("p.error", { role: "alert", id: "alarms-error" });
  const alarmBody = h("tbody", { id: "alarms-body" });
  const alarmToggle = h("div.toggle", { role: "group", id: "alarms-which", "aria-label": t("emqxAlarms") }, ...[["active", "alarmsActive"], ["history", "alarmsHistory"]].map(([k, label]) =>
    h("button", { id: `alarms-${k}`, "aria-pressed": String(view.alarms === k), onclick: () => {
      view.alarms = k;
      for (const b of alarmToggle.children) b.setAttribute("aria-pressed", String(b.id === `alarms-${k}`));
      loadAlarms();
    } }, t(label))));
  const alarms = h("section", { id: "alarms", "aria-label": t("emqxAlarms") },
    h("div.toolbar", {}, alarmToggle), alarmErr,
    h("table.list", { id: "alarms-table", "aria-label": t("emqxAlarms") },
      h("thead", {}, h("tr", {}, ...["node", "alarmName", "message", "activatedAt", "deactivatedAt", "duration"].map((k) => h("th", { scope: "col" }, t(k))))),
      alarmBody));
  const loadAlarms = async () => {
    const mine = ++view.seq;
    let r;
    try { r = await api("GET", `${P}/clusters/${encodeURIComponent(id)}/alarms?activated=${view.alarms === "active"}`); }
    catch (ex) { if (mine === view.seq && stillOn(nav)) alarmErr.textContent = ex.message; return; }
    if (mine !== view.seq || !stillOn(nav)) return;
    alarmErr.textContent = "";
    alarmBody.replaceChildren(...r.data.map((a) => h("tr", { "data-alarm-name": a.name, "data-node": a.node },
      h("td", {}, a.node), h("td.strong", {}, a.name), h("td", {}, a.message),
      h("td", {}, when(a.activateAt)), h("td", {}, a.deactivateAt ? when(a.deactivateAt) : t("stillActive")), h("td", {}, fmtDuration(a.durationMs)))));
    if (!r.data.length) alarmBody.replaceChildren(h("tr.empty", {}, h("td", { colspan: 6 }, t(view.alarms === "active" ? "noActiveAlarms" : "noAlarmHistory"))));
  };

  const load = () => (view.tab === "monitoring" ? loadMetrics() : loadAlarms());
  const dropCharts = () => {
    for (const u of view.charts.values()) u.destroy();
    view.charts.clear();
    shown.charts = [];
  };
  onLeave(dropCharts);
  const draw = () => {
    dropCharts();
    panel.replaceChildren(view.tab === "monitoring" ? monitoring : alarms);
    for (const { plot } of figures.values()) plot.replaceChildren();
    return load();
  };
  // Live: again every collection interval while the page is shown.
  await draw();
  refreshWhileShown(nav, load, () => view.every);
}

// ------------------------------------------------------------------ overview

/** The project at a glance: clusters by status, connections, message
 * rates, and the clusters with alerts firing. Refreshed while shown. */
export async function showOverview() {
  const nav = enterPage("overview", showOverview);
  const err = h("p.error", { role: "alert", id: "overview-error" });
  const stats = h("div.stats", { id: "overview-stats" });
  const firingBody = h("tbody", { id: "firing-body" });
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("h1", { id: "overview-h" }, t("overview"))), err, stats,
    h("section", { "aria-labelledby": "firing-h" }, h("div.toolbar", {}, h("h2", { id: "firing-h" }, t("clustersFiring")), h("span.spacer"),
      h("button", { id: "overview-alerts", onclick: () => showAlerts().catch((ex) => announce(ex.message)) }, t("allAlerts"))),
      h("table.list", { "aria-labelledby": "firing-h" },
        h("thead", {}, h("tr", {}, ...["cluster", "firingAlerts", "severity"].map((k) => h("th", { scope: "col" }, t(k))))), firingBody)));
  const stat = (id, label, value, extra) => h("div.stat", { id: `stat-${id}`, "data-value": value }, h("span.label", {}, label), h("span.value", {}, value), extra || null);
  const load = async () => {
    let o;
    try { o = await api("GET", `${P}/overview`); }
    catch (ex) { if (stillOn(nav)) err.textContent = ex.message; return; }
    if (!stillOn(nav)) return;
    err.textContent = "";
    const by = o.clusters.byStatus;
    stats.replaceChildren(
      stat("clusters", t("clusters"), o.clusters.total, h("span.statuses", {}, ...["running", "abnormal", "registering", "created", "deleting"].filter((s) => by[s])
        .map((s) => h(`span.badge.status-${s}`, { "data-status": s, "data-count": by[s] }, `${t(`status.${s}`)} ${by[s]}`)))),
      stat("connections", t("connections"), fmtNum(o.connections.total)),
      stat("live", t("metric.live_connections"), fmtNum(o.connections.live)),
      stat("received", t("metric.received_msg_rate"), fmtNum(o.rates.received)),
      stat("sent", t("metric.sent_msg_rate"), fmtNum(o.rates.sent)),
      stat("dropped", t("metric.dropped_msg_rate"), fmtNum(o.rates.dropped)),
      stat("firing", t("firingAlerts"), o.firingAlerts));
    firingBody.replaceChildren(...o.clustersWithFiringAlerts.map((c) => h("tr", { "data-cluster-id": c.id },
      h("td", {}, h("button.link", { "data-action": "open-cluster", onclick: () => showCluster(c.id, "monitoring").catch((ex) => announce(ex.message)) }, c.name)),
      h("td", {}, c.firing), h("td", {}, severityBadge(c.severity)))));
    if (!o.clustersWithFiringAlerts.length) firingBody.replaceChildren(h("tr.empty", {}, h("td", { colspan: 3 }, t("noFiring"))));
  };
  await load();
  refreshWhileShown(nav, load, () => DEFAULT_REFRESH_SECS);
}
