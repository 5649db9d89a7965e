/* kefu floor (/supervisor): the supervisor's live view of its teams.
 *
 * Signs in with POST /api/login (the token stays in the HttpOnly cookie), then
 * listens to /api/floor/stream (Server-Sent Events: each frame is the whole
 * floor, sent when something changed). Nothing is polled: the only timer
 * redraws the "in state" and "waiting" clocks from the last frame. Actions
 * (ready, not ready with a reason, log out) are POSTs to /api/agents/{name}/….
 *
 * Help in a call (issue 20) goes through the supervisor's own kefu plugin,
 * which makes its media (imclient.js, ws://127.0.0.1:1040 or ?plugin=URL):
 * signing in here also signs the plugin in; "Monitor" on an agent's row is
 * monitorCall, then Whisper, Barge and Leave (whisper, barge, leaveMonitor).
 * The floor shows where each supervisor helps and how ("supervising").
 * No build step, no dependency but imclient.js.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var ui = { frames: 0, last: null, lastAt: 0, skew: 0, source: null, reasons: [], client: null, helping: null };
  var params = new URLSearchParams(location.search);
  window.kefuFloor = ui; // for tests and measurements

  function show(id) {
    ["login", "floor", "refused"].forEach(function (s) { $(s).classList.toggle("hidden", s !== id); });
  }

  function pill(text, cls) { var el = $("live-pill"); el.textContent = text; el.className = "pill " + (cls || ""); }

  function errorText(data) { return (data && data.error && (data.error.msg || data.error.code)) || "failed"; }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    var s = Math.max(0, Math.round(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return (h ? h + ":" + two(m) : m) + ":" + two(r);
  }

  function since(iso) { return (Date.now() + ui.skew - new Date(iso).getTime()) / 1000; }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (text instanceof Node) td.appendChild(text); else td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function button(label, onClick) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "small"; b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function labelOf(code) {
    for (var i = 0; i < ui.reasons.length; i++) if (ui.reasons[i].code === code) return ui.reasons[i].label;
    return code;
  }

  // ------------------------------------------------------------ actions

  function act(name, path, body) {
    $("action-error").textContent = "";
    return fetch("/api/agents/" + encodeURIComponent(name) + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {})
    }).then(function (r) {
      if (!r.ok) return r.json().then(function (d) { $("action-error").textContent = name + ": " + errorText(d); });
    }).catch(function () { $("action-error").textContent = name + ": the server did not answer"; });
  }

  function actions(a) {
    var box = document.createElement("span");
    box.className = "row end";
    if (a.state === "000000") return box;
    box.appendChild(button("Ready", function () { act(a.name, "/state", { state: "idle" }); }));
    var sel = document.createElement("select");
    sel.setAttribute("aria-label", "reason for " + a.name);
    var none = document.createElement("option"); none.value = ""; none.textContent = "no reason"; sel.appendChild(none);
    ui.reasons.forEach(function (r) {
      var o = document.createElement("option"); o.value = r.code; o.textContent = r.label; sel.appendChild(o);
    });
    box.appendChild(sel);
    box.appendChild(button("Not ready", function () {
      act(a.name, "/state", sel.value ? { state: "busy", reason: sel.value } : { state: "busy" });
    }));
    box.appendChild(button("Log out", function () { act(a.name, "/logout"); }));
    if (a.calls.length && ui.client) box.appendChild(button("Monitor", function () { help("monitorCall", { agentName: a.name }); }));
    return box;
  }

  // ------------------------------------------------------------ help in a call (the plugin)

  function pluginPill(text, cls) { var el = $("plugin-pill"); el.textContent = text; el.className = "pill " + (cls || ""); }

  var HELP_TEXT = { monitor: "listening", whisper: "whispering to the agent", barge: "in the call (everyone hears)" };

  function helping(callId, mode) {
    ui.helping = mode ? { callId: callId, mode: mode } : null;
    $("help-state").textContent = mode ? HELP_TEXT[mode] + " · call " + String(callId).slice(0, 8) : "not in a call";
    ["whisper-btn", "barge-btn", "leave-btn"].forEach(function (id) { $(id).disabled = !mode; });
  }

  function help(api, options) {
    $("action-error").textContent = "";
    if (!ui.client) { $("action-error").textContent = api + ": no kefu plugin on this computer"; return; }
    ui.client[api](Object.assign({}, options || {}, {
      success: function (data) { var p = data.payload || {}; helping(p.callId, p.mode); },
      error: function (data) { $("action-error").textContent = api + ": " + errorText(data); }
    }));
  }

  $("whisper-btn").addEventListener("click", function () { help("whisper"); });
  $("barge-btn").addEventListener("click", function () { help("barge"); });
  $("leave-btn").addEventListener("click", function () { help("leaveMonitor"); });

  function connectPlugin() {
    if (ui.client || typeof IMClient === "undefined") return;
    ui.client = new IMClient({
      baseWsUrl: params.get("plugin") || "ws://127.0.0.1:1040",
      ssoTo: location.origin + "/agent",
      lang: /^zh\b/i.test(navigator.language || "") ? "zh" : "en",
      success: function () { pluginPill("plugin: connected", "ok"); },
      error: function () { pluginPill("plugin: offline", "bad"); },
      kefuReady: function () { pluginPill("plugin: signed in", "ok"); if (ui.last) drawAgents(ui.last.agents); }
    });
    ui.client.initInnerCallBack({
      call: function (data) {
        var p = data.payload || {};
        if (ui.helping && p.callId === ui.helping.callId && (p.what === "ended" || p.what === "left")) helping(null, null);
      }
    });
  }

  function signInPlugin(name, password) {
    if (!ui.client) return;
    ui.client.startLogin({
      data: { url: location.origin + "/doLogin?name=" + encodeURIComponent(name) + "&pwd=" + encodeURIComponent(password) + "&returnTo=" },
      error: function (err) { pluginPill("plugin: " + errorText(err), "bad"); }
    });
  }

  // ------------------------------------------------------------ drawing

  function drawAgents(agents) {
    var body = $("agents").tBodies[0];
    body.textContent = "";
    agents.forEach(function (a) {
      var tr = document.createElement("tr");
      tr.dataset.agent = a.name;
      tr.dataset.state = a.state;
      cell(tr, a.name + (a.role !== "agent" ? " (" + a.role + ")" : "") + (a.connected ? "" : " · offline"));
      cell(tr, a.teams.join(", "));
      var st = document.createElement("span");
      st.className = "state-pill s" + a.state.slice(0, 3);
      st.title = a.meaning;
      st.textContent = a.state + " " + a.meaning;
      cell(tr, st, "state");
      cell(tr, a.reason ? labelOf(a.reason) + (a.by ? " (by " + a.by + ")" : "") : "", "reason");
      var t = cell(tr, duration(since(a.stateSince)), "in-state");
      t.dataset.since = a.stateSince;
      cell(tr, a.openSessions + " / " + a.maxSessions, "sessions");
      // issue 20: the calls a supervisor helps in, and how
      var helping = (a.supervising || []).map(function (h) { return h.mode + " " + h.callId.slice(0, 8); });
      cell(tr, [a.calls.length ? String(a.calls.length) : ""].concat(helping).filter(Boolean).join(" · "), "calls");
      cell(tr, actions(a));
      body.appendChild(tr);
    });
  }

  function drawQueue(queue) {
    var body = $("queue").tBodies[0];
    body.textContent = "";
    queue.forEach(function (q, i) {
      var tr = document.createElement("tr");
      tr.dataset.session = q.sessionId;
      cell(tr, i + 1);
      cell(tr, q.visitorName);
      var t = cell(tr, duration(since(q.since)), "wait");
      t.dataset.since = q.since;
      body.appendChild(tr);
    });
    $("queue-count").textContent = "(" + queue.length + ")";
  }

  // D54: the calls waiting in a team's queue after a blind transfer (D50), each with its place there
  function drawCallQueue(queue) {
    var body = $("call-queue").tBodies[0];
    body.textContent = "";
    queue.forEach(function (q) {
      var tr = document.createElement("tr");
      tr.dataset.call = q.callId;
      tr.dataset.team = q.team;
      cell(tr, q.position);
      cell(tr, q.team, "team");
      cell(tr, q.visitorName || "");
      var t = cell(tr, duration(since(q.since)), "wait");
      t.dataset.since = q.since;
      body.appendChild(tr);
    });
    $("call-queue-count").textContent = "(" + queue.length + ")";
  }

  function drawMetrics(m) {
    $("m-sla-s").textContent = "(" + m.serviceLevelSeconds + " s)";
    $("m-sla").textContent = m.serviceLevel === null ? "—" : Math.round(m.serviceLevel * 100) + "%";
    $("m-answered").textContent = m.answered + " / " + m.offered;
    $("m-abandoned").textContent = String(m.abandoned);
    $("m-waiting").textContent = String(m.waiting);
    $("m-wait").textContent = duration(m.averageWait);
    $("m-handle").textContent = duration(m.averageHandle);
    var body = $("reasons").tBodies[0];
    body.textContent = "";
    m.notReady.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.reason = r.reason;
      cell(tr, r.label || r.reason);
      cell(tr, r.count);
      cell(tr, duration(r.seconds));
      body.appendChild(tr);
    });
  }

  function draw(frame) {
    ui.skew = new Date(frame.now).getTime() - Date.now();
    $("viewer-name").textContent = frame.viewer.name + (frame.viewer.admin ? " (admin)" : "");
    drawAgents(frame.agents);
    drawQueue(frame.queue);
    drawCallQueue(frame.callQueue || []);
    drawMetrics(frame.metrics);
    ui.frames += 1;
    ui.last = frame;
    ui.lastAt = performance.now();
  }

  // the clocks tick between frames (a redraw from the last frame, not a request)
  setInterval(function () {
    var cells = document.querySelectorAll("td[data-since]");
    for (var i = 0; i < cells.length; i++) cells[i].textContent = duration(since(cells[i].dataset.since));
  }, 1000);

  // ------------------------------------------------------------ the stream

  function listen() {
    if (ui.source) ui.source.close();
    pill("live: connecting…", "warn");
    var es = new EventSource("/api/floor/stream");
    ui.source = es;
    es.addEventListener("floor", function (ev) { draw(JSON.parse(ev.data)); pill("live", "ok"); });
    es.addEventListener("open", function () { pill("live", "ok"); });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED) { pill("live: stopped", "bad"); start(); }
      else pill("live: reconnecting…", "warn");
    });
  }

  function start() {
    // who am I? 401: sign in; 403: not a supervisor; 200: the floor
    fetch("/api/floor", { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (d) { return { status: r.status, body: d }; });
    }).then(function (res) {
      if (res.status === 401) { show("login"); pill("live: —"); return; }
      if (res.status !== 200) { show("refused"); $("refused-msg").textContent = errorText(res.body); pill("live: —"); return; }
      show("floor");
      fetch("/api/reasons", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : []; })
        .then(function (rows) { ui.reasons = rows; if (ui.last) drawAgents(ui.last.agents); });
      draw(res.body);
      listen();
    }).catch(function () { pill("live: server unreachable", "bad"); });
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    $("login-error").textContent = "";
    $("login-btn").disabled = true;
    var name = $("login-name").value.trim(), password = $("login-pwd").value;
    fetch("/api/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("login-name").value.trim(), password: $("login-pwd").value })
    }).then(function (r) {
      $("login-btn").disabled = false;
      if (!r.ok) return r.json().then(function (d) { $("login-error").textContent = errorText(d); });
      $("login-pwd").value = "";
      signInPlugin(name, password);  // the plugin makes the supervisor's media (help in a call)
      start();
    }).catch(function () { $("login-btn").disabled = false; $("login-error").textContent = "the server did not answer"; });
  });

  connectPlugin();
  start();
})();
