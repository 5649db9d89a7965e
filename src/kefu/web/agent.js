/* kefu agent console (/agent, the spec's ssoTo): a workstation page built on imclient.js.
 *
 * Everything goes through the kefu plugin on this computer (ws://127.0.0.1:1040;
 * ?plugin=ws://127.0.0.1:PORT for another port), as a bank's own workstation page
 * would: the login (startLogin), the sessions, the chat, the calls, the agent's
 * state. The plugin does the media (the call's video is in its window); the
 * console shows what it reports. No build step, no dependency.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var TOP = {
    "000": "not logged in", "001": "not ready", "002": "ready", "003": "calling out",
    "004": "incoming call", "005": "after-call work", "006": "in a two-party call",
    "007": "inviting a third party", "008": "in a three-party call"
  };
  var meanings = {};
  var ui = {
    client: null, state: "000000", agent: null, sessions: {}, order: [], current: null, logs: {},
    unread: {}, queue: [], ringing: null, call: null, lastImage: null, noted: {}
  };
  // why a session came to this agent from another (issue 20: sessionAssigned's transfer.reason)
  var TRANSFER_WHY = {
    transferred: "Transferred", agentLoggedOut: "Taken over (agent logged out)", agentLost: "Taken over (agent lost)",
    callTransferred: "Came with a transferred call"
  };
  window.kefuConsole = ui; // for tests and debugging

  fetch("/api/states").then(function (r) { return r.ok ? r.json() : []; }).then(function (rows) {
    rows.forEach(function (row) { meanings[row.code] = row.meaning; });
    showState(ui.state);
  }).catch(function () {});

  // ------------------------------------------------------------ helpers

  function pill(id, text, cls) { var el = $(id); el.textContent = text; el.className = "pill " + (cls || ""); }

  function clock(at) {
    return (at ? new Date(at) : new Date()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function meaning(code) { return meanings[code] || TOP[String(code).slice(0, 3)] || ""; }

  function timeline(code, what) {
    var li = document.createElement("li");
    var t = document.createElement("time"); t.textContent = clock();
    var c = document.createElement("span"); c.className = "code"; c.textContent = code || "";
    var w = document.createElement("span"); w.textContent = what;
    li.appendChild(t); li.appendChild(c); li.appendChild(w);
    $("timeline").insertBefore(li, $("timeline").firstChild);
    while ($("timeline").children.length > 200) $("timeline").removeChild($("timeline").lastChild);
  }

  function errorText(data) { return (data && data.error && (data.error.msg || data.error.code)) || "failed"; }

  // ------------------------------------------------------------ the agent's state

  function showState(code) {
    if (!code) return;
    ui.state = code;
    var top = code.slice(0, 3);
    $("state-code").textContent = code;
    $("state-meaning").textContent = meaning(code);
    $("state-top").textContent = code.slice(3) === "000" ? "" : TOP[top] || "";
    $("state-card").className = "panel state-card stack s" + top;
    var manual = top === "001" || top === "002" || top === "005";
    $("ready-btn").disabled = !manual || code === "002000";
    $("busy-btn").disabled = !manual || code === "001000";
    var connected = top === "006" || top === "007" || top === "008";
    $("snapshot-btn").disabled = !connected;
    $("photo-btn").disabled = !connected;
    $("share-btn").disabled = !connected;
    $("hangup-btn").disabled = !(connected || top === "003");
    $("third-visitor-btn").disabled = top !== "006";
    $("third-agent-btn").disabled = top !== "006";
    var canCall = top === "001" || top === "002" || top === "005";
    $("callout-btn").disabled = !canCall;
    $("video-chat-btn").disabled = !(canCall && ui.current);
    var label = top === "003" ? "calling…" : top === "004" ? "ringing" : top === "007" ? "inviting…" :
      connected ? "in call" : "no call";
    pill("call-pill", label, connected ? "ok" : (top === "003" || top === "004" || top === "007") ? "warn" : "");
    if (top !== "004") hideRinging();
    $("call-info").classList.toggle("hidden", !connected && top !== "007");
    $("video-note").classList.toggle("hidden", !connected);
    $("multi").textContent = top === "008" ? "yes" : "no";
  }

  // ------------------------------------------------------------ sessions and chat

  function say(sessionId, text, who, at) {
    if (!sessionId) return;
    var log = ui.logs[sessionId] || (ui.logs[sessionId] = []);
    log.push({ text: text, who: who, at: at });
    if (ui.current === sessionId) renderChat();
    else if (who === "them") { ui.unread[sessionId] = (ui.unread[sessionId] || 0) + 1; renderSessions(); }
  }

  function renderChat() {
    var el = $("log");
    el.textContent = "";
    (ui.logs[ui.current] || []).forEach(function (m) {
      var div = document.createElement("div");
      div.className = "msg " + m.who;
      var span = document.createElement("span"); span.textContent = m.text; div.appendChild(span);
      if (m.at && m.who !== "system") {
        var t = document.createElement("time"); t.textContent = clock(m.at).slice(0, 5); div.appendChild(t);
      }
      el.appendChild(div);
    });
    el.scrollTop = el.scrollHeight;
    var s = ui.sessions[ui.current];
    $("chat-with").textContent = s ? "· " + s.visitorName : "";
    var open = !!s;
    $("text").disabled = !open; $("send-btn").disabled = !open; $("close-chat-btn").disabled = !open;
    $("transfer-to").disabled = !open; $("transfer-note").disabled = !open; $("transfer-btn").disabled = !open;
    showState(ui.state);
  }

  function select(id) {
    ui.current = id;
    delete ui.unread[id];
    renderSessions(); renderChat();
  }

  function renderSessions() {
    var tbody = $("sessions");
    tbody.textContent = "";
    var ids = ui.order.filter(function (id) { return ui.sessions[id]; });
    $("session-count").textContent = ids.length;
    $("sessions-empty").classList.toggle("hidden", ids.length > 0);
    ids.forEach(function (id) {
      var s = ui.sessions[id];
      var tr = document.createElement("tr");
      if (id === ui.current) tr.className = "active";
      var td = document.createElement("td");
      var b = document.createElement("button");
      b.type = "button"; b.className = "link"; b.textContent = s.visitorName;
      b.setAttribute("aria-label", "Chat with " + s.visitorName);
      b.addEventListener("click", function () { select(id); });
      td.appendChild(b);
      var last = document.createElement("td");
      last.className = "muted";
      var logs = ui.logs[id] || [];
      last.textContent = logs.length ? logs[logs.length - 1].text.slice(0, 24) : "";
      var badge = document.createElement("td");
      if (ui.unread[id]) { var n = document.createElement("span"); n.className = "badge"; n.textContent = ui.unread[id]; badge.appendChild(n); }
      tr.appendChild(td); tr.appendChild(last); tr.appendChild(badge);
      tbody.appendChild(tr);
    });
  }

  function renderQueue() {
    var tbody = $("queue");
    tbody.textContent = "";
    $("queue-count").textContent = ui.queue.length;
    $("queue-empty").classList.toggle("hidden", ui.queue.length > 0);
    ui.queue.forEach(function (w) {
      var tr = document.createElement("tr");
      var name = document.createElement("td"); name.textContent = w.visitorName;
      var since = document.createElement("td"); since.className = "muted"; since.textContent = w.since ? clock(w.since).slice(0, 5) : "";
      var act = document.createElement("td");
      var b = document.createElement("button");
      b.type = "button"; b.className = "small"; b.textContent = "Pick up";
      b.setAttribute("aria-label", "Pick up " + w.visitorName);
      b.addEventListener("click", function () {
        ui.client.pickUpSession({
          session_id: w.sessionId,
          success: function (data) { addSession(data.payload); select(data.payload.sessionId); timeline(data.state, "picked up " + w.visitorName); },
          error: function (data) { timeline(data.state, "pick up failed: " + errorText(data)); }
        });
      });
      act.appendChild(b);
      tr.appendChild(name); tr.appendChild(since); tr.appendChild(act);
      tbody.appendChild(tr);
    });
  }

  function addSession(s, messages) {
    if (!s || !s.sessionId || s.status === "closed") return;
    var known = !!ui.sessions[s.sessionId];
    ui.sessions[s.sessionId] = s;
    if (!known) ui.order.push(s.sessionId);
    if (messages && !ui.logs[s.sessionId]) {
      ui.logs[s.sessionId] = messages.map(function (m) {
        return { text: m.text, who: m.from === "agent" ? "me" : m.from === "system" ? "system" : "them", at: m.at };
      });
    } else if (!ui.logs[s.sessionId] && s.lastMessage) {
      var m = s.lastMessage;
      ui.logs[s.sessionId] = [{ text: m.text, who: m.from === "agent" ? "me" : "them", at: m.at }];
    }
    if (!ui.current) ui.current = s.sessionId;
    renderSessions(); renderChat();
  }

  function dropSession(id) {
    delete ui.sessions[id];
    ui.order = ui.order.filter(function (x) { return x !== id; });
    if (ui.current === id) ui.current = ui.order[ui.order.length - 1] || null;
    renderSessions(); renderChat();
  }

  function refreshSessions() {
    ui.client.sessionState({
      success: function (data) {
        (data.payload.sessions || []).forEach(function (s) { if (s.status === "open") addSession(s); });
      }
    });
  }

  /** My open session with ``visitorName`` (a visitor's video request names the visitor). */
  function sessionOf(visitorName) {
    return ui.order.filter(function (id) {
      return ui.sessions[id] && ui.sessions[id].visitorName === visitorName;
    }).slice(-1)[0] || null;
  }

  /** The server's "current session" (videoInviteCurrentVisitor): the most recent open one. */
  function currentSessionOfServer() {
    return ui.order.filter(function (id) { return ui.sessions[id]; }).slice(-1)[0] || null;
  }

  // ------------------------------------------------------------ calls

  /** The v1204 callbacks of a call API, shown on the timeline (the codes come as state pushes too). */
  function callCallbacks(api, extra) {
    var names = ["success", "inviteSuccess", "acceptSuccess", "visitorRefuse", "visitorDisconnect", "videoBusyMark",
      "timeoutDisconnect", "kefuCloseVideoSuccess", "exitSuccess", "refuseSuccess", "error"];
    var cbs = {};
    names.forEach(function (n) {
      cbs[n] = function (data) {
        if (n === "error") timeline(data.state, api + ": " + errorText(data));
      };
    });
    Object.keys(extra || {}).forEach(function (k) { cbs[k] = extra[k]; });
    return cbs;
  }

  function onCall(p) {
    switch (p.what) {
      case "ringing":
        ring({ kind: "visitor", callId: p.callId, sessionId: p.sessionId, visitorName: p.visitorName });
        break;
      case "invited":
        ring({ kind: "agent", callId: p.callId, inviter: p.inviter, transfer: p.transfer });
        break;
      case "ended":
        ui.call = null;
        $("members").textContent = "—";
        $("sharing").textContent = "off";
        hideRinging();
        showTransfer(null);
        break;
      default:
        ui.call = p;
        showTransfer(p.transfer);
        if (p.members) {
          $("members").textContent = p.members.filter(function (m) { return m.status === "joined"; })
            .map(function (m) { return (m.kind === "agent" ? "agent " : "") + m.name; }).join(", ") || "—";
        }
    }
  }

  function ring(r) {
    ui.ringing = r;
    var t = r.transfer;  // issue 20: a call transferred to this agent rings like an invitation
    $("ringing-text").textContent = r.kind === "visitor"
      ? (r.visitorName || "A visitor") + " asks for a video call."
      : t
        ? "Agent " + t.from + (t.kind === "consult" ? " consults you about a call" : " transfers a call to you") +
          (t.note ? " — note: " + t.note : "") + "."
        : "Agent " + (r.inviter || "?") + " invites you into a video call.";
    $("ringing").classList.remove("hidden");
  }

  /** The transfer of the call in progress (issue 20), as the transferring agent sees it. */
  function showTransfer(t) {
    var mine = t && ui.agent && t.from === ui.agent.name;
    $("call-transfer").classList.toggle("hidden", !mine);
    if (!mine) return;
    var what = t.kind === "consult"
      ? (t.phase === "consulting" ? "Consulting " + t.to + "; the visitor is on hold." : "Calling " + t.to + "; the visitor is on hold.")
      : "Transferring the call to " + t.to + "…";
    $("call-transfer-text").textContent = what + (t.note ? " Note: " + t.note : "");
    $("transfer-complete-btn").disabled = !(t.kind === "consult" && t.phase === "consulting");
  }

  function hideRinging() { $("ringing").classList.add("hidden"); }

  function showImage(data, what) {
    var p = data.payload || {};
    if (p.base64) {
      $("shot").src = "data:" + (p.mime || "image/jpeg") + ";base64," + p.base64;
      $("shot").alt = what + " of " + (p.visitorName || "the visitor");
      $("shot-caption").textContent = what + " · " + (p.visitorName || "") + " · " + p.width + "×" + p.height;
      $("shot-box").classList.remove("hidden");
      ui.lastImage = { what: what, width: p.width, height: p.height };
    }
    timeline(data.state, what + " taken (" + p.width + "×" + p.height + ")");
  }

  var SUPERVISOR_MODE = {
    monitor: "is listening",
    whisper: "is whispering to you (the visitor does not hear)",
    barge: "is in the call (everyone hears)"
  };

  function supervisorText(p) {
    return "supervisor " + (p.supervisor || "?") + " " + (SUPERVISOR_MODE[p.mode] || "left the call");
  }

  // ------------------------------------------------------------ the plugin

  function start() {
    var base = params.get("plugin") || "ws://127.0.0.1:1040";
    var client = ui.client = new IMClient({
      baseWsUrl: base,
      ssoTo: location.origin + "/agent",
      videoBarVisible: true,
      // the console's own words are English: its errors follow the browser's language
      lang: /^zh\b/i.test(navigator.language || "") ? "zh" : "en",
      success: function () {
        pill("plugin-pill", "plugin: connected", "ok");
        $("login-hint").textContent = "Sign in with your agent account.";
        $("login-btn").disabled = false;
      },
      error: function (data) {
        pill("plugin-pill", "plugin: offline", "bad");
        $("login-btn").disabled = true;
        var code = data && data.error && data.error.code;
        $("login-hint").textContent = code === "controller_busy"
          ? "Another page controls the kefu plugin. Close it, then reload this page."
          : "The kefu plugin does not answer on " + base + ". Start it (kefu plugin) and this page connects by itself.";
      },
      ssoReady: function () {
        pill("server-pill", "service: signed out", "");
        signedOut();
      },
      kefuReady: function (data) {
        pill("server-pill", "service: connected", "ok");
        var p = data.payload || {};
        ui.agent = p.agent || null;
        if (p.state) showState(p.state);
        signedIn();
      },
      kefuWSClose: function (data) {
        var p = data.payload || {};
        pill("server-pill", p.reconnecting ? "service: reconnecting…" : "service: disconnected", "bad");
        timeline(null, "the plugin lost the service (" + (p.reason || "") + ")");
      },
      kefuWSOpen: function (data) {
        pill("server-pill", "service: connected", "ok");
        timeline((data.payload || {}).state, "the plugin is back on the service");
        refreshSessions();
      },
      quit: function () { pill("plugin-pill", "plugin: stopped", "bad"); }
    });
    client.initInnerCallBack({
      chatCloseCB: function (data) {
        var p = data.payload || {};
        var s = ui.sessions[p.sessionId];
        say(p.sessionId, p.by === "agent" ? "You closed the chat." : "The visitor left the chat.", "system");
        timeline(null, "chat with " + (s ? s.visitorName : "a visitor") + " closed by " + (p.by || "?"));
        dropSession(p.sessionId);
      },
      visitorStreamOffline: function (data) {
        var p = data.payload || {};
        timeline(null, "the video of " + (p.member || "a member") + " stopped (" + Math.round((p.offlineMs || 0) / 100) / 10 + " s)");
      },
      visitorStreamOnline: function (data) {
        timeline(null, "the video of " + ((data.payload || {}).member || "a member") + " is back");
      },
      // issue 20: a supervisor in the agent's call (the visitor hears of a barge only)
      supervisorChange: function (data) {
        var p = data.payload || {};
        var text = supervisorText(p);
        timeline(null, text);
        pill("supervisor-pill", text, p.mode ? "warn" : "");
      },
      stateChange: function (state, payload) {
        showState(state);
        var p = payload || {};
        var why = p.mark ? p.mark + (p.subMark ? " · " + p.subMark : "") : (p.event || "state");
        // a supervisor's change names them (issue 20): the agent sees who did it
        timeline(state, meaning(state) + " — " + why + (p.by ? " · by supervisor " + p.by : ""));
        if (p.by) pill("supervisor-pill", "supervisor " + p.by + ": " + (p.event || "changed your state"), "warn");
      },
      sessionAssigned: function (data) {
        var p = data.payload || {};
        addSession(p, p.messages);
        var t = p.transfer;
        if (t && ui.logs[p.sessionId]) {
          // issue 20: who handed it over, why, and their note (the visitor never sees it)
          var line = (TRANSFER_WHY[t.reason] || "Transferred") + " from " + t.from + (t.note ? ": " + t.note : "");
          if (!ui.noted[p.sessionId + line]) { ui.noted[p.sessionId + line] = true; say(p.sessionId, line, "system"); }
        }
        timeline(null, "new chat: " + p.visitorName + (t ? " (from " + t.from + ")" : ""));
      },
      sessionTransferred: function (data) {
        var p = data.payload || {};
        var s = ui.sessions[p.sessionId];
        var mine = p.reason === "transferred" && ui.agent && p.from === ui.agent.name; // the reply says it
        if (!mine) {
          timeline(null, "chat with " + (s ? s.visitorName : "a visitor") + " moved to " + (p.to || "the queue") +
            " (" + p.reason + ")");
        }
        dropSession(p.sessionId);
      },
      message: function (data) {
        var p = data.payload || {};
        if (p.from === "agent") return; // ours, shown when sent
        say(p.sessionId, p.text, p.from === "system" ? "system" : "them", p.at);
      },
      queue: function (data) {
        ui.queue = (data.payload && data.payload.waiting) || [];
        renderQueue();
      },
      call: function (data) { onCall(data.payload || {}); },
      share: function (data) {
        var st = (data.payload || {}).state;
        if (st === "open" || st === "close") $("sharing").textContent = st === "open" ? "on" : "off";
      }
    });
  }

  function signedIn() {
    $("login").classList.add("hidden");
    $("console").classList.remove("hidden");
    $("agent-name").textContent = ui.agent ? ui.agent.name : "";
    refreshSessions();
  }

  function signedOut() {
    $("console").classList.add("hidden");
    $("login").classList.remove("hidden");
    $("agent-name").textContent = "";
    ui.sessions = {}; ui.order = []; ui.current = null; ui.logs = {}; ui.queue = [];
    renderQueue(); renderSessions(); renderChat();
    showState("000000");
  }

  // ------------------------------------------------------------ wiring

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("login-name").value.trim();
    $("login-error").textContent = "";
    $("login-btn").disabled = true;
    var url = location.origin + "/doLogin?name=" + encodeURIComponent(name) +
      "&pwd=" + encodeURIComponent($("login-pwd").value) + "&returnTo=";
    ui.client.startLogin({
      minimize: $("login-min").checked,
      data: { url: url },
      success: function () { $("login-pwd").value = ""; $("login-btn").disabled = false; },
      error: function (err) {
        $("login-btn").disabled = false;
        $("login-error").textContent = err && err.code == -1 ? "The login timed out. Try again." : errorText(err);
      }
    });
  });

  $("ready-btn").addEventListener("click", function () {
    ui.client.setAgentState({ state: "idle", error: function (d) { timeline(d.state, "ready: " + errorText(d)); } });
  });
  $("busy-btn").addEventListener("click", function () {
    var p = { state: "busy", error: function (d) { timeline(d.state, "not ready: " + errorText(d)); } };
    if ($("busy-reason").value) p.reason = $("busy-reason").value;
    ui.client.setAgentState(p);
  });
  $("logout-btn").addEventListener("click", function () { ui.client.logout(); });

  $("chat-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("text").value;
    if (!text.trim() || !ui.current) return;
    $("text").value = "";
    var sid = ui.current;
    ui.client.sendMessage({
      session_id: sid, text: text,
      clientMsgId: "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7),
      success: function (data) { say(sid, text, "me", (data.payload || {}).at); },
      error: function (data) { say(sid, "Not sent: " + errorText(data), "system"); }
    });
  });
  $("transfer-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var sid = ui.current, s = ui.sessions[sid];
    if (!s) return;
    var p = {
      session_id: sid,
      success: function (data) {
        var to = (data.payload || {}).agentName || "the queue";
        timeline(null, "transferred " + s.visitorName + " to " + to);
        $("transfer-to").value = ""; $("transfer-note").value = "";
        dropSession(sid);
      },
      error: function (data) { say(sid, "Not transferred: " + errorText(data), "system"); }
    };
    if ($("transfer-to").value.trim()) p.agentName = $("transfer-to").value.trim();
    if ($("transfer-note").value.trim()) p.note = $("transfer-note").value.trim();
    ui.client.transferSession(p);
  });
  $("close-chat-btn").addEventListener("click", function () {
    if (ui.current) ui.client.chatClose({ session_id: ui.current });
  });
  $("video-chat-btn").addEventListener("click", function () {
    var s = ui.sessions[ui.current];
    if (!s) return;
    if (ui.current === currentSessionOfServer()) {
      ui.client.videoInviteCurrentVisitor(callCallbacks("videoInviteCurrentVisitor"));
    } else {
      ui.client.callbackToVisitor(Object.assign({ visitorName: s.visitorName, startVideo: true }, callCallbacks("callbackToVisitor")));
    }
  });
  $("pickup-btn").addEventListener("click", function () {
    var r = ui.ringing;
    if (!r) return;
    hideRinging();
    if (r.kind === "visitor") {
      var sid = r.sessionId || sessionOf(r.visitorName);
      ui.client.videoPickUp(Object.assign({ session_id: sid }, callCallbacks("videoPickUp")));
    } else {
      ui.client.multipleVideoPickUp(callCallbacks("multipleVideoPickUp"));
    }
  });
  $("decline-btn").addEventListener("click", function () {
    var r = ui.ringing;
    hideRinging();
    if (r && r.kind === "agent") ui.client.multipleVideoRefuse(callCallbacks("multipleVideoRefuse"));
    else ui.client.videoDisconnect(callCallbacks("videoDisconnect"));
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
  $("call-transfer-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var to = $("call-transfer-to").value.trim();
    if (!to) return;
    // "team:NAME" names a team's queue (a blind transfer there waits when nobody is ready, D50)
    var p = to.indexOf("team:") === 0 ? { teamName: to.slice(5) } : { agentName: to };
    p.mode = $("call-transfer-mode").value;
    if ($("call-transfer-note").value.trim()) p.note = $("call-transfer-note").value.trim();
    timeline(null, (p.mode === "consult" ? "consulting " : "transferring the call to ") + to);
    ui.client.transferCall(Object.assign(p, callCallbacks("transferCall", {
      transferSuccess: function (data) { timeline(data.state, "the call went to " + to); },
      queued: function (data) { timeline(data.state, "the call waits in the queue of " + to.slice(5)); },
      completeSuccess: function (data) { timeline(data.state, "the call went to " + to); },
      refuse: function (data) { timeline(data.state, to + " refused the transfer"); },
      timeoutDisconnect: function (data) { timeline(data.state, to + " did not answer the transfer"); },
      cancelSuccess: function (data) { timeline(data.state, "transfer cancelled"); },
      targetLeft: function (data) { timeline(data.state, to + " left; back with the visitor"); }
    })));
  });
  $("transfer-complete-btn").addEventListener("click", function () { ui.client.completeTransfer(callCallbacks("completeTransfer")); });
  $("transfer-cancel-btn").addEventListener("click", function () { ui.client.cancelTransfer(callCallbacks("cancelTransfer")); });
  $("hangup-btn").addEventListener("click", function () { ui.client.videoDisconnect(callCallbacks("videoDisconnect")); });
  $("snapshot-btn").addEventListener("click", function () {
    ui.client.snapshot({
      success: function (data) { showImage(data, "Snapshot"); },
      error: function (data) { timeline(data.state, "snapshot: " + errorText(data)); }
    });
  });
  $("photo-btn").addEventListener("click", function () {
    timeline(null, "asked the visitor for a photo");
    ui.client.takePhoto({
      success: function (data) { showImage(data, "Photo"); },
      error: function (data) { timeline(data.state, "photo: " + errorText(data)); }
    });
  });
  $("share-btn").addEventListener("click", function () {
    timeline(null, "asked the visitor to share the screen");
    ui.client.inviteShare({
      open: function () { $("sharing").textContent = "on"; timeline(null, "the visitor shares the screen"); },
      close: function () { $("sharing").textContent = "off"; timeline(null, "the screen share ended"); },
      error: function (data) { timeline(data.state, "screen share: " + errorText(data)); }
    });
  });

  showState("000000");
  renderQueue(); renderSessions();
  start();
})();
