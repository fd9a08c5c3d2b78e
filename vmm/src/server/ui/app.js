// Cairn VMM web page. Everything the API returns is attacker-influenced (CVM names,
// contract reasons, guest reports, console logs): it is only ever put in the page as
// text (textContent / text nodes), never as HTML. The bearer token (needed on a
// non-loopback listener) is kept in sessionStorage and sent in the Authorization
// header, never in a URL.
"use strict";

const TOKEN_KEY = "cairn-vmm-token";
const REFRESH_MS = 3000;
const LOG_TAIL = 200;

const $ = (sel) => document.querySelector(sel);

// An element with text children only (strings become text nodes).
function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (resp.status === 401) {
    $("#token-form").hidden = false;
  }
  const type = resp.headers.get("content-type") || "";
  if (!resp.ok) {
    let code = "http_" + resp.status;
    let message = resp.statusText;
    if (type.startsWith("application/json")) {
      const j = await resp.json().catch(() => null);
      if (j && j.error) {
        code = String(j.error.code);
        message = String(j.error.message);
      }
    }
    throw new ApiError(resp.status, code, message);
  }
  if (resp.status === 204) return null;
  return type.startsWith("application/json") ? resp.json() : resp.text();
}

const enc = encodeURIComponent;

function fmtTime(unix) {
  if (!unix) return "";
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function shortHex(h) {
  const s = String(h || "");
  return s.length > 14 ? s.slice(0, 8) + "…" + s.slice(-4) : s;
}

// The chain's view of one CVM, from its pre-flight report: [css class, label, detail].
function chainStatus(app, report) {
  if (!app) return ["muted", "unknown", ""];
  if (!app.registered) return ["bad", "app not registered", ""];
  if (!report) return ["muted", "no report", ""];
  const checks = report.checks || [];
  const find = (name) => checks.find((c) => c.check === name) || {};
  const image = find("os_image");
  if (image.status === "fail") return ["bad", "OS image not allowed", image.reason || ""];
  const compose = find("compose_hash");
  switch (compose.status) {
    case "pass":
      return ["ok", "registered · compose allowed", "at block " + report.block_number];
    case "deferred":
      return ["ok", "registered · compose allowed", "rest judged by the KMS"];
    case "scheduled":
      return ["warn", "compose scheduled", "activates " + fmtTime(compose.activates_at)];
    case "fail":
      // A CVM passed the pre-flight when it was deployed: a hash refused now was revoked.
      return ["bad", "compose revoked", compose.reason || ""];
    default:
      return ["muted", "unknown", ""];
  }
}

function stateBadge(state) {
  return el("span", "badge state-" + String(state), String(state));
}

function actionButton(label, onClick, cls) {
  const b = el("button", cls || "", label);
  b.type = "button";
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    b.disabled = true;
    try {
      await onClick();
    } catch (e) {
      showError(e);
    } finally {
      b.disabled = false;
      refresh();
    }
  });
  return b;
}

function showError(e) {
  const box = $("#error");
  if (!e) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = e instanceof ApiError ? e.code + ": " + e.message : String(e);
}

// Console text without terminal colour codes and other control characters.
function plain(text) {
  return String(text || "")
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
}

let selected = null;

function selectFromHash() {
  const m = /^#cvm=([A-Za-z0-9-]{1,64})$/.exec(location.hash);
  selected = m ? m[1] : null;
}

function renderList(list, apps) {
  const byCvm = new Map();
  for (const app of apps ? apps.apps : []) {
    for (const c of app.cvms) byCvm.set(c.id, [app, c.preflight]);
  }
  const body = $("#cvms tbody");
  const rows = [];
  const counts = {};
  for (const c of list.cvms) {
    counts[c.state] = (counts[c.state] || 0) + 1;
    const [app, report] = byCvm.get(c.id) || [null, null];
    const [cls, label, detail] = apps
      ? chainStatus(app, report)
      : ["muted", "chain unavailable", ""];
    const last = c.last_event;
    const tr = el(
      "tr",
      selected === c.id || selected === c.name ? "selected" : "",
      el("td", "", el("div", "name", c.name), el("div", "muted mono", c.id)),
      el("td", "", stateBadge(c.state), c.reason ? el("div", "reason", c.reason) : null),
      el(
        "td",
        "progress",
        last ? el("div", "", el("span", "event", last.event), " ", last.payload) : "—",
        c.upgrade ? el("div", "muted", "upgrade: " + c.upgrade) : null,
      ),
      el("td", "", el("span", "chain " + cls, label), detail ? el("div", "muted", detail) : null),
      el(
        "td",
        "mono",
        c.ports.map((p) => p.guest_port + " → 127.0.0.1:" + p.host_port).join(", ") || "—",
      ),
      el("td", "", c.image, el("div", "muted mono", "app " + shortHex(c.app_id))),
    );
    tr.dataset.cvm = c.id;
    tr.dataset.state = c.state;
    const actions = el("td", "actions");
    const active = ["booting", "running"].includes(c.state);
    if (active) {
      actions.append(actionButton("Stop", () => api("POST", "/v1/cvms/" + enc(c.id) + "/stop")));
    } else {
      actions.append(actionButton("Start", () => api("POST", "/v1/cvms/" + enc(c.id) + "/start")));
    }
    actions.append(
      actionButton(
        "Remove",
        async () => {
          if (!confirm("Remove CVM " + c.name + "? Its directory is deleted.")) return;
          await api("DELETE", "/v1/cvms/" + enc(c.id));
          if (selected === c.id) location.hash = "";
        },
        "danger",
      ),
    );
    tr.append(actions);
    tr.addEventListener("click", () => {
      location.hash = "cvm=" + c.id;
    });
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $("#empty").hidden = list.cvms.length > 0;
  const order = ["running", "booting", "created", "stopped", "failed"];
  const parts = order.filter((s) => counts[s]).map((s) => counts[s] + " " + s);
  $("#summary").textContent =
    list.cvms.length + " CVM" + (list.cvms.length === 1 ? "" : "s") +
    (parts.length ? " (" + parts.join(", ") + ")" : "");
  return byCvm;
}

async function renderDetail(byCvm) {
  const box = $("#detail");
  if (!selected) {
    box.hidden = true;
    return;
  }
  let info;
  try {
    info = await api("GET", "/v1/cvms/" + enc(selected));
  } catch (e) {
    box.hidden = true;
    if (!(e instanceof ApiError && e.status === 404)) showError(e);
    return;
  }
  box.hidden = false;
  $("#detail-name").textContent = info.name;
  $("#detail-id").textContent = info.id;
  const reason = $("#detail-reason");
  reason.hidden = !info.reason;
  reason.textContent = info.reason || "";
  $("#detail-events").replaceChildren(
    ...info.events.map((e) =>
      el("li", "", el("span", "muted", fmtTime(e.at)), " ", el("span", "event", e.event), " ", e.payload),
    ),
  );
  if (info.events.length === 0) {
    $("#detail-events").replaceChildren(el("li", "muted", "no reports yet"));
  }
  const [, report] = byCvm.get(info.id) || [null, null];
  $("#detail-checks").replaceChildren(
    ...(report ? report.checks : []).map((k) =>
      el(
        "li",
        "",
        el("span", "check " + k.status, k.status),
        " ",
        k.check,
        k.reason ? el("span", "muted", " — " + k.reason) : null,
        k.activates_at ? el("span", "muted", " — activates " + fmtTime(k.activates_at)) : null,
      ),
    ),
  );
  try {
    const text = await api("GET", "/v1/cvms/" + enc(info.id) + "/logs?tail=" + LOG_TAIL);
    $("#detail-logs").textContent = plain(text) || "(empty)";
  } catch (e) {
    $("#detail-logs").textContent = "cannot read the log: " + e.message;
  }
}

let images = null;

async function loadImages() {
  const list = await api("GET", "/v1/images");
  const select = $("#deploy select[name=image]");
  select.replaceChildren(
    ...list.images.map((i) => {
      const allowed = i.allowed === true ? "allowed" : i.allowed === false ? "NOT allowed" : "unknown";
      const o = el("option", "", i.image + " (" + i.kind + ", " + allowed + " on chain)");
      o.value = i.image;
      return o;
    }),
  );
  images = list;
}

let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const list = await api("GET", "/v1/cvms");
    let apps = null;
    try {
      apps = await api("GET", "/v1/apps");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw e;
    }
    showError(null);
    const byCvm = renderList(list, apps);
    await renderDetail(byCvm);
    if (!images) await loadImages().catch(showError);
    document.body.dataset.loaded = "true";
  } catch (e) {
    showError(e);
  } finally {
    refreshing = false;
  }
}

function parsePorts(text) {
  const out = [];
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const n = Number(part);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error("ports: " + part + " is not a port");
    out.push({ guest_port: n });
  }
  return out;
}

async function deploy(ev) {
  ev.preventDefault();
  const f = ev.target;
  const result = $("#deploy-result");
  result.className = "";
  result.textContent = "deploying…";
  // Named form controls by name (`form.name` would be ambiguous with the form's own).
  const v = (n) => f.elements.namedItem(n).value;
  try {
    let env = v("encrypted_env").trim();
    if (env && !env.startsWith("0x")) env = "0x" + env;
    const req = {
      name: v("name").trim(),
      compose: v("compose"),
      image: v("image"),
      vcpus: Number(v("vcpus")),
      memory_mb: Number(v("memory_mb")),
      ports: parsePorts(v("ports")),
    };
    if (v("app_id").trim()) req.app_id = v("app_id").trim();
    if (env) req.encrypted_env = env;
    const cvm = await api("POST", "/v1/cvms", req);
    result.className = "chain ok";
    result.textContent = "deployed " + cvm.name + " (" + cvm.state + ")";
    location.hash = "cvm=" + cvm.id;
  } catch (e) {
    result.className = "chain bad";
    result.textContent = e instanceof ApiError ? e.code + ": " + e.message : String(e);
  }
  refresh();
}

function init() {
  selectFromHash();
  window.addEventListener("hashchange", () => {
    selectFromHash();
    refresh();
  });
  $("#refresh").addEventListener("click", refresh);
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#token-form").hidden = true;
    images = null;
    refresh();
  });
  $("#deploy").addEventListener("submit", deploy);
  $("#deploy input[name=compose_file]").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    if (file.size > 256 * 1024) {
      showError(new Error("compose: " + file.name + " is over 256 KiB"));
      return;
    }
    $("#deploy textarea[name=compose]").value = await file.text();
  });
  refresh();
  setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
