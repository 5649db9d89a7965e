/* kefu agent console (/agent, the spec's ssoTo): a workstation page built on imclient.js.
 * Everything goes through the plugin on this computer (ws://127.0.0.1:1040 by default,
 * ?plugin=ws://127.0.0.1:PORT to change it), as a bank's own workstation page would.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var meanings = {};
  var ui = { sessions: {}, current: null, logs: {}, client: null, ringing: null };
  window.kefuConsole = ui; // for tests and debugging

  fetch("/api/states").then(function (r) { return r.ok ? r.json() : []; }).then(function (rows) {
    rows.forEach(function (row) { meanings[row.code] = row.meaning; });
    showState(ui.state || "000000");
  }).catch(function () {});

  function pill(id, text, cls) { var el = $(id); el.textContent = text; el.className = "pill " + (cls || ""); }

  function timeline(code, what) {
    var li = document.createElement("li");
    var t = new Date().toLocaleTimeString();
    li.textContent = t + "  " + (code ? code + " " + (meanings[code] || "") + " — " : "") + what;
    $("timeline").insertBefore(li, $("timeline").firstChild);
  }

  function showState(code) {
    ui.state = code;
    $("state-code").textContent = code;
    $("state-meaning").textContent = meanings[code] || "";
    var top = code.slice(0, 3);
    $("ready-btn").disabled = !(top === "001" || top === "002" || top === "005");
    $("busy-btn").disabled = $("ready-btn").disabled;
    var inCall = top === "006" || top === "007" || top === "008";
    ["snapshot-btn", "photo-btn", "share-btn", "hangup-btn"].forEach(function (id) {
      $(id).disabled = !(inCall || top === "003" || (id === "hangup-btn" && top === "004"));
    });
    if (top !== "004") $("ringing").classList.add("hidden");
  }

  function say(sessionId, text, who) {
    var log = ui.logs[sessionId] || (ui.logs[sessionId] = []);
    log.push({ text: text, who: who });
    if (ui.current === sessionId) renderChat();
  }

  function renderChat() {
    var el = $("log");
    el.innerHTML = "";
    (ui.logs[ui.current] || []).forEach(function (m) {
      var div = document.createElement("div");
      div.className = "msg " + m.who;
      div.textContent = m.text;
      el.appendChild(div);
    });
    el.scrollTop = el.scrollHeight;
    var s = ui.sessions[ui.current];
    $("chat-with").textContent = s ? "with " + s.visitorName : "";
    var open = !!s;
    $("text").disabled = !open; $("send-btn").disabled = !open; $("close-chat-btn").disabled = !open;
  }

  function renderSessions() {
    var tbody = $("sessions");
    tbody.innerHTML = "";
    var ids = Object.keys(ui.sessions);
    $("session-count").textContent = ids.length;
    ids.forEach(function (id) {
      var s = ui.sessions[id];
      var tr = document.createElement("tr");
      if (id === ui.current) tr.className = "active";
      var td = document.createElement("td");
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = s.visitorName;
      b.addEventListener("click", function () { ui.current = id; renderSessions(); renderChat(); });
      td.appendChild(b);
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
  }

  function renderQueue(waiting) {
    var tbody = $("queue");
    tbody.innerHTML = "";
    $("queue-empty").classList.toggle("hidden", waiting.length > 0);
    waiting.forEach(function (w) {
      var tr = document.createElement("tr");
      var name = document.createElement("td"); name.textContent = w.visitorName;
      var since = document.createElement("td"); since.textContent = w.since ? new Date(w.since).toLocaleTimeString() : "";
      var act = document.createElement("td");
      var b = document.createElement("button");
      b.type = "button"; b.textContent = "Pick up";
      b.addEventListener("click", function () {
        ui.client.pickUpSession({
          session_id: w.sessionId,
          success: function (data) { addSession(data.payload); timeline(null, "picked up " + w.visitorName); },
          error: function (data) { timeline(null, "pick up failed: " + data.error.msg); }
        });
      });
      act.appendChild(b);
      tr.appendChild(name); tr.appendChild(since); tr.appendChild(act);
      tbody.appendChild(tr);
    });
  }

  function addSession(s) {
    if (!s || !s.sessionId) return;
    ui.sessions[s.sessionId] = s;
    if (!ui.current) ui.current = s.sessionId;
    renderSessions(); renderChat();
  }

  function refreshSessions() {
    ui.client.sessionState({
      success: function (data) {
        ui.sessions = {};
        (data.payload.sessions || []).forEach(function (s) {
          if (s.status === "open") ui.sessions[s.sessionId] = s;
        });
        if (ui.current && !ui.sessions[ui.current]) ui.current = null;
        if (!ui.current) ui.current = Object.keys(ui.sessions)[0] || null;
        renderSessions(); renderChat();
      }
    });
  }

  // The v1204 callbacks of the call APIs, logged on the timeline.
  function callCallbacks(what, extra) {
    var names = ["success", "inviteSuccess", "acceptSuccess", "visitorRefuse", "visitorDisconnect", "videoBusyMark",
      "timeoutDisconnect", "kefuCloseVideoSuccess", "exitSuccess", "visitorJoin", "error"];
    var cbs = {};
    names.forEach(function (n) {
      cbs[n] = function (data) {
        timeline(data.state, what + ": " + n + (data.error ? " — " + data.error.msg : ""));
      };
    });
    for (var k in extra) cbs[k] = extra[k];
    return cbs;
  }

  function start() {
    var base = params.get("plugin") || "ws://127.0.0.1:1040";
    var client = ui.client = new IMClient({
      baseWsUrl: base,
      ssoTo: location.origin + "/agent",
      videoBarVisible: true,
      success: function () {
        pill("plugin-pill", "plugin: connected", "ok");
        $("login-hint").textContent = "Sign in with your agent account.";
        $("login-btn").disabled = false;
        client.getState(function (state) { if (state && state !== "000000") loggedIn(); });
      },
      error: function (data) {
        pill("plugin-pill", "plugin: offline", "bad");
        $("login-hint").textContent = "The kefu plugin does not answer on " + base + ". Start it with `kefu plugin`.";
        $("login-btn").disabled = true;
        if (data && data.error) timeline(null, data.error.msg);
      },
      ssoReady: function () { pill("server-pill", "server: ready", "warn"); },
      kefuReady: function () { pill("server-pill", "server: signed in", "ok"); },
      kefuWSClose: function () { pill("server-pill", "server: reconnecting…", "bad"); timeline(null, "the plugin lost the server"); },
      kefuWSOpen: function () { pill("server-pill", "server: signed in", "ok"); timeline(null, "the plugin is back on the server"); refreshSessions(); },
      quit: function () { pill("plugin-pill", "plugin: quit", "bad"); }
    });
    client.initInnerCallBack({
      chatCloseCB: function (data) {
        var p = data.payload || {};
        say(p.sessionId, "The chat was closed (" + (p.by || "") + ").", "system");
        delete ui.sessions[p.sessionId];
        if (ui.current === p.sessionId) ui.current = Object.keys(ui.sessions)[0] || null;
        renderSessions(); renderChat();
      },
      videoCloseCB: function () { timeline(null, "video closed"); },
      visitorStreamOffline: function (data) {
        timeline(null, "a member's video stopped for more than 3 s (" + JSON.stringify(data.payload || {}) + ")");
      },
      stateChange: function (state, payload) {
        showState(state);
        timeline(state, (payload && payload.flow ? payload.flow + "." + payload.event : "state"));
        if (state === "004001" && payload && payload.event === "ring") ring("visitor", payload);
        if (state === "004002") ring("agent", payload || {});
        client.isMultipleVideo({ success: function (d) { $("multi").textContent = d.data ? "yes" : "no"; } });
      },
      sessionAssigned: function (data) { addSession(data.payload && (data.payload.session || data.payload)); },
      message: function (data) {
        var p = data.payload || {};
        say(p.sessionId, p.text, p.from === "agent" ? "me" : "them");
      },
      queue: function (data) { renderQueue((data.payload && data.payload.waiting) || []); }
    });
  }

  function ring(kind, payload) {
    ui.ringing = { kind: kind, payload: payload };
    $("ringing-text").textContent = kind === "visitor"
      ? (payload.visitorName || "A visitor") + " asks for video."
      : (payload.inviter || "An agent") + " invites you into a video call.";
    $("ringing").classList.remove("hidden");
  }

  function loggedIn() {
    $("login").classList.add("hidden");
    $("console").classList.remove("hidden");
    refreshSessions();
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("login-name").value.trim();
    $("agent-name").textContent = name;
    $("login-error").textContent = "";
    var url = location.origin + "/doLogin?name=" + encodeURIComponent(name) +
      "&pwd=" + encodeURIComponent($("login-pwd").value) + "&returnTo=";
    ui.client.startLogin({
      minimize: $("login-min").checked,
      data: { url: url },
      success: function () { $("login-pwd").value = ""; loggedIn(); },
      error: function (err) {
        $("login-error").textContent = err && err.code == -1 ? "The login timed out. Try again." : (err.error && err.error.msg);
      }
    });
  });

  $("ready-btn").addEventListener("click", function () {
    ui.client.setAgentState({ state: "idle" }, function (state) { timeline(state, "ready"); });
  });
  $("busy-btn").addEventListener("click", function () {
    var p = { state: "busy" };
    if ($("busy-reason").value) p.reason = $("busy-reason").value;
    ui.client.setAgentState(p, function (state) { timeline(state, "not ready"); });
  });
  $("logout-btn").addEventListener("click", function () {
    ui.client.logout(function (state) {
      timeline(state, "signed out");
      $("console").classList.add("hidden");
      $("login").classList.remove("hidden");
    });
  });
  $("chat-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("text").value;
    if (!text.trim() || !ui.current) return;
    $("text").value = "";
    var sid = ui.current;
    ui.client.sendMessage({
      session_id: sid, text: text,
      clientMsgId: "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7),
      success: function () { say(sid, text, "me"); },
      error: function (data) { say(sid, "Not sent: " + data.error.msg, "system"); }
    });
  });
  $("close-chat-btn").addEventListener("click", function () {
    if (ui.current) ui.client.chatClose({ session_id: ui.current });
  });
  $("pickup-btn").addEventListener("click", function () {
    var r = ui.ringing;
    if (!r) return;
    $("ringing").classList.add("hidden");
    if (r.kind === "visitor") {
      ui.client.videoPickUp(Object.assign({ session_id: r.payload.sessionId }, callCallbacks("videoPickUp")));
    } else {
      ui.client.multipleVideoPickUp(callCallbacks("multipleVideoPickUp"));
    }
  });
  $("decline-btn").addEventListener("click", function () {
    var r = ui.ringing;
    $("ringing").classList.add("hidden");
    if (r && r.kind === "agent") ui.client.multipleVideoRefuse(callCallbacks("multipleVideoRefuse"));
    else ui.client.videoDisconnect(callCallbacks("videoDisconnect"));
  });
  $("invite-current-btn").addEventListener("click", function () {
    ui.client.videoInviteCurrentVisitor(callCallbacks("videoInviteCurrentVisitor"));
  });
  $("callout-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("callout-name").value.trim();
    if (name) ui.client.callbackToVisitor(Object.assign({ visitorName: name, startVideo: true }, callCallbacks("callbackToVisitor")));
  });
  $("third-visitor-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("third-visitor").value.trim();
    if (name) ui.client.videoInviteVisitor(Object.assign({ visitorName: name }, callCallbacks("videoInviteVisitor")));
  });
  $("third-agent-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("third-agent").value.trim();
    if (name) ui.client.videoInviteAgent(Object.assign({ agentName: name }, callCallbacks("videoInviteAgent")));
  });
  $("hangup-btn").addEventListener("click", function () { ui.client.videoDisconnect(callCallbacks("videoDisconnect")); });

  function showImage(data, what) {
    var p = data.payload || {};
    if (p.image) {
      $("shot").src = "data:image/jpeg;base64," + p.image;
      $("shot").classList.remove("hidden");
    }
    timeline(null, what + (p.width ? " " + p.width + "×" + p.height : ""));
  }
  $("snapshot-btn").addEventListener("click", function () {
    ui.client.snapshot({
      success: function (data) { showImage(data, "snapshot"); },
      error: function (data) { timeline(null, "snapshot failed: " + data.error.msg); }
    });
  });
  $("photo-btn").addEventListener("click", function () {
    ui.client.takePhoto({
      success: function (data) { showImage(data, "photo"); },
      error: function (data) { timeline(null, "photo failed: " + data.error.msg); }
    });
  });
  $("share-btn").addEventListener("click", function () {
    ui.client.inviteShare({
      open: function () { $("sharing").textContent = "on"; timeline(null, "screen share on"); },
      close: function () { $("sharing").textContent = "off"; timeline(null, "screen share off"); },
      error: function (data) { timeline(null, "screen share: " + data.error.msg); }
    });
  });

  showState("000000");
  start();
})();
