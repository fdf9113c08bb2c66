// The tinysse dashboard: reads the server's stats through its own SSE
// subscribe path (topic cfg.topic), tails a topic, publishes test messages.
// Plain JS, no dependencies; everything it needs is served by the binary.
"use strict";

const cfg = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const HISTORY = 120; // points kept per chart (seconds at the default interval)

// --- the login: a token kept in sessionStorage (this tab only), sent as
// Authorization: Bearer on every request -----------------------------------
const TOKEN_KEY = "tinysse-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

function showLogin(why) {
  $("login-error").textContent = why || "";
  $("login").hidden = false;
  $("login-token").focus();
}
function setToken(t) {
  token = t;
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  $("signed-in").hidden = !t;
  $("sign-out").hidden = !t;
  $("sign-in-open").hidden = !!t;
  statsStream.start();
  if (tail.ctrl) startTail();
}
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("login-token").value.trim();
  if (!t) return;
  $("login-token").value = "";
  $("login").hidden = true;
  setToken(t);
});
$("login-cancel").addEventListener("click", () => { $("login").hidden = true; });
// A pasted token can be read back before it is sent (hidden by default).
$("login-show").addEventListener("click", () => {
  const input = $("login-token"), show = input.type === "password";
  input.type = show ? "text" : "password";
  $("login-show").textContent = show ? "hide" : "show";
  $("login-show").setAttribute("aria-pressed", String(show));
  input.focus();
});
$("sign-in-open").addEventListener("click", () => showLogin(""));
$("sign-out").addEventListener("click", () => setToken(""));

// A refusal (401 without a good token, 403 without admin rights) stops a
// stream until the token changes, and asks for one.
class AuthError extends Error {}

// --- a server-sent events reader over fetch ------------------------------
// fetch (not EventSource) so that requests can carry the token header and
// every event name is seen. It parses the HTML Standard's stream format.
class Stream {
  constructor(url, onEvent, onState) {
    this.url = url; this.onEvent = onEvent; this.onState = onState;
    this.ctrl = null; this.retry = 1000; this.lastId = "";
  }
  start() { this.stop(); this.ctrl = new AbortController(); this.loop(this.ctrl); }
  stop() { if (this.ctrl) this.ctrl.abort(); this.ctrl = null; }
  async loop(ctrl) {
    while (!ctrl.signal.aborted) {
      try {
        const headers = authHeaders();
        if (this.lastId) headers["Last-Event-ID"] = this.lastId;
        const res = await fetch(this.url(), { headers, signal: ctrl.signal, cache: "no-store" });
        if (!res.ok) {
          let msg = res.status + "";
          try { msg += " " + (await res.json()).error; } catch (_) {}
          throw res.status === 401 || res.status === 403 ? new AuthError(msg) : new Error(msg);
        }
        this.onState(true, "");
        await this.read(res.body.getReader(), ctrl);
        this.onState(false, "stream ended");
      } catch (err) {
        if (ctrl.signal.aborted) return;
        this.onState(false, err.message || String(err));
        if (err instanceof AuthError) { showLogin(err.message); return; }
      }
      await new Promise((r) => setTimeout(r, this.retry));
    }
  }
  async read(reader, ctrl) {
    const dec = new TextDecoder();
    let buf = "", ev = { data: [], event: "", id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || ctrl.signal.aborted) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        if (buf[nl] === "\r" && nl + 1 === buf.length) break; // a \r\n may be split
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (ev.id !== null) this.lastId = ev.id;
          if (ev.data.length) this.onEvent({ event: ev.event || "message", data: ev.data.join("\n"), id: ev.id ?? this.lastId });
          ev = { data: [], event: "", id: null };
          continue;
        }
        if (line[0] === ":") continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? "" : line.slice(i + 1);
        if (val[0] === " ") val = val.slice(1);
        if (field === "data") ev.data.push(val);
        else if (field === "event") ev.event = val;
        else if (field === "id" && !val.includes("\0")) ev.id = val;
        else if (field === "retry" && /^\d+$/.test(val)) this.retry = Math.max(500, +val);
      }
    }
  }
}

function topicURL(topic) {
  return cfg.sub_path + (topic === "" ? "" : "?topic=" + encodeURIComponent(topic));
}

// --- charts: small line charts on canvas ---------------------------------
class Chart {
  constructor(canvas, color) { this.c = canvas; this.color = color; this.points = []; }
  push(v) { this.points.push(v); if (this.points.length > HISTORY) this.points.shift(); this.draw(); }
  draw() {
    const c = this.c, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pts = this.points, top = Math.max(1, ...pts) * 1.15;
    g.strokeStyle = "#263040"; g.lineWidth = 1; g.fillStyle = "#7d8a9c"; g.font = "11px system-ui";
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(h - 14 - f * (h - 24)) + 0.5;
      g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
      g.fillText(fmt(top * f), 4, y - 3);
    }
    if (pts.length < 2) return;
    const x = (i) => w - (pts.length - 1 - i) * (w / (HISTORY - 1));
    const y = (v) => h - 14 - (v / top) * (h - 24);
    g.beginPath();
    pts.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.strokeStyle = this.color; g.lineWidth = 2; g.stroke();
    g.lineTo(x(pts.length - 1), h - 14); g.lineTo(x(0), h - 14); g.closePath();
    g.globalAlpha = 0.12; g.fillStyle = this.color; g.fill(); g.globalAlpha = 1;
  }
}

function fmt(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 1 : 0);
}

const charts = { pub: new Chart($("chart-pub"), "#4fb3ff"), del: new Chart($("chart-del"), "#8bd17c"), subs: new Chart($("chart-subs"), "#f0b35a") };

// --- the stats feed ------------------------------------------------------
let prev = null;
function text(id, v) { $(id).textContent = v; }

function onStats(ev) {
  if (ev.event !== "stats") return;
  const s = JSON.parse(ev.data);
  const dt = prev ? Math.max(0.001, (s.t - prev.t) / 1000) : 0;
  const rate = (k) => (prev ? Math.max(0, s[k] - prev[k]) / dt : 0);
  text("subscribers", fmt(s.subscribers));
  text("topic-count", s.topic_count + " topic" + (s.topic_count === 1 ? "" : "s") + " · " + s.open_conns + " connections");
  text("conns", fmt(s.open_conns));
  text("conns-h1", fmt(s.open_conns - s.h2_conns));
  text("conns-h2", fmt(s.h2_conns));
  text("streams-h1", fmt(s.streams - s.h2_streams));
  text("streams-h2", fmt(s.h2_streams));
  text("pub-rate", prev ? fmt(rate("publishes")) : "–");
  text("del-rate", prev ? fmt(rate("deliveries")) : "–");
  text("publishes-total", String(s.publishes));
  text("deliveries-total", String(s.deliveries));
  text("lagged", String(s.closed.lagged));
  text("slow", String(s.closed.slow));
  text("timeouts", String(s.closed.timeout));
  text("expired", String(s.closed.expired));
  text("replays", String(s.replays));
  text("replay-gaps", String(s.replay_gaps));
  const rej = Object.entries(s.rejected).filter(([, n]) => n > 0);
  text("rejected", String(rej.reduce((a, [, n]) => a + n, 0)));
  text("rejected-detail", rej.map(([k, n]) => k.replace(/_/g, " ") + " " + n).join(" · "));
  text("heap", (s.runtime.heap_bytes / 1048576).toFixed(1) + " MiB");
  text("goroutines", fmt(s.runtime.goroutines));
  text("gc", fmt(s.runtime.gc_cycles));
  if (prev) { charts.pub.push(rate("publishes")); charts.del.push(rate("deliveries")); }
  charts.subs.push(s.subscribers);
  renderTopics(s);
  renderHooks(s, dt);
  prev = s;
}

function renderTopics(s) {
  const rows = s.topics.map((t) => ({ name: t.name === "" ? "(default stream)" : t.name, subs: t.subscribers, buf: t.buffered, mine: t.name === cfg.topic }));
  if (s.other_topics > 0) rows.push({ name: "other " + s.other_topics + " topics", subs: s.other.subscribers, buf: s.other.buffered, other: true });
  // Patterns subscribers hold (?topic=sports/*): their own subscribers, and
  // what their ring holds of the matching topics.
  for (const p of s.patterns || []) rows.push({ name: p.name, subs: p.subscribers, buf: p.buffered, pattern: true });
  if ((s.pattern_count || 0) > (s.patterns || []).length) rows.push({ name: "other " + (s.pattern_count - s.patterns.length) + " patterns", subs: 0, buf: 0, other: true });
  const top = Math.max(1, ...rows.map((r) => r.subs));
  const body = $("topics-body");
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    const name = cell(r.name, "name" + (r.other ? " muted" : ""));
    if (r.mine) name.title = "the dashboard's own feed";
    if (r.pattern) { const tag = document.createElement("span"); tag.className = "tag"; tag.textContent = "pattern"; name.append(" ", tag); name.title = "a pattern: its subscribers get every matching topic"; }
    const bar = document.createElement("div");
    bar.className = "bar"; bar.style.width = (100 * r.subs / top) + "%";
    const barCell = document.createElement("td"); barCell.style.width = "30%"; barCell.append(bar);
    tr.append(name, cell(fmt(r.subs), "num"), cell(r.buf + "/" + s.capacity, "num"), barCell);
    return tr;
  }));
  if (!rows.length) body.replaceChildren(rowNote("no topics yet", 4));
}

const hookHistory = {};
function renderHooks(s, dt) {
  const body = $("hooks-body");
  const live = s.hooks.filter((h) => h.calls > 0 || h.errors > 0);
  if (!live.length) { body.replaceChildren(rowNote(s.hooks.length ? "no hook called yet" : "no script hooks", 5)); return; }
  const p = prev ? Object.fromEntries(prev.hooks.map((h) => [h.name, h])) : {};
  body.replaceChildren(...live.map((h) => {
    const o = p[h.name] || h;
    const timed = h.timed - o.timed;
    const avg = timed > 0 ? ((h.seconds - o.seconds) / timed) * 1000 : null;
    const hist = (hookHistory[h.name] ||= []);
    if (prev) { hist.push(avg ?? 0); if (hist.length > 60) hist.shift(); }
    const tr = document.createElement("tr");
    const spark = document.createElement("td"); spark.append(sparkline(hist));
    tr.append(cell(h.name), cell(prev ? fmt((h.calls - o.calls) / dt) : "–", "num"), cell(String(h.errors), "num" + (h.errors ? " bad" : "")),
      cell(avg === null ? "–" : avg.toFixed(3), "num"), spark);
    return tr;
  }));
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg", w = 90, h = 18;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  const top = Math.max(0.001, ...values);
  const pts = values.map((v, i) => ((w * i) / 59).toFixed(1) + "," + (h - 1 - (v / top) * (h - 2)).toFixed(1)).join(" ");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts); line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#f0b35a"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

function cell(v, cls) { const td = document.createElement("td"); td.textContent = v; if (cls) td.className = cls; return td; }
function rowNote(msg, span) { const tr = document.createElement("tr"); const td = cell(msg, "muted"); td.colSpan = span; tr.append(td); return tr; }

const statsStream = new Stream(() => topicURL(cfg.topic), onStats, (up, why) => {
  const st = $("status");
  st.className = "status " + (up ? "on" : "off");
  st.textContent = up ? "live" : "disconnected" + (why ? ": " + why : "");
});

// --- the tail of a topic -------------------------------------------------
let tailTopic = "";
function addTail(ev, when) {
  const list = $("tail-list");
  const li = document.createElement("li");
  const t = document.createElement("span"); t.className = "time"; t.textContent = when;
  li.append(t);
  if (ev.id) { const id = document.createElement("span"); id.className = "id"; id.textContent = "#" + ev.id; li.append(id); }
  const e = document.createElement("span"); e.className = "ev"; e.textContent = ev.event; li.append(e);
  const d = document.createElement("span"); d.className = "data"; d.textContent = ev.data; li.append(d);
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}
const tail = new Stream(() => topicURL(tailTopic), (ev) => addTail(ev, new Date().toLocaleTimeString()), (up, why) => {
  text("tail-status", up ? "watching " + (tailTopic === "" ? "the default stream" : tailTopic) : "not connected" + (why ? ": " + why : ""));
});

// startTail shows the topic's recent messages at once (the server API's
// history, when it answers this page) and then follows it live, from the
// last of them when it has an id (the ring replays what came between).
async function startTail() {
  tail.stop();
  $("tail-list").replaceChildren();
  tail.lastId = "";
  if (cfg.api_path) {
    try {
      const q = tailTopic === "" ? "" : "topic=" + encodeURIComponent(tailTopic) + "&";
      const res = await fetch(cfg.api_path + "history?" + q + "limit=20", { headers: authHeaders(), cache: "no-store" });
      if (res.ok) {
        const msgs = (await res.json()).messages || [];
        for (const m of msgs) addTail({ event: m.event || "message", data: m.data ?? "", id: m.id || "" }, "earlier");
        if (msgs.length && msgs[msgs.length - 1].id) tail.lastId = msgs[msgs.length - 1].id;
      }
    } catch (_) { /* no history: live only */ }
  }
  tail.start();
}

$("tail-form").addEventListener("submit", (e) => {
  e.preventDefault();
  tailTopic = $("tail-topic").value.trim();
  startTail();
  if ($("pub-topic").value.trim() === "") $("pub-topic").value = tailTopic;
});

// --- publishing ----------------------------------------------------------
$("pub-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("pub-result");
  const msg = {};
  for (const k of ["topic", "event", "id", "data"]) {
    const v = $("pub-" + k).value;
    if (v !== "") msg[k] = v;
  }
  try {
    const res = await fetch(cfg.pub_path, { method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(msg) });
    const body = await res.json().catch(() => ({}));
    out.className = "small " + (res.ok ? "ok" : "err");
    out.textContent = res.ok ? "queued for " + body.subscribers + " subscriber" + (body.subscribers === 1 ? "" : "s")
      : res.status + " " + (body.error || res.statusText);
    if (res.status === 401 || res.status === 403) showLogin(out.textContent);
  } catch (err) {
    out.className = "small err";
    out.textContent = err.message || String(err);
  }
});

text("version", cfg.version ? "v" + cfg.version : "");
setToken(token); // starts the stats stream
startTail();
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.draw()));
