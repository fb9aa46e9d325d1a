// Alert rules, notification channels (with a Test button and the delivery
// log) and alerts (firing / history). Viewers read; only admins get the
// buttons that change something. Alert messages and delivery errors can
// carry text from EMQX or a webhook receiver: text only (h()).
import { t } from "/console/i18n.js";
import { h, api, $, P, state, enterPage, stillOn, refreshWhileShown, announce, when, dialog, closeBtn, field, canWrite, copyText } from "/console/app.js";
import { showCluster, fmtDuration, fmtNum } from "/console/monitoring.js";

export const KINDS = ["cluster_abnormal", "agent_offline", "nodes_stopped", "connections_over", "license_expiring", "emqx_alarm", "msg_dropped_rate_over", "no_metrics"];
/** Kinds that need a threshold (and only these take one). */
export const THRESHOLD_KINDS = ["connections_over", "license_expiring", "msg_dropped_rate_over"];
export const REASONS = ["agent_offline", "emqx_unreachable", "emqx_auth_failed", "nodes_stopped", "unsupported_version", "agent_error"];
export const SEVERITIES = ["info", "warning", "critical"];
const REFRESH_SECS = 15;

export function severityBadge(s) {
  return h(`span.badge.sev-${s}`, { "data-severity": s }, t(`severity.${s}`));
}

const table = (id, cols, body, label) => h("table.list", { id, "aria-label": label },
  h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", { scope: "col" }, t(c))))), body);

const clusterName = (id) => state.clusters.get(id)?.name || id;

/** The rule body the API takes (RuleInput) from the form's values: fields
 * a kind does not use are left out (the server refuses them). */
export function ruleInput(v) {
  const body = {
    name: v.name.trim(), kind: v.kind, clusterIds: v.clusterIds, forSecs: Number(v.forSecs || 0),
    recoverSecs: Number(v.recoverSecs || 0), severity: v.severity, channelIds: v.channelIds, enabled: v.enabled,
  };
  if (THRESHOLD_KINDS.includes(v.kind)) body.threshold = v.threshold === "" ? null : Number(v.threshold);
  if (v.kind === "connections_over") body.unit = v.unit;
  if (v.kind === "cluster_abnormal" && v.reasonCode) body.reasonCode = v.reasonCode;
  if (v.kind === "emqx_alarm") body.alarmPattern = v.alarmPattern || "*";
  return body;
}

/** What a rule watches, in words. */
export function condition(r) {
  let what;
  switch (r.kind) {
    case "connections_over": what = r.unit === "absolute" ? `> ${fmtNum(r.threshold)}` : `> ${r.threshold} % ${t("ofLicense")}`; break;
    case "license_expiring": what = `≤ ${r.threshold} ${t("days")}`; break;
    case "msg_dropped_rate_over": what = `> ${r.threshold} ${t("perSecond")}`; break;
    case "cluster_abnormal": what = r.reasonCode ? t(`reason.${r.reasonCode}`) : t("anyReason"); break;
    case "emqx_alarm": what = r.alarmPattern || "*"; break;
    default: what = "";
  }
  const held = r.forSecs ? t("forSecsShort", r.forSecs) : "";
  return [what, held].filter(Boolean).join(" · ");
}

/** "Name: value" lines → a headers object; a line without a colon is an error. */
export function parseHeaders(text) {
  const out = {};
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(t("headerLine", i + 1));
    out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

const addresses = (text) => text.split(/[\s,;]+/).map((a) => a.trim()).filter(Boolean);

// ------------------------------------------------------------------ rules

export async function showRules() {
  const nav = enterPage("rules", showRules);
  const err = h("p.error", { role: "alert", id: "rules-error" });
  const body = h("tbody", { id: "rules-body" });
  let channels = [];
  const load = async () => {
    let rules;
    try { [rules, channels] = await Promise.all([api("GET", `${P}/alert-rules`), api("GET", `${P}/notification-channels`).then((r) => r.data)]); }
    catch (ex) { if (stillOn(nav)) err.textContent = ex.message; return; }
    if (!stillOn(nav)) return;
    err.textContent = "";
    const channelName = (id) => channels.find((c) => c.id === id)?.name || id;
    body.replaceChildren(...rules.data.map((r) => h("tr", { "data-rule-id": r.id, "data-rule-name": r.name },
      h("th", { scope: "row" }, r.name), h("td", {}, t(`kind.${r.kind}`)),
      h("td", {}, r.clusterIds.length ? r.clusterIds.map(clusterName).join(", ") : t("allClusters")),
      h("td", {}, condition(r)), h("td", {}, severityBadge(r.severity)),
      h("td", {}, r.channelIds.map(channelName).join(", ") || t("none")),
      h("td", { "data-enabled": String(r.enabled) }, r.enabled ? t("yes") : t("no")),
      canWrite() ? h("td.actions", {},
        h("button", { "data-action": "edit-rule", onclick: () => openRule(r, channels, load) }, t("edit")),
        h("button.danger", { "data-action": "delete-rule", onclick: () => confirmDelete(r.name, `${P}/alert-rules/${encodeURIComponent(r.id)}`, load) }, t("delete"))) : null)));
    if (!rules.data.length) body.replaceChildren(h("tr.empty", {}, h("td", { colspan: 8 }, t("noRules"))));
  };
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("h1", { id: "rules-h" }, t("alertRules")), h("span.spacer"),
      canWrite() ? h("button.primary", { id: "rule-create", onclick: () => openRule(null, channels, load) }, t("newRule")) : null),
    err,
    table("rules-table", ["name", "kind", "clusters", "condition", "severity", "channels", "enabled", ...(canWrite() ? ["actions"] : [])], body, t("alertRules")));
  await load();
}

function checkboxes(id, label, items, checked, hint) {
  return h("fieldset.choices", { id },
    h("legend", {}, label),
    items.length ? items.map(([value, text]) => h("label", {}, h("input", { type: "checkbox", value, checked: checked.includes(value) }), text)) : h("span.empty", {}, t("none")),
    hint ? h("small", {}, hint) : null);
}
const checkedIn = (box) => [...box.querySelectorAll("input[type=checkbox]:checked")].map((i) => i.value);

function openRule(rule, channels, after) {
  const r = rule || { name: "", kind: "cluster_abnormal", clusterIds: [], threshold: null, unit: "percent", reasonCode: null, alarmPattern: "*", forSecs: 0, recoverSecs: 0, severity: "warning", channelIds: [], enabled: true };
  const select = (options, value) => { const s = h("select", {}, ...options.map(([v, text]) => h("option", { value: v }, text))); s.value = value ?? ""; return s; };
  const name = h("input", { value: r.name, maxlength: 64, required: true });
  const kind = select(KINDS.map((k) => [k, t(`kind.${k}`)]), r.kind);
  const threshold = h("input", { type: "number", min: 0, step: "any", value: r.threshold ?? "" });
  const unit = select([["percent", t("unit.percent")], ["absolute", t("unit.absolute")]], r.unit || "percent");
  const reason = select([["", t("anyReason")], ...REASONS.map((c) => [c, t(`reason.${c}`)])], r.reasonCode || "");
  const pattern = h("input", { value: r.alarmPattern || "*", maxlength: 255 });
  const forSecs = h("input", { type: "number", min: 0, max: 86400, value: r.forSecs });
  const recoverSecs = h("input", { type: "number", min: 0, max: 86400, value: r.recoverSecs });
  const severity = select(SEVERITIES.map((s) => [s, t(`severity.${s}`)]), r.severity);
  const enabled = h("input", { type: "checkbox", id: "rule-enabled", checked: r.enabled });
  const clusters = checkboxes("rule-clusters", t("clusters"), [...state.clusters.values()].map((c) => [c.id, c.name]), r.clusterIds, t("allClustersHint"));
  const chans = checkboxes("rule-channels", t("channels"), channels.map((c) => [c.id, c.name]), r.channelIds);
  const thresholdLabel = h("label", { for: "rule-threshold" });
  const thresholdField = h("div.field", {}, thresholdLabel, threshold);
  const unitField = field("rule-unit", t("unitLabel"), unit);
  const reasonField = field("rule-reason", t("reasonCode"), reason);
  const patternField = field("rule-pattern", t("alarmPattern"), pattern, t("alarmPatternHint"));
  threshold.id = "rule-threshold";
  const err = h("p.error", { role: "alert", id: "rule-error" });
  // Only the fields the kind uses are shown.
  const fit = () => {
    const k = kind.value;
    thresholdField.hidden = !THRESHOLD_KINDS.includes(k);
    unitField.hidden = k !== "connections_over";
    reasonField.hidden = k !== "cluster_abnormal";
    patternField.hidden = k !== "emqx_alarm";
    thresholdLabel.textContent = t(k === "license_expiring" ? "thresholdDays" : k === "msg_dropped_rate_over" ? "thresholdRate" : unit.value === "absolute" ? "thresholdConnections" : "thresholdPercent");
  };
  kind.addEventListener("change", fit);
  unit.addEventListener("change", fit);
  fit();
  const dlg = dialog(rule ? t("editTitle", rule.name) : t("newRule"), h("div", {},
    field("rule-name", t("name"), name), field("rule-kind", t("kind"), kind),
    thresholdField, unitField, reasonField, patternField,
    h("div.row", {}, field("rule-for", t("forSecs"), forSecs, t("forSecsHint")), field("rule-recover", t("recoverSecs"), recoverSecs, t("recoverSecsHint"))),
    field("rule-severity", t("severity"), severity), clusters, chans,
    h("div.field.check", {}, enabled, h("label", { for: "rule-enabled" }, t("enabled"))), err), [closeBtn(),
    h("button.primary", { value: "default", "data-action": "save-rule", onclick: async (e) => {
      e.preventDefault();
      err.textContent = "";
      if (!name.value.trim()) { err.textContent = t("nameRequired"); name.focus(); return; }
      const input = ruleInput({ name: name.value, kind: kind.value, clusterIds: checkedIn(clusters), threshold: threshold.value, unit: unit.value,
        reasonCode: reason.value, alarmPattern: pattern.value, forSecs: forSecs.value, recoverSecs: recoverSecs.value, severity: severity.value,
        channelIds: checkedIn(chans), enabled: enabled.checked });
      try {
        if (rule) await api("PUT", `${P}/alert-rules/${encodeURIComponent(rule.id)}`, input);
        else await api("POST", `${P}/alert-rules`, input);
        dlg.close();
        announce(input.name);
        await after();
      } catch (ex) { err.textContent = ex.message; }
    } }, t("save"))], "rule-dialog");
  name.focus();
}

function confirmDelete(name, path, after) {
  const err = h("p.error", { role: "alert", id: "confirm-error" });
  const dlg = dialog(t("deleteTitle", name), h("div", {}, h("p", {}, t("deleteConfirm", name)), err), [closeBtn(),
    h("button.danger", { value: "default", "data-action": "confirm-delete", onclick: async (e) => {
      e.preventDefault();
      try { await api("DELETE", path); dlg.close(); await after(); }
      catch (ex) { err.textContent = ex.message; }
    } }, t("delete"))], "confirm-dialog");
}

// ------------------------------------------------------------------ channels

export async function showChannels() {
  const nav = enterPage("channels", showChannels);
  const err = h("p.error", { role: "alert", id: "channels-error" });
  const body = h("tbody", { id: "channels-body" });
  const load = async () => {
    let r;
    try { r = await api("GET", `${P}/notification-channels`); }
    catch (ex) { if (stillOn(nav)) err.textContent = ex.message; return; }
    if (!stillOn(nav)) return;
    err.textContent = "";
    body.replaceChildren(...r.data.map((c) => {
      const secret = c.kind === "webhook" ? c.webhook?.hasSecret : c.email?.hasPassword;
      return h("tr", { "data-channel-id": c.id, "data-channel-name": c.name },
        h("th", { scope: "row" }, c.name), h("td", {}, t(`channelKind.${c.kind}`)),
        h("td", {}, c.kind === "webhook" ? c.webhook?.url : (c.email?.to || []).join(", ")),
        h("td", {}, c.maxPerMinute),
        h("td", { "data-secret": secret ? "set" : "unset" }, secret ? t("secretSet") : t("secretUnset")),
        h("td.actions", {},
          canWrite() ? h("button", { "data-action": "edit-channel", onclick: () => openChannel(c, load) }, t("edit")) : null,
          canWrite() ? h("button", { "data-action": "test-channel", onclick: () => testChannel(c) }, t("test")) : null,
          h("button", { "data-action": "deliveries", onclick: () => openDeliveries(c, null) }, t("deliveryLog")),
          canWrite() ? h("button.danger", { "data-action": "delete-channel", onclick: () => confirmDelete(c.name, `${P}/notification-channels/${encodeURIComponent(c.id)}`, load) }, t("delete")) : null));
    }));
    if (!r.data.length) body.replaceChildren(h("tr.empty", {}, h("td", { colspan: 6 }, t("noChannels"))));
  };
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("h1", { id: "channels-h" }, t("channels")), h("span.spacer"),
      canWrite() ? h("button.primary", { id: "channel-create", onclick: () => openChannel(null, load) }, t("newChannel")) : null),
    err,
    table("channels-table", ["name", "kind", "target", "maxPerMinute", "secret", "actions"], body, t("channels")));
  await load();
}

function openChannel(ch, after) {
  const w = ch?.webhook || {}, m = ch?.email || {};
  const select = (options, value) => { const s = h("select", {}, ...options.map(([v, text]) => h("option", { value: v }, text))); s.value = value; return s; };
  const name = h("input", { value: ch?.name || "", maxlength: 64, required: true });
  const kind = select([["webhook", t("channelKind.webhook")], ["email", t("channelKind.email")]], ch?.kind || "webhook");
  if (ch) kind.disabled = true;
  const max = h("input", { type: "number", min: 1, max: 1000, value: ch?.maxPerMinute ?? "" });
  const url = h("input", { type: "url", value: w.url || "", maxlength: 2048, placeholder: "https://hooks.example.com/ecp" });
  const headers = h("textarea", { rows: 3, placeholder: "Authorization: Bearer …" });
  headers.value = Object.entries(w.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  const template = h("textarea", { rows: 4, placeholder: '{"text": "{{status}} {{severity}} {{rule}} on {{cluster}}: {{message}}"}' });
  template.value = w.bodyTemplate || "";
  // Write-only: the stored value never comes back; empty keeps it.
  const secret = h("input", { type: "password", autocomplete: "new-password", maxlength: 256, placeholder: w.hasSecret ? t("keepSecret") : t("generatedSecret") });
  const host = h("input", { value: m.host || "" });
  const port = h("input", { type: "number", min: 1, max: 65535, value: m.port ?? "" });
  const security = select([["starttls", "STARTTLS"], ["tls", "TLS"], ["none", t("securityNone")]], m.security || "starttls");
  const user = h("input", { value: m.username || "", autocomplete: "off" });
  const pass = h("input", { type: "password", autocomplete: "new-password", placeholder: m.hasPassword ? t("keepSecret") : "" });
  const from = h("input", { value: m.from || "", placeholder: "ecp@example.com" });
  const to = h("textarea", { rows: 2, placeholder: "ops@example.com, oncall@example.com" });
  to.value = (m.to || []).join(", ");
  const webhook = h("fieldset", { id: "channel-webhook" }, h("legend", {}, t("channelKind.webhook")),
    field("ch-url", t("url"), url), field("ch-headers", t("headers"), headers, t("headersHint")),
    field("ch-template", t("bodyTemplate"), template, t("bodyTemplateHint")),
    field("ch-secret", t("signingSecret"), secret, w.hasSecret ? t("secretIsSet") : t("secretHint")));
  const email = h("fieldset", { id: "channel-email" }, h("legend", {}, t("channelKind.email")),
    h("div.row", {}, field("ch-host", t("smtpHost"), host), field("ch-port", t("smtpPort"), port, t("smtpPortHint")), field("ch-security", t("smtpSecurity"), security)),
    h("div.row", {}, field("ch-user", t("username"), user), field("ch-pass", t("password"), pass, m.hasPassword ? t("secretIsSet") : null)),
    field("ch-from", t("fromAddress"), from), field("ch-to", t("recipients"), to, t("recipientsHint")));
  const fit = () => { webhook.hidden = kind.value !== "webhook"; email.hidden = kind.value !== "email"; };
  kind.addEventListener("change", fit);
  fit();
  const err = h("p.error", { role: "alert", id: "channel-error" });
  const dlg = dialog(ch ? t("editTitle", ch.name) : t("newChannel"), h("div", {},
    field("ch-name", t("name"), name), field("ch-kind", t("kind"), kind), field("ch-max", t("maxPerMinute"), max, t("maxPerMinuteHint")),
    webhook, email, err), [closeBtn(),
    h("button.primary", { value: "default", "data-action": "save-channel", onclick: async (e) => {
      e.preventDefault();
      err.textContent = "";
      if (!name.value.trim()) { err.textContent = t("nameRequired"); name.focus(); return; }
      const input = { name: name.value.trim(), kind: kind.value };
      if (max.value) input.maxPerMinute = Number(max.value);
      try {
        if (kind.value === "webhook") {
          input.webhook = { url: url.value.trim(), headers: parseHeaders(headers.value) };
          if (template.value.trim()) input.webhook.bodyTemplate = template.value;
          if (secret.value) input.webhook.secret = secret.value;
        } else {
          input.email = { host: host.value.trim(), security: security.value, from: from.value.trim(), to: addresses(to.value) };
          if (port.value) input.email.port = Number(port.value);
          if (user.value.trim()) input.email.username = user.value.trim();
          if (pass.value) input.email.password = pass.value;
        }
      } catch (ex) { err.textContent = ex.message; return; }
      try {
        const saved = ch
          ? await api("PUT", `${P}/notification-channels/${encodeURIComponent(ch.id)}`, input)
          : await api("POST", `${P}/notification-channels`, input);
        dlg.close();
        announce(saved.name);
        await after();
        if (saved.secret) showSecretOnce(saved.secret);
      } catch (ex) { err.textContent = ex.message; }
    } }, t("save"))], "channel-dialog");
  name.focus();
}

/** The secret the server generated: shown here once, never again. */
function showSecretOnce(secret) {
  const copy = h("button", { type: "button", "data-action": "copy", onclick: async () => { await copyText(secret); copy.textContent = t("copied"); } }, t("copy"));
  dialog(t("secretTitle"), h("div", {}, h("p", {}, t("secretOnce")), h("p.token", {}, h("code", { id: "channel-secret" }, secret)), copy), [closeBtn()], "secret-dialog");
}

function deliveryRows(list) {
  return list.map((d) => h("tr", { "data-delivery-id": d.id, "data-state": d.state, "data-kind": d.kind },
    h("td", {}, when(d.createdAt)), h("td", {}, t(`deliveryKind.${d.kind}`)),
    h("td", {}, h(`span.badge.delivery-${d.state}`, {}, t(`deliveryState.${d.state}`))), h("td", {}, d.attempts),
    h("td", {}, d.lastStatus ?? t("unknown")), h("td", {}, d.lastError || d.message || "")));
}

/** Sends a test notification and follows it to its end in the delivery log. */
async function testChannel(c) {
  let r;
  try { r = await api("POST", `${P}/notification-channels/${encodeURIComponent(c.id)}/test`, {}); }
  catch (ex) { announce(ex.message); openDeliveries(c, null, ex.message); return; }
  openDeliveries(c, r.deliveryId);
}

/** The channel's delivery log; with `waitFor`, the result of that delivery
 * on top, polled until it is no longer pending (while the dialog is open). */
function openDeliveries(c, waitFor, failure) {
  const result = h("p.result", { id: "test-result", "data-state": failure ? "error" : waitFor ? "pending" : "" }, failure || (waitFor ? t("testSending") : ""));
  const body = h("tbody", { id: "deliveries-body" });
  const dlg = dialog(t("deliveriesOf", c.name), h("div", {}, waitFor || failure ? result : null,
    table("deliveries-table", ["at", "kind", "status", "attempts", "httpStatus", "detail"], body, t("deliveryLog"))), [closeBtn()], "deliveries-dialog");
  let polls = 0;
  const poll = async () => {
    if (!dlg.isConnected) return;
    let list;
    try { list = (await api("GET", `${P}/notification-channels/${encodeURIComponent(c.id)}/deliveries?limit=50`)).data; }
    catch (ex) { result.textContent = ex.message; return; }
    if (!dlg.isConnected) return;
    body.replaceChildren(...deliveryRows(list));
    if (!list.length) body.replaceChildren(h("tr.empty", {}, h("td", { colspan: 6 }, t("noDeliveries"))));
    if (!waitFor) return;
    const d = list.find((x) => x.id === waitFor);
    if (d && d.state !== "pending") {
      result.dataset.state = d.state;
      result.textContent = [t(`deliveryState.${d.state}`), d.lastStatus ? `HTTP ${d.lastStatus}` : null, d.lastError].filter(Boolean).join(" · ");
      return;
    }
    // Retries back off; a few minutes of asking covers them.
    if (++polls < 300) setTimeout(poll, 1000);
  };
  poll();
}

// ------------------------------------------------------------------ alerts

export async function showAlerts(which = "firing") {
  const view = { which };
  const nav = enterPage("alerts", () => showAlerts(view.which));
  const err = h("p.error", { role: "alert", id: "alerts-error" });
  const body = h("tbody", { id: "alerts-body" });
  const toggle = h("div.toggle", { role: "group", id: "alerts-which", "aria-label": t("alerts") }, ...[["firing", "alertsFiring"], ["resolved", "alertsHistory"]].map(([k, label]) =>
    h("button", { id: `alerts-${k}`, "aria-pressed": String(view.which === k), onclick: () => {
      view.which = k;
      for (const b of toggle.children) b.setAttribute("aria-pressed", String(b.id === `alerts-${k}`));
      load();
    } }, t(label))));
  let seq = 0;
  const load = async () => {
    const mine = ++seq;
    let r;
    try { r = await api("GET", `${P}/alerts?state=${view.which}&limit=200`); }
    catch (ex) { if (stillOn(nav) && mine === seq) err.textContent = ex.message; return; }
    if (!stillOn(nav) || mine !== seq) return;
    err.textContent = "";
    body.replaceChildren(...r.data.map((a) => h("tr", { "data-alert-id": a.id, "data-state": a.state, "data-kind": a.kind },
      h("td", {}, severityBadge(a.severity)), h("td.strong", {}, a.ruleName || a.ruleId),
      h("td", {}, h("button.link", { "data-action": "open-cluster", onclick: () => showCluster(a.clusterId, a.kind === "emqx_alarm" ? "alarms" : "monitoring").catch((ex) => announce(ex.message)) }, a.clusterName || clusterName(a.clusterId))),
      h("td", {}, a.subject || ""), h("td", {}, a.message),
      h("td", {}, when(a.startedAt)), h("td", {}, a.resolvedAt ? when(a.resolvedAt) : t("stillFiring")),
      h("td", {}, fmtDuration((a.resolvedAt ? Date.parse(a.resolvedAt) : Date.now()) - Date.parse(a.startedAt))))));
    if (!r.data.length) body.replaceChildren(h("tr.empty", {}, h("td", { colspan: 8 }, t(view.which === "firing" ? "noFiring" : "noResolved"))));
  };
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("h1", { id: "alerts-h" }, t("alerts")), h("span.spacer"), toggle),
    err,
    table("alerts-table", ["severity", "rule", "cluster", "subject", "message", "startedAt", "resolvedAt", "duration"], body, t("alerts")));
  await load();
  refreshWhileShown(nav, load, () => REFRESH_SECS);
}
