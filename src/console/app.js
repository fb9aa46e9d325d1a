// ECP console: Workspace → Data Integration → Data Access.
// Text from outside (names, descriptions, addresses, anything an agent
// reports) only ever goes through textContent or attribute setters.
import { t, setLang, getLang } from "/console/i18n.js";
// The monitoring and alerting pages live in their own modules; they import
// the helpers below from this one (a cycle ES modules resolve: they only
// use them once this module has run).
import { showCluster, showOverview } from "/console/monitoring.js";
import { showRules, showChannels, showAlerts } from "/console/alerting.js";

export const ORG = "default", PROJECT = "default";
export const P = `/api/orgs/${ORG}/projects/${PROJECT}`;
// The session is an HttpOnly cookie: this script never holds the secret.
export const state = { loggedIn: false, clusters: new Map(), gone: new Map(), view: localStorage.getItem("ecp.view") || "cards", live: null, role: null, nav: 0, redraw: null, leaving: [] };
export const $ = (sel, root = document) => root.querySelector(sel);

/** Build an element: h("button.primary", {onclick, "data-x": 1}, "text", child…) */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  // Changes carry the console's own header (CSRF protection for cookie sessions).
  if (method !== "GET") headers["X-ECP-CSRF"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && path !== "/api/account/login") {
    logout(false);
    throw new ApiError(401, "UNAUTHORIZED", t("loginFailed"));
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) throw new ApiError(r.status, data?.code || "ERROR", data?.message || `HTTP ${r.status}`);
  return data;
}

export function announce(msg) { $("#live").textContent = msg; }

/** Enters a page: `redraw` draws it again (after a language change). The
 * number returned tells a page's timers whether it is still the one shown. */
export function enterPage(name, redraw) {
  for (const f of state.leaving.splice(0)) f();
  state.page = name;
  state.redraw = redraw ? { page: name, fn: redraw } : null;
  state.nav += 1;
  return state.nav;
}

/** `fn` runs when the page shown now is left (timers, charts). */
export function onLeave(fn) { state.leaving.push(fn); }

/** Whether the page entered as `nav` is still on screen. */
export function stillOn(nav) { return state.loggedIn && state.nav === nav; }

/** Runs `load` again every `secs()` seconds while the page entered as
 * `nav` is shown (skipped while the browser tab is hidden); leaving the
 * page ends it. */
export function refreshWhileShown(nav, load, secs) {
  let timer = null;
  onLeave(() => clearTimeout(timer));
  const again = () => { timer = setTimeout(async () => {
    if (!stillOn(nav)) return;
    if (!document.hidden) await load();
    if (stillOn(nav)) again();
  }, secs() * 1000); };
  if (stillOn(nav)) again();
}

/** Admins of the project change things; viewers only read (the server
 * refuses them anyway: this only keeps buttons they cannot use away). */
export function canWrite() { return state.role === "admin"; }

/** The caller's role on this console's project, as the server decides it
 * (src/policy.rs): system and org admins are admins; a project role counts
 * only with a membership of its org. */
export function roleOf(me, memberships) {
  if (me?.systemAdmin) return "admin";
  const ms = memberships || [];
  const org = ms.find((m) => m.orgId === ORG && !m.projectId);
  if (!org) return null;
  if (org.role === "admin") return "admin";
  return ms.find((m) => m.orgId === ORG && m.projectId === PROJECT)?.role || null;
}

export function backToAccess() { enterPage("access"); renderAccess(); }

// ------------------------------------------------------------------ language

function applyStatic() {
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("#lang").value = getLang();
  document.title = `ECP · ${t("dataAccess")}`;
}

// ------------------------------------------------------------------ login

function renderLogin(error) {
  $("#logout").hidden = true;
  const err = h("p.error", { role: "alert", id: "login-error" }, error || "");
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form.login", {
    onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = "";
      try {
        await api("POST", "/api/account/login", { username: user.value, password: pass.value });
        state.loggedIn = true;
        await showAccess();
      } catch (ex) {
        err.textContent = ex.status === 401 ? t("loginFailed") : ex.message;
      }
    },
  },
    h("h1", {}, t("login")),
    h("label", { for: "username" }, t("username")), user,
    h("label", { for: "password" }, t("password")), pass,
    err,
    h("button.primary", { type: "submit", id: "login-submit" }, t("login")));
  $("#main").replaceChildren(form);
  user.focus();
}

// ------------------------------------------------------------------ system management

async function showSystem() {
  enterPage("system");
  const main = $("#main");
  const orgName = h("input", { id: "org-name", maxlength: 50, "aria-label": t("name"), placeholder: t("name") });
  const orgErr = h("p.error", { role: "alert", id: "org-error" });
  const userName = h("input", { id: "user-name", maxlength: 64, "aria-label": t("username"), placeholder: t("username") });
  const userPass = h("input", { id: "user-pass", type: "password", autocomplete: "new-password", "aria-label": t("password"), placeholder: t("password") });
  const userErr = h("p.error", { role: "alert", id: "user-error" });
  const filter = h("input", { id: "audit-filter", placeholder: t("filterAction"), "aria-label": t("filterAction") });
  const orgs = h("tbody", { id: "orgs-body" });
  const users = h("tbody", { id: "users-body" });
  const audit = h("tbody", { id: "audit-body" });
  const projects = h("section", { id: "projects", "aria-labelledby": "projects-h" });
  const sys = { orgs: [], projects: new Map() };
  const loadOrgs = async () => {
    const r = await api("GET", "/api/orgs");
    sys.orgs = r.data;
    orgs.replaceChildren(...r.data.map((o) => h("tr", { "data-org": o.name }, h("td", {}, o.name), h("td", {}, when(o.createdAt)),
      h("td.actions", {},
        h("button.link", { "data-action": "projects", onclick: () => showProjects(o) }, t("projects")),
        h("button.link", { "data-action": "delete-org", onclick: () => confirmDelete(o.name, `/api/orgs/${encodeURIComponent(o.id)}`, async () => { projects.replaceChildren(); await loadOrgs(); }) }, t("delete"))))));
  };
  const loadUsers = async () => {
    const r = await api("GET", "/api/users");
    const label = (m) => {
      const org = sys.orgs.find((o) => o.id === m.orgId)?.name || m.orgId;
      const proj = m.projectId ? `/${[...sys.projects.values()].flat().find((p) => p.id === m.projectId)?.name || m.projectId}` : "";
      return `${org}${proj}: ${t(`role.${m.role}`)}`;
    };
    users.replaceChildren(...r.data.map((u) => h("tr", { "data-user": u.username }, h("td", {}, u.username), h("td", {}, u.systemAdmin ? t("yes") : t("no")),
      h("td.memberships", {}, u.memberships.map(label).join("; ") || t("unknown")),
      h("td.actions", {},
        h("button.link", { "data-action": "roles", onclick: () => openRoles(u) }, t("roles")),
        u.id === state.me?.id ? null : h("button.link", { "data-action": "delete-user", onclick: () => confirmDelete(u.username, `/api/users/${encodeURIComponent(u.id)}`, loadUsers) }, t("delete"))))));
  };
  const loadAudit = async () => {
    const q = new URLSearchParams({ size: "50" });
    if (filter.value) q.set("action", filter.value);
    const r = await api("GET", `/api/audit/operations?${q}`);
    audit.replaceChildren(...r.data.map((a) => h("tr", { "data-action": a.action }, h("td", {}, when(a.time)), h("td", {}, a.actorName), h("td", {}, a.action),
      h("td", {}, [a.objectType, a.objectName || a.objectId].filter(Boolean).join(" ")), h("td", {}, a.result), h("td", {}, a.address))));
  };
  const projectsOf = async (org) => {
    const r = await api("GET", `/api/orgs/${encodeURIComponent(org.id)}/projects`);
    sys.projects.set(org.id, r.data);
    return r.data;
  };
  const confirmDelete = (name, path, after) => {
    const err = h("p.error", { role: "alert", id: "confirm-error" });
    const dlg = dialog(t("deleteTitle", name), h("div", {}, h("p", {}, t("deleteConfirm", name)), err), [closeBtn(),
      h("button.danger", { value: "default", "data-action": "confirm-delete", onclick: async (e) => {
        e.preventDefault();
        try { await api("DELETE", path); dlg.close(); await after(); await loadAudit(); }
        catch (ex) { err.textContent = ex.message; }
      } }, t("delete"))], "confirm-dialog");
  };
  const showProjects = async (org) => {
    const name = h("input", { id: "project-name", maxlength: 50, "aria-label": t("name"), placeholder: t("name") });
    const err = h("p.error", { role: "alert", id: "project-error" });
    const body = h("tbody", { id: "projects-body" });
    const load = async () => {
      const list = await projectsOf(org);
      body.replaceChildren(...list.map((p) => h("tr", { "data-project": p.name }, h("td", {}, p.name), h("td", {}, when(p.createdAt)),
        h("td.actions", {}, h("button.link", { "data-action": "delete-project", onclick: () => confirmDelete(p.name, `/api/orgs/${encodeURIComponent(org.id)}/projects/${encodeURIComponent(p.id)}`, load) }, t("delete"))))));
    };
    projects.replaceChildren(h("h2", { id: "projects-h" }, t("projectsOf", org.name)),
      h("form.inline", { onsubmit: async (e) => {
        e.preventDefault(); err.textContent = "";
        try { await api("POST", `/api/orgs/${encodeURIComponent(org.id)}/projects`, { name: name.value }); name.value = ""; await load(); await loadAudit(); }
        catch (ex) { err.textContent = ex.message; }
      } }, name, h("button.primary", { type: "submit", id: "project-create" }, t("create"))), err,
      table(["name", "created", "actions"], body, t("projectsOf", org.name)));
    await load();
  };
  const openRoles = async (u) => {
    const orgSel = h("select", {}, ...sys.orgs.map((o) => h("option", { value: o.id }, o.name)));
    const projSel = h("select");
    const roleSel = h("select", {}, ...["admin", "viewer", "none"].map((r) => h("option", { value: r }, t(`role.${r}`))));
    const err = h("p.error", { role: "alert", id: "roles-error" });
    const fillProjects = async () => {
      const org = sys.orgs.find((o) => o.id === orgSel.value);
      const list = org ? await projectsOf(org) : [];
      projSel.replaceChildren(h("option", { value: "" }, t("wholeOrg")), ...list.map((p) => h("option", { value: p.id }, p.name)));
    };
    orgSel.addEventListener("change", fillProjects);
    await fillProjects();
    const dlg = dialog(t("rolesOf", u.username), h("div", {}, field("r-org", t("organization"), orgSel), field("r-project", t("project"), projSel),
      field("r-role", t("role"), roleSel), err), [closeBtn(),
      h("button.primary", { value: "default", "data-action": "save-role", onclick: async (e) => {
        e.preventDefault(); err.textContent = "";
        const org = encodeURIComponent(orgSel.value);
        const path = projSel.value ? `/api/orgs/${org}/projects/${encodeURIComponent(projSel.value)}/members/${encodeURIComponent(u.id)}` : `/api/orgs/${org}/members/${encodeURIComponent(u.id)}`;
        try { await api("PUT", path, { role: roleSel.value === "none" ? null : roleSel.value }); dlg.close(); await loadUsers(); await loadAudit(); }
        catch (ex) { err.textContent = ex.message; }
      } }, t("save"))], "roles-dialog");
  };
  const table = (cols, body, label) => h("table.list", { "aria-label": label }, h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", {}, t(c))))), body);
  main.replaceChildren(
    h("div.toolbar", {}, h("h1", {}, t("system"))),
    h("section", { "aria-labelledby": "orgs-h" }, h("h2", { id: "orgs-h" }, t("organizations")),
      h("form.inline", { onsubmit: async (e) => {
        e.preventDefault(); orgErr.textContent = "";
        try { await api("POST", "/api/orgs", { name: orgName.value }); orgName.value = ""; await loadOrgs(); await loadAudit(); }
        catch (ex) { orgErr.textContent = ex.message; }
      } }, orgName, h("button.primary", { type: "submit", id: "org-create" }, t("create"))), orgErr,
      table(["name", "created", "actions"], orgs, t("organizations"))),
    projects,
    h("section", { "aria-labelledby": "users-h" }, h("h2", { id: "users-h" }, t("users")),
      h("form.inline", { onsubmit: async (e) => {
        e.preventDefault(); userErr.textContent = "";
        try { await api("POST", "/api/users", { username: userName.value, password: userPass.value }); userName.value = ""; userPass.value = ""; await loadUsers(); await loadAudit(); }
        catch (ex) { userErr.textContent = ex.message; }
      } }, userName, userPass, h("button.primary", { type: "submit", id: "user-create" }, t("create"))), userErr,
      table(["username", "systemAdmin", "roles", "actions"], users, t("users"))),
    h("section", { "aria-labelledby": "audit-h" }, h("h2", { id: "audit-h" }, t("audit")),
      h("form.inline", { onsubmit: (e) => { e.preventDefault(); loadAudit(); } }, filter),
      table(["at", "operator", "action", "object", "result", "address"], audit, t("audit"))));
  await loadOrgs();
  await Promise.all(sys.orgs.map(projectsOf));
  await Promise.all([loadUsers(), loadAudit()]);
}

// ------------------------------------------------------------------ logs

const LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/** EMQX log lines of one cluster (id) or of the whole project (id null):
 * filters, newest first, paged, live tail. */
async function showLogs(id) {
  const c = id ? state.clusters.get(id) : null;
  const project = !id;
  const title = project ? t("projectLogs") : t("logsOf", c ? c.name : id);
  const nodeNames = [...new Set((project ? [...state.clusters.values()] : [c].filter(Boolean)).flatMap((x) => (x.nodeList || []).map((n) => n.name)))];
  enterPage("logs");
  if (state.tail) { clearInterval(state.tail); state.tail = null; }
  const level = h("select", { id: "log-level" }, h("option", { value: "" }, t("anyLevel")), ...LEVELS.map((l) => h("option", { value: l }, `≥ ${l}`)));
  const node = h("select", { id: "log-node" }, h("option", { value: "" }, t("anyNode")), ...nodeNames.map((n) => h("option", { value: n }, n)));
  const since = h("input", { id: "log-since", type: "datetime-local", step: "1" });
  const until = h("input", { id: "log-until", type: "datetime-local", step: "1" });
  const text = h("input", { id: "log-q", type: "search", placeholder: t("searchText") });
  const live = h("input", { id: "log-live", type: "checkbox" });
  const err = h("p.error", { role: "alert", id: "log-error" });
  const body = h("tbody", { id: "logs-body" });
  const more = h("button", { id: "log-more", hidden: true }, t("older"));
  let next = null, newest = project ? "" : 0, tailing = false;
  const query = () => {
    const q = new URLSearchParams({ limit: "100" });
    if (level.value) q.set("level", level.value);
    if (node.value) q.set("node", node.value);
    if (since.value) q.set("since", String(new Date(since.value).getTime()));
    if (until.value) q.set("until", String(new Date(until.value).getTime()));
    if (text.value) q.set("q", text.value);
    return q;
  };
  const rowOf = (l) => h("tr", { "data-seq": l.seq, "data-level": l.level },
    h("td.time", {}, l.time ? l.time.replace("T", " ").replace("Z", "") : t("unknown")),
    h("td", {}, h("span", { class: `lvl lvl-${l.level}` }, l.level)),
    project ? h("td", {}, state.clusters.get(l.clusterId)?.name || l.clusterId) : null,
    h("td", {}, l.node),
    h("td.msg", {}, l.message, Object.keys(l.fields || {}).length ? h("small", {}, " ", Object.entries(l.fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")) : null));
  const path = project ? `${P}/logs` : `${P}/clusters/${encodeURIComponent(id)}/logs`;
  const load = async (append) => {
    err.textContent = "";
    const q = query();
    if (append && next) q.set("cursor", next);
    try {
      const r = await api("GET", `${path}?${q}`);
      if (!append) { body.replaceChildren(); newest = project ? r.newest : (r.data[0]?.seq || newest); }
      body.append(...r.data.map(rowOf));
      if (!append && !r.data.length) body.replaceChildren(h("tr.empty", {}, h("td", { colspan: project ? 5 : 4 }, t("noLogs"))));
      next = r.next; more.hidden = !next;
    } catch (ex) { err.textContent = ex.message; }
  };
  const tail = async () => {
    if (state.page !== "logs") { clearInterval(state.tail); state.tail = null; return; }
    if (tailing) return;
    tailing = true;
    try {
      // Catch up in pages of 1000 until nothing newer is left.
      for (;;) {
        const q = query();
        q.set("after", String(newest));
        q.set("limit", "1000");
        const r = await api("GET", `${path}?${q}`);
        if (project) newest = r.newest;
        if (!r.data.length) break;
        body.querySelector("tr.empty")?.remove();
        for (const l of r.data) body.prepend(rowOf(l));
        if (!project) newest = r.data[r.data.length - 1].seq;
        while (body.children.length > 1000) body.lastElementChild.remove();
        if (r.data.length < 1000) break;
      }
    } catch (ex) { err.textContent = ex.message; }
    finally { tailing = false; }
  };
  live.addEventListener("change", () => {
    if (state.tail) { clearInterval(state.tail); state.tail = null; }
    if (live.checked) { tail(); state.tail = setInterval(tail, 1000); }
  });
  more.addEventListener("click", () => load(true));
  $("#main").replaceChildren(
    h("div.toolbar", {}, h("button.link", { id: "logs-back", onclick: backToAccess }, `← ${t("dataAccess")}`), h("h1", {}, title)),
    h("form.inline.filters", { id: "log-filters", onsubmit: (e) => { e.preventDefault(); load(false); } },
      h("label", {}, t("level"), level), h("label", {}, t("node"), node), h("label", {}, t("since"), since), h("label", {}, t("until"), until),
      text, h("button.primary", { type: "submit", id: "log-apply" }, t("apply")), h("label", {}, live, t("liveTail"))),
    err,
    h("table.list.logs", { "aria-label": title },
      h("thead", {}, h("tr", {}, ...["at", "level", ...(project ? ["cluster"] : []), "node", "message"].map((k) => h("th", { scope: "col" }, t(k))))), body),
    more);
  await load(false);
}

function logout(callServer = true) {
  if (callServer && state.loggedIn) fetch("/api/account/logout", { method: "POST", headers: { "X-ECP-CSRF": "1" } }).catch(() => {});
  state.loggedIn = false;
  state.me = null;
  state.role = null;
  enterPage("login");
  for (const el of document.querySelectorAll("header .views button")) el.hidden = true;
  if (state.live) state.live.abort();
  state.live = null;
  state.clusters.clear();
  renderLogin();
}

// ------------------------------------------------------------------ data access

async function showAccess() {
  $("#logout").hidden = false;
  if (!state.me) {
    try { state.me = await api("GET", "/api/account/profile"); } catch { state.me = null; }
  }
  if (state.me && !state.role) {
    try { state.role = roleOf(state.me, (await api("GET", `/api/users/${encodeURIComponent(state.me.id)}`)).memberships); }
    catch { state.role = state.me.systemAdmin ? "admin" : null; }
  }
  for (const el of document.querySelectorAll("header .views button")) el.hidden = false;
  $("#nav-system").hidden = !state.me?.systemAdmin;
  enterPage("access");
  const list = await api("GET", `${P}/clusters`);
  state.clusters = new Map(list.data.map((c) => [c.id, c]));
  renderAccess();
  startLive();
}

function renderAccess() {
  const toggle = h("div.toggle", { role: "group", "aria-label": `${t("cards")} / ${t("list")}` },
    h("button", { "aria-pressed": state.view === "cards", "data-view": "cards", onclick: () => setView("cards") }, t("cards")),
    h("button", { "aria-pressed": state.view === "list", "data-view": "list", onclick: () => setView("list") }, t("list")));
  const bar = h("div.toolbar", {},
    h("h1", {}, t("dataAccess")),
    h("span.spacer"),
    toggle,
    h("button", { id: "project-logs", onclick: () => showLogs(null).catch((ex) => announce(ex.message)) }, t("projectLogs")),
    h("button.primary", { id: "add-cluster", onclick: openCreate }, t("addCluster")));
  $("#main").replaceChildren(bar, h("section", { id: "clusters", "aria-live": "off" }));
  renderClusters();
}

function setView(v) {
  state.view = v;
  localStorage.setItem("ecp.view", v);
  renderAccess();
}

function sorted() { return [...state.clusters.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)); }

function renderClusters() {
  const box = $("#clusters");
  if (state.page === "system") return;
  if (!box) return;
  const all = sorted();
  if (!all.length) { box.replaceChildren(h("p.empty", {}, t("noClusters"))); return; }
  if (state.view === "list") {
    const head = h("tr", {}, ...["name", "status", "version", "nodes", "connections", "runningTime", "created", "actions"].map((k) => h("th", { scope: "col" }, t(k))));
    box.replaceChildren(h("table.list", {}, h("thead", {}, head), h("tbody", {}, ...all.map(row))));
  } else {
    box.replaceChildren(h("div.cards", {}, ...all.map(card)));
  }
}

function updateCluster(c) {
  // A late answer (or event) must not bring back a cluster already removed
  // (a cluster transferred back in later comes with a newer revision).
  if (state.gone.has(c.id) && c.revision <= state.gone.get(c.id)) return;
  state.gone.delete(c.id);
  state.clusters.set(c.id, c);
  const old = document.querySelector(`[data-cluster-id="${CSS.escape(c.id)}"]`);
  if (old) old.replaceWith(state.view === "list" ? row(c) : card(c));
  else renderClusters();
}

function removeCluster(id, revision = Number.MAX_SAFE_INTEGER) {
  state.gone.set(id, Math.max(revision, state.gone.get(id) ?? 0));
  state.clusters.delete(id);
  renderClusters();
}

function duration(iso) {
  if (!iso) return t("unknown");
  let s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  const d = Math.floor(s / 86400); s %= 86400;
  const hh = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${s % 60}s`;
}

export function when(iso) { return iso ? new Date(iso).toLocaleString(getLang() === "zh" ? "zh-CN" : "en-GB") : t("unknown"); }

function badge(c) {
  const label = t(`status.${c.status}`);
  if (c.status === "abnormal") {
    return h("button.badge.status-abnormal", { "data-status": c.status, "aria-haspopup": "dialog", onclick: () => openReason(c.id), title: t("reason") }, label);
  }
  return h(`span.badge.status-${c.status}`, { "data-status": c.status }, label);
}

function facts(c) {
  const e = c.emqx;
  return [
    [t("version"), e ? `${e.version} ${e.edition}` : t("unknown")],
    [t("nodes"), `${c.nodes.running}/${c.nodes.total}`],
    [t("connections"), `${c.connections.current}/${c.connections.max ?? "—"}`],
    [t("runningTime"), c.status === "running" ? duration(c.startedAt) : t("unknown")],
    [t("created"), when(c.createdAt)],
  ];
}

function actions(c) {
  const deleting = c.status === "deleting";
  const dash = !c.dashboard.available
    ? null
    : c.dashboard.via === "address"
      ? h("a.button", { href: c.dashboard.url, target: "_blank", rel: "noopener noreferrer", "data-action": "dashboard" }, t("enterDashboard"))
      // Through ECP: a capability for this cluster's dashboard on the
      // dashboard site (never this origin), opened without an opener.
      : h("button", { "data-action": "dashboard", onclick: () => enterDashboard(c.id) }, t("enterDashboard"));
  const why = dash || h("button", { "data-action": "dashboard-why", title: c.dashboard.why || "", "aria-label": `${t("enterDashboard")}: ${c.dashboard.why || ""}`, onclick: () => openInfo(t("dashboardWhy"), c.dashboard.why || "") }, `${t("enterDashboard")} ?`);
  return h("div.actions", {},
    h("button", { "data-action": "register", disabled: deleting, onclick: () => openGuide(c.id) }, t("registerNode")),
    why,
    h("button", { "data-action": "nodes", onclick: () => openNodes(c.id) }, t("viewNodes")),
    h("button", { "data-action": "monitoring", onclick: () => showCluster(c.id, "monitoring").catch((ex) => announce(ex.message)) }, t("monitoring")),
    h("button", { "data-action": "edit", disabled: deleting, onclick: () => openEdit(c.id) }, t("edit")),
    h("button", { "data-action": "history", onclick: () => openHistory(c.id) }, t("history")),
    h("button", { "data-action": "logs", onclick: () => showLogs(c.id).catch((ex) => announce(ex.message)) }, t("logs")),
    h("button.danger", { "data-action": "delete", disabled: deleting, onclick: () => openDelete(c.id) }, t("delete")));
}

async function enterDashboard(id) {
  try {
    const s = await api("POST", `${P}/clusters/${encodeURIComponent(id)}/dashboard-sessions`);
    window.open(s.url, "_blank", "noopener,noreferrer");
  } catch (ex) {
    announce(ex.message);
  }
}

function card(c) {
  return h("article.card", { "data-cluster-id": c.id, "data-cluster-name": c.name, "aria-label": c.name },
    h("header", {}, h("h2", {}, c.name), badge(c)),
    c.description ? h("p.desc", {}, c.description) : null,
    h("dl", {}, ...facts(c).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    c.serviceAddress ? h("p.addr", {}, c.serviceAddress) : null,
    actions(c));
}

function row(c) {
  const f = facts(c);
  return h("tr", { "data-cluster-id": c.id, "data-cluster-name": c.name },
    h("th", { scope: "row" }, c.name), h("td", {}, badge(c)),
    h("td", {}, f[0][1]), h("td", {}, f[1][1]), h("td", {}, f[2][1]), h("td", {}, f[3][1]), h("td", {}, f[4][1]),
    h("td", {}, actions(c)));
}

// ------------------------------------------------------------------ dialogs

export function dialog(title, body, buttons, id) {
  const dlg = h("dialog", { "aria-label": title, id },
    h("form", { method: "dialog", class: "dlg" },
      h("h2", {}, title),
      body,
      h("div.buttons", {}, ...buttons)));
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

export const closeBtn = () => h("button", { value: "cancel", formnovalidate: true, "data-action": "close" }, t("close"));

function openInfo(title, text) { dialog(title, h("p", {}, text), [closeBtn()], "info-dialog"); }

function openReason(id) {
  const c = state.clusters.get(id);
  if (!c || !c.reason) return;
  dialog(`${c.name}: ${t("status.abnormal")}`, h("dl.reason", {},
    h("dt", {}, t("reason")), h("dd", { id: "reason-code" }, t(`reason.${c.reason.code}`)),
    h("dd", { id: "reason-message" }, c.reason.message),
    h("dt", {}, t("since")), h("dd", {}, when(c.reason.since))), [closeBtn()], "reason-dialog");
}

function nameProblem(name) {
  if (!name.length) return t("nameRequired");
  if ([...name].length > 200) return t("nameTooLong");
  if (name.startsWith(" ") || name.endsWith(" ")) return t("nameSpaces");
  if (!/^[\p{L}\p{N} _-]+$/u.test(name)) return t("nameChars");
  return null;
}

export function field(id, label, input, hint) {
  input.id = id;
  return h("div.field", {}, h("label", { for: id }, label), input, hint ? h("small", { id: `${id}-hint` }, hint) : null);
}

function openCreate() {
  const name = h("input", { required: true, maxlength: 200, "aria-describedby": "c-name-hint" });
  const addr = h("input", { type: "url", placeholder: "http://10.0.0.1:18083" });
  const desc = h("textarea", { rows: 2 });
  const err = h("p.error", { role: "alert", id: "create-error" });
  const dlg = dialog(t("createTitle"), h("div", {}, field("c-name", t("name"), name, t("nameRules")), field("c-addr", t("serviceAddress"), addr), field("c-desc", t("description"), desc), err), [
    closeBtn(),
    h("button.primary", {
      value: "default", "data-action": "create",
      onclick: async (e) => {
        e.preventDefault();
        const problem = nameProblem(name.value);
        if (problem) { err.textContent = problem; name.focus(); return; }
        try {
          const c = await api("POST", `${P}/clusters`, { name: name.value, serviceAddress: addr.value, description: desc.value });
          updateCluster(c);
          dlg.close();
          announce(c.name);
        } catch (ex) { err.textContent = ex.message; }
      },
    }, t("confirm")),
  ], "create-dialog");
  name.focus();
}

function shQuote(v) { return /^[A-Za-z0-9_./:@=-]+$/.test(v) ? v : `'${v.replaceAll("'", `'\\''`)}'`; }

async function openGuide(id) {
  const c = state.clusters.get(id);
  let issued;
  try { issued = await api("POST", `${P}/clusters/${encodeURIComponent(id)}/registration-tokens`, {}); }
  catch (ex) { openInfo(t("guideTitle"), ex.message); return; }
  const radios = (name, values, current) => h("div.radios", { role: "radiogroup", "aria-label": t(name) }, ...values.map((v) =>
    h("label", {}, h("input", { type: "radio", name, value: v, checked: v === current, "data-choice": v }), t(v) === v ? v : t(v))));
  const platform = radios("platform", ["binary", "kubernetes"], "binary");
  const arch = radios("arch", ["amd64", "arm", "arm64"], "amd64");
  const archField = h("div.field", {}, h("span.label", {}, t("arch")), arch);
  const user = h("input", { value: "admin" });
  const pass = h("input", { type: "password", autocomplete: "off" });
  const enableLog = h("input", { type: "checkbox" });
  const logDir = h("input", { value: "/opt/emqx/log" });
  const dashUrl = h("input", { value: "http://127.0.0.1:18083" });
  const apiUrl = h("input", { value: "http://127.0.0.1:18083" });
  const steps = h("ol.steps", { id: "guide-steps" });
  const body = h("div.guide", {},
    h("p.token", {}, t("tokenNote", when(issued.expiresAt)), h("code", { id: "guide-token" }, issued.token)),
    h("div.field", {}, h("span.label", {}, t("platform")), platform), archField,
    h("fieldset", {}, h("legend", {}, t("nodeConfig")),
      field("g-user", t("username"), user), field("g-pass", t("password"), pass, t("passwordNote")),
      h("div.field.check", {}, enableLog, h("label", { for: "g-log" }, t("enableLog"))),
      field("g-logdir", t("logDir"), logDir), field("g-dash", t("dashboardUrl"), dashUrl), field("g-api", t("apiUrl"), apiUrl)),
    steps);
  enableLog.id = "g-log";
  dialog(`${t("guideTitle")} · ${c.name}`, body, [closeBtn()], "guide-dialog");
  let seq = 0;
  const render = async () => {
    const mine = ++seq;
    const plat = $("input[name=platform]:checked", platform).value;
    archField.hidden = plat !== "binary";
    const q = new URLSearchParams({ platform: plat, arch: $("input[name=arch]:checked", arch).value, username: user.value,
      enableLog: String(enableLog.checked), logDir: logDir.value, dashboardUrl: dashUrl.value, apiUrl: apiUrl.value });
    let r;
    try { r = await api("GET", `${P}/clusters/${encodeURIComponent(id)}/setup-instructions?${q}`); }
    catch (ex) { steps.replaceChildren(h("li.error", {}, ex.message)); return; }
    if (mine !== seq) return;
    const password = plat === "kubernetes" ? JSON.stringify(pass.value).slice(1, -1) : shQuote(pass.value || "<EMQX_DASHBOARD_PASSWORD>");
    const titles = { "Download the agent": "stepDownload", "Make it executable": "stepChmod", "Start the agent": "stepStart", "Register with ECP": "stepRegister", "Apply the manifest": "stepApply" };
    steps.replaceChildren(...r.steps.map((s, i) => {
      const text = s.command.replaceAll("<REGISTRATION_TOKEN>", issued.token).replaceAll("<EMQX_DASHBOARD_PASSWORD>", password);
      const code = h("pre", {}, h("code", { "data-step": i }, text));
      const copy = h("button", { type: "button", "data-action": "copy", "data-step": i, onclick: async () => {
        await copyText(text);
        copy.textContent = t("copied");
        setTimeout(() => (copy.textContent = t("copy")), 1500);
      } }, t("copy"));
      return h("li", {}, h("div.step-head", {}, h("span", {}, t(titles[s.title] || s.title)), copy), code);
    }));
  };
  body.addEventListener("input", render);
  body.addEventListener("change", render);
  await render();
}

export async function copyText(text) {
  try { await navigator.clipboard.writeText(text); }
  catch {
    const ta = h("textarea", { readonly: true, style: "position:fixed;opacity:0" });
    ta.value = text;
    document.body.append(ta); ta.select();
    try { document.execCommand("copy"); } finally { ta.remove(); }
  }
  window.__ecpLastCopied = text; // lets automated checks read what was copied
}

async function openNodes(id) {
  const c = state.clusters.get(id);
  let agents = [];
  try { agents = await api("GET", `${P}/clusters/${encodeURIComponent(id)}/agents`); } catch (ex) { openInfo(t("viewNodes"), ex.message); return; }
  const yn = (v) => (v === true ? t("yes") : v === false ? t("no") : t("unknown"));
  const err = h("p.error", { role: "alert" });
  // Revoke: a stolen credential stops working at once (two clicks).
  const revoke = (a) => {
    const b = h("button.danger", { type: "button", "data-action": "revoke", "data-agent-id": a.agentId, onclick: async () => {
      if (!b.dataset.armed) { b.dataset.armed = "1"; b.textContent = t("revokeConfirm"); return; }
      try {
        await api("DELETE", `${P}/clusters/${encodeURIComponent(id)}/agents/${encodeURIComponent(a.agentId)}`);
        b.closest("tr").remove();
        announce(t("revoked"));
      } catch (ex) { err.textContent = ex.message; }
    } }, t("revoke"));
    return b;
  };
  const body = agents.length
    ? h("table.list", {}, h("thead", {}, h("tr", {}, ...["nodes", "hostname", "agent", "connected", "emqxReachable", "lastSeen", "actions"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, ...agents.map((a) => h("tr", { "data-agent-id": a.agentId }, h("td", {}, a.nodeName), h("td", {}, a.hostname), h("td", {}, `${a.agentId.slice(0, 8)} (${a.agentVersion})`),
        h("td", {}, yn(a.connected)), h("td", {}, yn(a.emqxReachable)), h("td", {}, when(a.lastSeen)), h("td", {}, revoke(a))))))
    : h("p", {}, t("noAgents"));
  const nodes = c.nodeList || [];
  const emqxNodes = nodes.length
    ? h("table.list", { id: "emqx-nodes" }, h("thead", {}, h("tr", {}, ...["nodes", "status", "version", "connections"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, ...nodes.map((n) => h("tr", {}, h("td", {}, n.name), h("td", {}, n.running ? t("status.running") : t("nodeStopped")),
        h("td", {}, n.version || t("unknown")), h("td", {}, n.connections ?? t("unknown"))))))
    : null;
  dialog(t("nodesTitle", c.name), h("div", {}, emqxNodes, body, err), [closeBtn()], "nodes-dialog");
}

function openEdit(id) {
  const c = state.clusters.get(id);
  const name = h("input", { value: c.name, maxlength: 200 });
  const addr = h("input", { type: "url", value: c.serviceAddress });
  const err = h("p.error", { role: "alert" });
  const dlg = dialog(t("editTitle", c.name), h("div", {}, field("e-name", t("name"), name, t("nameRules")), field("e-addr", t("serviceAddress"), addr), err), [
    closeBtn(),
    h("button.primary", { value: "default", "data-action": "save", onclick: async (e) => {
      e.preventDefault();
      const problem = nameProblem(name.value);
      if (problem) { err.textContent = problem; return; }
      try { updateCluster(await api("PUT", `${P}/clusters/${encodeURIComponent(id)}`, { name: name.value, serviceAddress: addr.value })); dlg.close(); }
      catch (ex) { err.textContent = ex.message; }
    } }, t("save")),
  ], "edit-dialog");
}

function openDelete(id) {
  const c = state.clusters.get(id);
  const input = h("input", { autocomplete: "off", "aria-describedby": "delete-warn" });
  const err = h("p.error", { role: "alert" });
  const go = h("button.danger", { value: "default", disabled: true, "data-action": "confirm-delete", onclick: async (e) => {
    e.preventDefault();
    try {
      const r = await api("DELETE", `${P}/clusters/${encodeURIComponent(id)}`);
      updateCluster(r);
      dlg.close();
    } catch (ex) { err.textContent = ex.message; }
  } }, t("delete"));
  input.addEventListener("input", () => (go.disabled = input.value !== c.name));
  const dlg = dialog(t("deleteTitle", c.name), h("div", {}, h("p", { id: "delete-warn" }, t("deleteWarn")), h("p.strong", {}, c.name), field("d-name", t("name"), input), err), [closeBtn(), go], "delete-dialog");
  input.focus();
}

async function openHistory(id) {
  const c = state.clusters.get(id);
  let ev;
  try { ev = await api("GET", `${P}/clusters/${encodeURIComponent(id)}/events`); } catch (ex) { openInfo(t("history"), ex.message); return; }
  const body = h("table.list", {}, h("thead", {}, h("tr", {}, ...["at", "from", "to", "reason"].map((k) => h("th", {}, t(k))))),
    h("tbody", {}, ...ev.data.slice().reverse().map((e) => h("tr", {}, h("td", {}, when(e.at)), h("td", {}, t(`status.${e.from}`)), h("td", {}, t(`status.${e.to}`)),
      h("td", {}, e.reason ? `${t(`reason.${e.reason.code}`)}: ${e.reason.message}` : e.cause)))));
  dialog(t("historyTitle", c.name), body, [closeBtn()], "history-dialog");
}

// ------------------------------------------------------------------ live updates

function startLive() {
  if (state.live) state.live.abort();
  const ctl = new AbortController();
  state.live = ctl;
  let delay = 1000;
  const run = async (first) => {
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch("/api/events", { signal: ctl.signal });
        if (r.status === 401) { logout(false); return; }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        document.body.dataset.live = "up";
        if (!first) await resync();
        first = false;
        delay = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            onEvent(block);
          }
        }
      } catch (ex) {
        if (ctl.signal.aborted) return;
      }
      document.body.dataset.live = "down";
      announce(t("reconnecting"));
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
      first = false;
    }
  };
  run(true);
}

async function resync() {
  const list = await api("GET", `${P}/clusters`);
  state.clusters = new Map(list.data.map((c) => [c.id, c]));
  renderClusters();
}

function onEvent(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (event === "resync") { resync(); return; }
  if (event !== "cluster") return;
  let change;
  try { change = JSON.parse(data); } catch { return; }
  if (change.type === "upserted") {
    if (change.cluster.orgId !== ORG || change.cluster.projectId !== PROJECT) return;
    const known = state.clusters.get(change.cluster.id);
    if (!known || known.revision <= change.cluster.revision) updateCluster(change.cluster);
  } else if (change.type === "removed") {
    // Deleted, or transferred out of this project (to another, it is new there).
    if (change.orgId !== ORG || change.projectId !== PROJECT) return;
    removeCluster(change.clusterId, change.revision);
  }
}

// ------------------------------------------------------------------ start

$("#lang").addEventListener("change", (e) => {
  setLang(e.target.value);
  applyStatic();
  if (!state.loggedIn) renderLogin();
  else if (state.redraw && state.redraw.page === state.page) Promise.resolve(state.redraw.fn()).catch((ex) => announce(ex.message));
  else if (state.page === "system") showSystem();
  else backToAccess();
});
$("#nav-access").addEventListener("click", backToAccess);
$("#nav-system").addEventListener("click", () => showSystem().catch((ex) => announce(ex.message)));
for (const [id, show] of [["#nav-overview", showOverview], ["#nav-rules", showRules], ["#nav-channels", showChannels], ["#nav-alerts", showAlerts]]) {
  $(id).addEventListener("click", () => show().catch((ex) => announce(ex.message)));
}
$("#logout").addEventListener("click", () => logout(true));
setInterval(() => { if (state.loggedIn && state.view) renderClusters(); }, 30000);
setLang(getLang());
applyStatic();
// Still logged in (the cookie survives reloads)? Ask.
fetch("/api/account/profile").then((r) => {
  if (r.ok) { state.loggedIn = true; return showAccess(); }
  renderLogin();
}).catch(() => renderLogin());
