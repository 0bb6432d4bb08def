// berth's dashboard: a client of the public API like any other. The token
// lives in sessionStorage (this tab only) and travels in a header; nothing
// the API returns is ever parsed as HTML (everything goes in as text).

const TOKEN_KEY = "berth.token";
const $ = (sel) => document.querySelector(sel);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let fleet = [];
let usage = {}; // sandbox id → { memory_used_bytes, tasks_running, tasks_queued }
let fleetAbort = null;
let current = null; // the sandbox view's id
let taskAbort = null;
let execAbort = null;

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(json) {
  const h = {};
  if (token) h.Authorization = `Bearer ${token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function failure(res) {
  let code = "http_" + res.status;
  let message = res.statusText || "request failed";
  try {
    const body = await res.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) {
    /* not the JSON error shape */
  }
  if (res.status === 401) showSignin(message);
  return new ApiError(res.status, code, message);
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

/** Server-Sent Events over fetch (EventSource cannot send a token). */
async function sse(method, path, body, signal, onEvent) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = { event: "message", data: [], id: null };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(val);
        else if (field === "event") event.event = val;
        else if (field === "id") event.id = val;
      }
      if (!event.data.length) continue;
      let data = event.data.join("\n");
      try {
        data = JSON.parse(data);
      } catch (_) {
        /* keep the text */
      }
      onEvent(event.event, data, event.id);
    }
  }
}

// ---------------------------------------------------------------- views

function show(id) {
  for (const s of ["signin", "fleet", "sandbox"]) $("#" + s).hidden = s !== id;
  $("#signout").hidden = id === "signin" || !token;
}

function showSignin(message) {
  if (fleetAbort) fleetAbort.abort();
  fleetAbort = null;
  show("signin");
  $("#signin-error").textContent = message && token ? message : "";
  $("#token").focus();
}

function setLive(text) {
  $("#live").textContent = text;
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function idleLeft(s) {
  if (s.status !== "running") return "";
  const idle = (Date.parse(s.last_active_at) || 0) + s.idle_timeout_s * 1000;
  const end = Math.max(idle, Date.parse(s.keepalive_until || "") || 0);
  const left = Math.round((end - Date.now()) / 1000);
  if (left <= 0) return "now";
  const m = Math.floor(left / 60);
  return m ? `${m}m ${left % 60}s` : `${left}s`;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function memoryText(s) {
  const used = (usage[s.id] || {}).memory_used_bytes;
  return used == null ? s.memory : `${bytes(used)} / ${s.memory}`;
}

function tasksText(s) {
  const u = usage[s.id] || {};
  if (u.tasks_running) return u.tasks_queued ? `${u.tasks_running} running, ${u.tasks_queued} queued` : `${u.tasks_running} running`;
  return u.tasks_queued ? `${u.tasks_queued} queued` : "–";
}

function usageLine(s) {
  return `memory ${memoryText(s)} · tasks ${tasksText(s)}`;
}

/** The usage cells change in place: no re-render, no layout jump. */
function renderUsage() {
  for (const tr of document.querySelectorAll("#fleet-table tbody tr")) {
    const s = fleet.find((x) => x.id === tr.dataset.id);
    if (!s) continue;
    tr.querySelector("td.use").textContent = memoryText(s);
    tr.querySelector("td.tasks-n").textContent = tasksText(s);
  }
  const s = current && currentSandbox();
  if (s) $("#sandbox-usage").textContent = usageLine(s);
}

function statusBadge(status) {
  return el("span", { class: `status s-${status}` }, status);
}

function previews(s) {
  return Object.entries(s.preview_urls || {}).map(([port, url]) =>
    el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, port),
  );
}

function sorted(list) {
  const by = $("#sort").value;
  const q = $("#filter").value.trim().toLowerCase();
  const shown = list.filter(
    (s) => !q || [s.id, s.image, s.status].some((v) => String(v).toLowerCase().includes(q)),
  );
  const key = {
    created: (s) => -Date.parse(s.created_at),
    status: (s) => s.status,
    id: (s) => s.id,
    active: (s) => -Date.parse(s.last_active_at),
  }[by];
  return shown.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function renderFleet() {
  const body = $("#fleet-table tbody");
  const rows = sorted([...fleet]).map((s) =>
    el(
      "tr",
      { "data-id": s.id },
      el("td", {}, el("a", { href: `#/s/${encodeURIComponent(s.id)}` }, s.id)),
      el("td", {}, statusBadge(s.status)),
      el("td", { class: "roomy" }, s.image),
      el("td", { class: "use roomy" }, memoryText(s)),
      el("td", { class: "tasks-n" }, tasksText(s)),
      el("td", { class: "ago roomy", "data-at": s.last_active_at }, ago(s.last_active_at)),
      el("td", { class: "idle", "data-id": s.id }, idleLeft(s)),
      el("td", { class: "links" }, previews(s)),
    ),
  );
  body.replaceChildren(...rows);
  $("#count").textContent = `(${fleet.length})`;
  $("#empty").hidden = fleet.length > 0;
  if (current) renderSandboxHeader();
}

/** The fleet stream: one connection for the list and the open sandbox. */
async function watchFleet() {
  if (fleetAbort) return;
  const abort = new AbortController();
  fleetAbort = abort;
  let wait = 500;
  while (!abort.signal.aborted) {
    try {
      await sse("GET", "/v1/fleet/events", undefined, abort.signal, (event, data) => {
        if (event === "usage") {
          usage = data.sandboxes || {};
          renderUsage();
          return;
        }
        if (event !== "sandboxes") return;
        fleet = data.sandboxes || [];
        setLive("live");
        wait = 500;
        renderFleet();
      });
    } catch (e) {
      if (abort.signal.aborted || e.status === 401) return;
    }
    setLive("reconnecting…");
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

// ---------------------------------------------------------------- create

function parseCreate(form) {
  const f = new FormData(form);
  const req = {};
  const ports = String(f.get("ports") || "")
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (ports.some((p) => !Number.isInteger(p))) throw new Error("ports are numbers, e.g. 3000, 5173");
  if (ports.length) req.ports = ports;
  for (const k of ["start", "image", "memory"]) {
    const v = String(f.get(k) || "").trim();
    if (v) req[k] = v;
  }
  const env = {};
  for (const line of String(f.get("env") || "").split("\n")) {
    if (!line.trim()) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`environment line "${line}" is not KEY=value`);
    env[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  if (Object.keys(env).length) req.env = env;
  if (f.get("private")) req.public = false;
  return req;
}

async function create(ev) {
  ev.preventDefault();
  const form = ev.target;
  const err = $("#create-error");
  err.textContent = "";
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const made = await api("POST", "/v1/sandboxes", parseCreate(form));
    form.reset();
    form.hidden = true;
    location.hash = `#/s/${encodeURIComponent(made.id)}`;
  } catch (e) {
    err.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- sandbox

function sandboxPath(rest = "") {
  return `/v1/sandboxes/${encodeURIComponent(current)}${rest}`;
}

function currentSandbox() {
  return fleet.find((s) => s.id === current);
}

function renderSandboxHeader() {
  const s = currentSandbox();
  $("#sandbox-title").textContent = current;
  const status = $("#sandbox-status");
  status.replaceChildren(s ? statusBadge(s.status) : statusBadge("gone"));
  $("[data-action=link]").hidden = !s || s.public;
  $("#sandbox-usage").textContent = s ? usageLine(s) : "";
  const tabs = $("#preview-tabs");
  const ports = s ? Object.keys(s.preview_urls || {}) : [];
  if (tabs.dataset.ports !== ports.join(",")) {
    tabs.dataset.ports = ports.join(",");
    tabs.replaceChildren(
      ...ports.map((p, i) =>
        el("button", { type: "button", role: "tab", "data-port": p, "aria-selected": i === 0, onclick: () => openPreview(p) }, `:${p}`),
      ),
    );
    $("#no-preview").hidden = ports.length > 0;
    $("#preview").hidden = ports.length === 0;
    if (ports.length) openPreview(ports[0]);
  }
}

async function openPreview(port) {
  const s = currentSandbox();
  if (!s) return;
  for (const b of $("#preview-tabs").children) b.setAttribute("aria-selected", b.dataset.port === port);
  let url = s.preview_urls[port];
  if (!s.public) {
    try {
      const t = await api("POST", sandboxPath("/preview-token"), {});
      url = t.urls[port] || url;
    } catch (e) {
      $("#sandbox-error").textContent = e.message;
    }
  }
  $("#preview").src = url;
}

/** After a task: the app may have changed, so the open preview loads again. */
function reloadPreview() {
  const tab = $("#preview-tabs [aria-selected=true]");
  if (tab) openPreview(tab.dataset.port);
}

async function openSandbox(id) {
  current = id;
  show("sandbox");
  $("#sandbox-error").textContent = "";
  $("#timeline").replaceChildren();
  $("#changes").hidden = true;
  $("#exec-output").hidden = true;
  $("#preview-tabs").dataset.ports = "-";
  if (!currentSandbox()) {
    try {
      const s = await api("GET", sandboxPath());
      fleet = [...fleet.filter((x) => x.id !== s.id), s];
    } catch (e) {
      $("#sandbox-error").textContent = e.message;
    }
  }
  renderSandboxHeader();
  loadTasks();
  $("#file-form").hidden = true;
  editing = null;
  loadDir("");
}

async function action(name) {
  const err = $("#sandbox-error");
  err.textContent = "";
  const destructive = { delete: "Delete", purge: "Purge (also its workspace and tasks)" }[name];
  if (destructive && !confirm(`${destructive} sandbox ${current}?`)) return;
  try {
    if (name === "delete") await api("DELETE", sandboxPath());
    else if (name === "link") {
      const t = await api("POST", sandboxPath("/preview-token"), {});
      const url = Object.values(t.urls)[0] || t.token;
      try {
        await navigator.clipboard.writeText(url);
      } catch (_) {
        /* no clipboard here (plain http, or refused): the link is shown */
      }
      err.textContent = `Preview link (copied): ${url}`;
    } else await api("POST", sandboxPath(`/${name}`), name === "keepalive" ? {} : undefined);
    if (name === "delete" || name === "purge") location.hash = "#/";
  } catch (e) {
    err.textContent = e.message;
  }
}

// ---------------------------------------------------------------- tasks

function fold(summary, value) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return el("details", {}, el("summary", {}, summary), el("pre", {}, text));
}

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text && text.length > 80 ? text.slice(0, 77) + "…" : text || "";
}

function eventItem(event, data) {
  switch (event) {
    case "message":
      return el("li", { class: "ev message" }, data.text);
    case "tool_call":
      return el("li", { class: "ev tool" }, fold(`⚙ ${data.name} ${short(data.input)}`, data.input));
    case "tool_result":
      return el("li", { class: `ev result${data.is_error ? " bad" : ""}` }, fold(data.is_error ? "✗ result" : "✓ result", data.output));
    case "status":
      return el("li", { class: "ev note" }, `${data.status}${data.phase ? ` · ${data.phase}` : ""}`);
    case "log":
      return el("li", { class: "ev note" }, `[${data.stream}] ${short(data.line)}`);
    case "error":
      return el("li", { class: "ev bad" }, `error: ${data.message}`);
    case "done":
      return el("li", { class: `ev done s-${data.status}` }, `done: ${data.status}`);
    default:
      return el("li", { class: "ev note" }, `${event}: ${short(data)}`);
  }
}

// Streamed items are added once per frame, together: a burst of events
// costs one layout, and a reader scrolled up is not pulled down.
const pending = new Map(); // list → items waiting for the next frame

function append(list, item) {
  if (!pending.has(list)) {
    pending.set(list, []);
    requestAnimationFrame(() => {
      const items = pending.get(list) || [];
      pending.delete(list);
      const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      list.append(...items);
      if (nearBottom) list.scrollTop = list.scrollHeight;
    });
  }
  pending.get(list).push(item);
}

async function followTask(task) {
  if (taskAbort) taskAbort.abort();
  const abort = new AbortController();
  taskAbort = abort;
  const timeline = $("#timeline");
  timeline.replaceChildren(el("li", { class: "ev prompt" }, task.prompt));
  $("#changes").hidden = true;
  let last = 0;
  for (let tries = 0; tries < 5 && !abort.signal.aborted; tries++) {
    try {
      let finished = false;
      await sse("GET", `${task.events_url}?last_event_id=${last}`, undefined, abort.signal, (event, data, id) => {
        last = Number(id) || last;
        append(timeline, eventItem(event, data));
        if (event === "done") finished = true;
      });
      if (finished) break;
    } catch (e) {
      if (abort.signal.aborted) return;
      append(timeline, el("li", { class: "ev bad" }, e.message));
    }
  }
  if (abort.signal.aborted) return;
  const done = await api("GET", sandboxPath(`/tasks/${encodeURIComponent(task.id)}`)).catch(() => task);
  const r = done.result || {};
  const facts = [done.status];
  if (r.duration_ms) facts.push(`${(r.duration_ms / 1000).toFixed(1)}s`);
  if (done.cost_usd != null) facts.push(`$${Number(done.cost_usd).toFixed(4)}`);
  append(timeline, el("li", { class: "ev summary" }, facts.join(" · ")));
  reloadPreview();
  loadDir(folder);
  const changed = Array.isArray(r.files_changed) ? r.files_changed : [];
  $("#changes").hidden = changed.length === 0;
  $("#changes-list").replaceChildren(...changed.map((f) => changeItem(done, f)));
  $("#revert").onclick = async () => {
    if (!confirm("Put the workspace back as it was before this task?")) return;
    try {
      await api("POST", sandboxPath(`/tasks/${encodeURIComponent(done.id)}/revert`));
      $("#changes").hidden = true;
      append(timeline, el("li", { class: "ev note" }, "reverted"));
      reloadPreview();
      loadDir(folder);
    } catch (e) {
      $("#sandbox-error").textContent = e.message;
    }
  };
  loadTasks();
}

/** One changed file: its diff is fetched when it is opened. */
function changeItem(task, f) {
  const pre = el("pre", { class: "diff" }, "loading…");
  const details = el("details", {}, el("summary", {}, el("span", { class: `change c-${f.change}` }, f.change), " ", f.path), pre);
  details.addEventListener("toggle", async () => {
    if (!details.open || pre.dataset.loaded) return;
    pre.dataset.loaded = "1";
    try {
      const d = await api("GET", sandboxPath(`/tasks/${encodeURIComponent(task.id)}/diff?path=${encodeURIComponent(f.path)}`));
      const file = d.files[0];
      pre.replaceChildren(...patchLines(file));
    } catch (e) {
      pre.dataset.loaded = "";
      pre.replaceChildren(el("span", { class: "del" }, e.message));
    }
  });
  return el("li", { "data-path": f.path }, details);
}

function patchLines(file) {
  if (!file) return ["no diff"];
  if (file.binary) return [el("span", { class: "head" }, "binary file: no text diff")];
  const lines = file.patch.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  let body = false;
  const out = lines.map((line) => {
    if (line.startsWith("@@")) body = true;
    const kind = !body ? "head" : line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
    return el("span", { class: kind }, line);
  });
  if (file.truncated) out.push(el("span", { class: "head" }, "… (cut: the diff is longer)"));
  return out;
}

async function loadTasks() {
  try {
    const { tasks } = await api("GET", sandboxPath("/tasks"));
    $("#tasks").replaceChildren(
      ...tasks.map((t) =>
        el("li", {}, el("button", { type: "button", class: "link", onclick: () => followTask(t) }, statusBadge(t.status), " ", short(t.prompt)), " ", el("span", { class: "muted" }, ago(t.created_at))),
      ),
    );
  } catch (_) {
    $("#tasks").replaceChildren();
  }
}

async function runTask(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const req = { prompt: String(f.get("prompt")) };
  for (const k of ["agent", "model", "check"]) {
    const v = String(f.get(k) || "").trim();
    if (v) req[k] = v;
  }
  $("#sandbox-error").textContent = "";
  try {
    const task = await api("POST", sandboxPath("/tasks"), req);
    followTask(task);
  } catch (e) {
    $("#sandbox-error").textContent = e.message;
  }
}

async function runExec(ev) {
  ev.preventDefault();
  const cmd = String(new FormData(ev.target).get("cmd") || "").trim();
  if (!cmd) return;
  if (execAbort) execAbort.abort();
  const abort = new AbortController();
  execAbort = abort;
  const out = $("#exec-output");
  out.hidden = false;
  out.replaceChildren(el("span", { class: "muted" }, `$ ${cmd}\n`));
  try {
    await sse("POST", sandboxPath("/exec/stream"), { cmd }, abort.signal, (event, data) => {
      if (event === "stdout") out.append(document.createTextNode(data.text));
      else if (event === "stderr") out.append(el("span", { class: "stderr" }, data.text));
      else if (event === "exit") out.append(el("span", { class: "muted" }, `\n[exit ${data.timed_out ? "timed out" : data.exit_code} · ${data.duration_ms} ms]`));
      else if (event === "error") out.append(el("span", { class: "stderr" }, `\n[error: ${data.message}]`));
    });
  } catch (e) {
    if (!abort.signal.aborted) out.append(el("span", { class: "stderr" }, `\n[${e.message}]`));
  }
}

// ---------------------------------------------------------------- files

let folder = "";
let editing = null; // the open file's path
let crlf = false; // the open file's lines end in CRLF (a textarea makes them LF)

function joinPath(dir, name) {
  return dir ? `${dir}/${name}` : name;
}

async function loadDir(dir) {
  folder = dir;
  const err = $("#files-error");
  err.textContent = "";
  const parts = dir ? dir.split("/") : [];
  $("#files-path").replaceChildren(
    el("button", { type: "button", class: "link", onclick: () => loadDir("") }, "workspace"),
    ...parts.flatMap((p, i) => ["/", el("button", { type: "button", class: "link", onclick: () => loadDir(parts.slice(0, i + 1).join("/")) }, p)]),
  );
  try {
    const listing = await api("GET", sandboxPath(`/files?path=${encodeURIComponent(dir || ".")}`));
    const entries = (listing.entries || []).slice().sort((a, b) => (a.type === "dir") === (b.type === "dir") ? a.name.localeCompare(b.name) : a.type === "dir" ? -1 : 1);
    $("#files-list").replaceChildren(
      ...entries.map((e) => {
        const path = joinPath(dir, e.name);
        const open = e.type === "dir" ? () => loadDir(path) : () => openFile(path);
        return el("li", { "data-name": e.name }, el("button", { type: "button", class: "link", onclick: open }, e.type === "dir" ? `${e.name}/` : e.name), e.type === "dir" ? null : el("span", { class: "size" }, bytes(e.size)));
      }),
    );
    if (!entries.length) $("#files-list").replaceChildren(el("li", { class: "muted" }, "empty"));
  } catch (e) {
    $("#files-list").replaceChildren();
    err.textContent = e.message;
  }
}

async function openFile(path) {
  const err = $("#files-error");
  err.textContent = "";
  try {
    const f = await api("GET", sandboxPath(`/files?path=${encodeURIComponent(path)}`));
    editing = path;
    $("#file-form").hidden = false;
    $("#file-name").textContent = path;
    const text = $("#file-text");
    if (f.encoding === "utf8") {
      crlf = f.content.includes("\r\n");
      text.value = f.content;
      text.readOnly = false;
      $("#file-note").textContent = `${bytes(f.size)}`;
    } else {
      text.value = "";
      text.readOnly = true;
      $("#file-note").textContent = `${bytes(f.size)}, not text: download it with the API (?raw=true).`;
    }
    text.focus();
  } catch (e) {
    err.textContent = e.message;
  }
}

async function saveFile(ev) {
  ev.preventDefault();
  if (!editing || $("#file-text").readOnly) return;
  try {
    const value = $("#file-text").value;
    const content = crlf ? value.replace(/\r?\n/g, "\r\n") : value;
    const w = await api("PUT", sandboxPath("/files"), { path: editing, content });
    $("#file-note").textContent = `saved, ${bytes(w.size)}`;
    loadDir(folder);
  } catch (e) {
    $("#files-error").textContent = e.message;
  }
}

async function upload(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  const path = joinPath(folder, file.name);
  try {
    const data = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
    await api("PUT", sandboxPath("/files"), { path, content: btoa(binary), encoding: "base64" });
    $("#files-error").textContent = "";
    $("#file-note").textContent = `uploaded ${path}`;
    loadDir(folder);
  } catch (e) {
    $("#files-error").textContent = e.message;
  } finally {
    ev.target.value = "";
  }
}

// ---------------------------------------------------------------- start

async function route() {
  const m = location.hash.match(/^#\/s\/(.+)$/);
  if (taskAbort && !m) taskAbort.abort();
  if (m) openSandbox(decodeURIComponent(m[1]));
  else {
    current = null;
    show("fleet");
  }
}

async function signIn(ev) {
  ev.preventDefault();
  token = $("#token").value.trim();
  try {
    await api("GET", "/v1/sandboxes");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    start();
  } catch (e) {
    token = "";
    $("#signin-error").textContent = e.status === 401 ? "That token is not valid." : e.message;
  }
}

async function start() {
  try {
    await api("GET", "/v1/sandboxes");
  } catch (e) {
    if (e.status === 401) return; // showSignin ran
    setLive(e.message);
  }
  watchFleet();
  route();
}

function init() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = "";
    showSignin();
  });
  $("#new").addEventListener("click", () => {
    $("#create").hidden = false;
    $("#create input[name=ports]").focus();
  });
  $("#create-cancel").addEventListener("click", () => ($("#create").hidden = true));
  $("#create").addEventListener("submit", create);
  $("#filter").addEventListener("input", renderFleet);
  $("#sort").addEventListener("change", renderFleet);
  $("#task-form").addEventListener("submit", runTask);
  $("#exec-form").addEventListener("submit", runExec);
  $("#file-form").addEventListener("submit", saveFile);
  $("#file-close").addEventListener("click", () => {
    $("#file-form").hidden = true;
    editing = null;
  });
  $("#upload").addEventListener("change", upload);
  for (const b of document.querySelectorAll("[data-action]")) b.addEventListener("click", () => action(b.dataset.action));
  window.addEventListener("hashchange", route);
  // Countdowns and "ago" tick in place: no re-render, no layout jump.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.ago")) td.textContent = ago(td.dataset.at);
    for (const td of document.querySelectorAll("td.idle")) {
      const s = fleet.find((x) => x.id === td.dataset.id);
      if (s) td.textContent = idleLeft(s);
    }
  }, 1000);
  start();
}

init();
