/* kefu visitor page: chat with an agent, video calls, screen share, photos.
 * Speaks the visitor socket (/ws/visitor, docs/protocol.md). No build step, no dependency.
 * The agent's plugin is the media hub: it sends the offers; this page answers them.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var store = window.localStorage;
  var params = new URLSearchParams(location.search);
  var state = {
    ws: null, name: null, key: null, lastSeq: 0, session: null, call: null,
    nextId: 1, pending: {}, backoff: 500, closing: false,
    pc: null, localStream: null, screenTrack: null, allowPhoto: true,
    remoteTiles: {}, iceServers: [],
  };
  window.kefuVisitor = state; // for tests and debugging

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function setConn(text, cls) {
    var el = $("conn");
    el.textContent = text;
    el.className = "pill " + (cls || "");
  }

  function say(text, who, at) {
    var div = document.createElement("div");
    div.className = "msg " + who;
    div.textContent = text;
    if (at && who !== "system") {
      var t = document.createElement("time");
      t.textContent = new Date(at).toLocaleTimeString();
      div.appendChild(t);
    }
    $("log").appendChild(div);
    $("log").scrollTop = $("log").scrollHeight;
  }

  function status(text) { $("status").textContent = text; }

  function request(mark, params) {
    return new Promise(function (resolve, reject) {
      if (!state.ws || state.ws.readyState !== 1) { reject(new Error("not connected")); return; }
      var id = "w" + state.nextId++;
      state.pending[id] = { resolve: resolve, reject: reject };
      state.ws.send(JSON.stringify({ v: 1, id: id, mark: mark, params: params || {} }));
    });
  }

  function connect() {
    setConn("connecting…", "warn");
    var ws = new WebSocket(wsUrl("/ws/visitor"));
    state.ws = ws;
    ws.onopen = function () {
      var hello = { name: state.name, lastSeq: state.lastSeq };
      if (state.key) hello.visitorKey = state.key;
      ws.send(JSON.stringify({ v: 1, id: "hello", mark: "hello", params: hello }));
    };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      handle(msg);
    };
    ws.onclose = function () {
      setConn("reconnecting…", "bad");
      state.ws = null;
      Object.keys(state.pending).forEach(function (id) {
        state.pending[id].reject(new Error("connection lost"));
      });
      state.pending = {};
      if (!state.closing) {
        setTimeout(connect, state.backoff);
        state.backoff = Math.min(state.backoff * 2, 10000);
      }
    };
  }

  function handle(msg) {
    if (msg.id === "hello") {
      if (msg.subMark === "error") {
        setConn("refused", "bad");
        say("Could not connect: " + msg.error.msg, "system");
        state.closing = true;
        return;
      }
      var p = msg.payload || {};
      state.key = p.visitorKey;
      store.setItem("kefu.visitor." + state.name, JSON.stringify({ key: state.key }));
      state.backoff = 500;
      setConn("connected", "ok");
      if (p.iceServers) state.iceServers = p.iceServers;
      setSession(p.session || null);
      return;
    }
    if (msg.id && state.pending[msg.id]) {
      var req = state.pending[msg.id];
      delete state.pending[msg.id];
      if (msg.subMark === "error") req.reject(msg.error); else req.resolve(msg);
      return;
    }
    if (typeof msg.seq === "number") {
      if (msg.seq <= state.lastSeq) return; // already seen
      state.lastSeq = msg.seq;
    }
    if (msg.mark === "event") onEvent(msg.subMark, msg.payload || {});
  }

  function setSession(session) {
    state.session = session;
    var open = session && session.status !== "closed";
    $("end-btn").disabled = !open;
    $("video-btn").disabled = !(open && session.status === "open");
    if (!session) status("Type a message to reach an agent.");
    else if (session.status === "queued") status("Waiting for an agent…");
    else if (session.status === "open") status("You are talking to " + (session.agentName || "an agent") + ".");
  }

  function onEvent(kind, p) {
    switch (kind) {
      case "queue":
        status(p.position ? "You are number " + p.position + " in the queue." : "Waiting for an agent…");
        break;
      case "sessionAssigned":
        setSession(p.session || p);
        say((p.agentName || (p.session && p.session.agentName) || "An agent") + " joined the conversation.", "system");
        break;
      case "message":
        if (p.from === "visitor") return; // our own, already shown
        say(p.text, "them", p.at);
        break;
      case "sessionClosed":
        say("The conversation was closed.", "system");
        setSession(null);
        break;
      case "call": onCall(p); break;
      case "signal": onSignal(p); break;
      case "shareRequest": $("share-dialog").showModal(); state.shareRequest = p; break;
      case "photoRequest": onPhotoRequest(p); break;
      default: break;
    }
  }

  // --- calls

  function onCall(p) {
    var what = p.what;
    if (what === "ringing") { status("Calling " + (p.agentName || "the agent") + "…"); state.call = { id: p.callId }; }
    else if (what === "invited") {
      state.call = { id: p.callId, invited: true };
      $("invite-text").textContent = (p.agentName || "An agent") + " invites you to a video call.";
      $("invite-dialog").showModal();
    } else if (what === "accepted") {
      // the agent picked up our request: join the meeting
      state.call = { id: p.callId };
      openCallView();
      request("joinCall", { callId: p.callId }).catch(function (e) { say("Could not join: " + e.msg, "system"); });
    } else if (what === "cancelled") {
      if ($("invite-dialog").open) $("invite-dialog").close();
      say("The video call did not take place (" + (p.reason || "cancelled") + ").", "system");
      endCallView();
    } else if (what === "memberJoined") {
      say((p.name || "Someone") + " joined the call.", "system");
    } else if (what === "memberLeft") {
      say((p.name || "Someone") + " left the call.", "system");
      removeTile(p.kind + ":" + p.name);
    } else if (what === "ended") {
      say("The video call ended.", "system");
      endCallView();
    }
  }

  function answer(kind) {
    $("invite-dialog").close();
    if (!state.call) return;
    if (kind === "accept") openCallView();
    request("answerCall", { callId: state.call.id, answer: kind }).catch(function (e) {
      say("Could not answer: " + e.msg, "system");
      endCallView();
    });
  }

  function openCallView() {
    $("call-panel").classList.remove("hidden");
    ensureLocalMedia();
  }

  function endCallView() {
    $("call-panel").classList.add("hidden");
    if (state.pc) { state.pc.close(); state.pc = null; }
    if (state.screenTrack) { state.screenTrack.stop(); state.screenTrack = null; }
    if (state.localStream) { state.localStream.getTracks().forEach(function (t) { t.stop(); }); state.localStream = null; }
    $("local-video").srcObject = null;
    Object.keys(state.remoteTiles).forEach(removeTile);
    $("share-stop-btn").classList.add("hidden");
    state.call = null;
    setSession(state.session);
  }

  function ensureLocalMedia() {
    if (state.localStream) return Promise.resolve(state.localStream);
    return navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } })
      .then(function (stream) {
        state.localStream = stream;
        $("local-video").srcObject = stream;
        return stream;
      })
      .catch(function (e) {
        say("Camera or microphone unavailable: " + e.message, "system");
        state.localStream = new MediaStream();
        return state.localStream;
      });
  }

  function addTile(key, stream, label) {
    var v = state.remoteTiles[key];
    if (!v) {
      v = document.createElement("video");
      v.autoplay = true; v.playsInline = true;
      v.setAttribute("aria-label", label);
      $("remote-tiles").appendChild(v);
      state.remoteTiles[key] = v;
    }
    v.srcObject = stream;
  }

  function removeTile(key) {
    var v = state.remoteTiles[key];
    if (v) { v.remove(); delete state.remoteTiles[key]; }
  }

  function waitIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var done = function () { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000); // gather what we have
    });
  }

  function peer(from) {
    if (state.pc) return state.pc;
    var pc = new RTCPeerConnection({ iceServers: state.iceServers });
    state.pc = pc;
    state.hub = from;
    pc.ontrack = function (ev) {
      var stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      addTile(stream.id, stream, "Video of the call");
    };
    return pc;
  }

  function onSignal(p) {
    if (!state.call || p.callId !== state.call.id) return;
    var data = p.data || {};
    if (data.type === "offer") {
      var pc = peer(p.from);
      ensureLocalMedia().then(function (stream) {
        var senders = pc.getSenders();
        stream.getTracks().forEach(function (t) {
          if (!senders.some(function (s) { return s.track === t; })) pc.addTrack(t, stream);
        });
        return pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
      }).then(function () { return pc.createAnswer(); })
        .then(function (a) { return pc.setLocalDescription(a); })
        .then(function () { return waitIce(pc); })
        .then(function () {
          return request("signal", { callId: state.call.id, to: p.from, data: { type: "answer", sdp: pc.localDescription.sdp } });
        })
        .catch(function (e) { say("Media error: " + (e.message || e.msg), "system"); });
    } else if (data.type === "answer" && state.pc) {
      state.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
    }
  }

  function renegotiate() {
    var pc = state.pc;
    return pc.createOffer()
      .then(function (o) { return pc.setLocalDescription(o); })
      .then(function () { return waitIce(pc); })
      .then(function () {
        return request("signal", { callId: state.call.id, to: state.hub, data: { type: "offer", sdp: pc.localDescription.sdp } });
      });
  }

  function startShare() {
    $("share-dialog").close();
    var req = state.shareRequest || {};
    if (!state.pc || !state.call) { request("shareAnswer", { callId: req.callId, answer: "error" }); return; }
    navigator.mediaDevices.getDisplayMedia({ video: true }).then(function (stream) {
      var track = stream.getVideoTracks()[0];
      state.screenTrack = track;
      state.pc.addTrack(track, stream);
      track.onended = stopShare;
      $("share-stop-btn").classList.remove("hidden");
      return renegotiate().then(function () {
        return request("shareAnswer", { callId: state.call.id, answer: "open", trackId: track.id });
      });
    }).catch(function () {
      request("shareAnswer", { callId: req.callId, answer: "refuse" });
    });
  }

  function stopShare() {
    var track = state.screenTrack;
    if (!track) return;
    state.screenTrack = null;
    track.stop();
    $("share-stop-btn").classList.add("hidden");
    if (state.pc) {
      state.pc.getSenders().forEach(function (s) { if (s.track === track) state.pc.removeTrack(s); });
    }
    if (state.call) request("shareAnswer", { callId: state.call.id, answer: "close" }).catch(function () {});
  }

  function onPhotoRequest(p) {
    state.photoRequest = p;
    if (!state.allowPhoto) {
      request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "disabled" }).catch(function () {});
      return;
    }
    $("photo-dialog").showModal();
  }

  function takePhoto() {
    $("photo-dialog").close();
    var p = state.photoRequest;
    ensureLocalMedia().then(function (stream) {
      var track = stream.getVideoTracks()[0];
      if (!track) throw new Error("no camera");
      var video = document.createElement("video");
      video.muted = true; video.playsInline = true; video.srcObject = new MediaStream([track]);
      return video.play().then(function () {
        var canvas = document.createElement("canvas");
        canvas.width = video.videoWidth; canvas.height = video.videoHeight;
        canvas.getContext("2d").drawImage(video, 0, 0);
        return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.92); });
      });
    }).then(function (blob) {
      return fetch("/api/visitor/photo?callId=" + encodeURIComponent(p.callId) + "&requestId=" + encodeURIComponent(p.requestId), {
        method: "POST", body: blob,
        headers: { "Content-Type": "image/jpeg", "X-Visitor-Key": state.key, "X-Visitor-Name": state.name },
      });
    }).then(function (r) {
      if (!r.ok) throw new Error("upload failed (" + r.status + ")");
      say("Photo sent to the agent.", "system");
    }).catch(function (e) {
      request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "error", reason: e.message }).catch(function () {});
    });
  }

  // --- wiring

  $("start-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    start($("name").value.trim());
  });

  function start(name) {
    if (!name) return;
    state.name = name;
    state.allowPhoto = $("allow-photo").checked && params.get("photo") !== "off";
    var saved = store.getItem("kefu.visitor." + name);
    if (saved) { try { state.key = JSON.parse(saved).key; } catch (e) { state.key = null; } }
    $("start").classList.add("hidden");
    $("desk").classList.remove("hidden");
    connect();
  }

  $("chat-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("text").value;
    if (!text.trim()) return;
    var clientMsgId = "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    say(text, "me", new Date().toISOString());
    $("text").value = "";
    request("sendMessage", { text: text, clientMsgId: clientMsgId }).then(function (r) {
      if (r.payload && r.payload.session) setSession(r.payload.session);
    }).catch(function (e) { say("Not sent: " + (e.msg || e.message), "system"); });
  });
  $("video-btn").addEventListener("click", function () {
    request("requestVideo", {}).catch(function (e) { say("Video not available: " + (e.msg || e.message), "system"); });
  });
  $("end-btn").addEventListener("click", function () {
    request("closeSession", {}).then(function () { say("You ended the conversation.", "system"); setSession(null); });
  });
  $("accept-btn").addEventListener("click", function () { answer("accept"); });
  $("refuse-btn").addEventListener("click", function () { answer("refuse"); });
  $("hangup-btn").addEventListener("click", function () {
    if (state.call) request("hangup", { callId: state.call.id }).catch(function () {});
    endCallView();
  });
  $("mute-btn").addEventListener("click", function () {
    if (!state.localStream) return;
    var tracks = state.localStream.getAudioTracks();
    var muted = tracks.length && !tracks[0].enabled;
    tracks.forEach(function (t) { t.enabled = muted; });
    $("mute-btn").textContent = muted ? "Mute" : "Unmute";
  });
  $("share-yes").addEventListener("click", startShare);
  $("share-no").addEventListener("click", function () {
    $("share-dialog").close();
    var req = state.shareRequest || {};
    request("shareAnswer", { callId: req.callId, answer: "refuse" }).catch(function () {});
  });
  $("share-stop-btn").addEventListener("click", stopShare);
  $("photo-yes").addEventListener("click", takePhoto);
  $("photo-no").addEventListener("click", function () {
    $("photo-dialog").close();
    var p = state.photoRequest || {};
    request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "refuse" }).catch(function () {});
  });

  if (params.get("name")) {
    $("name").value = params.get("name");
    if (params.get("photo") === "off") $("allow-photo").checked = false;
    start(params.get("name"));
  }
})();
