/* kefu visitor page: chat with an agent, video calls, screen share, photos.
 *
 * Speaks the visitor socket (/ws/visitor, docs/protocol.md and docs/calls.md).
 * Media (docs/media.md): the primary agent's plugin is the hub and makes every
 * offer; this page answers. It puts its camera and microphone on the offered
 * slots the hub can receive on, and asks for a new offer ({"type":
 * "renegotiate"}) when it starts or stops sharing its screen, as the Python
 * visitor does. Who each incoming track belongs to is read from the offer's
 * a=msid (the hub labels every track kefu.<role>.<member>).
 * In the SFU mode (the call's media is "sfu", docs/calls.md) the page instead
 * publishes its camera and microphone once to the media server (one sendonly
 * connection, the offerer) and answers the server's offer of each other
 * member's feed with a recvonly connection of its own, as kefu.media.SfuMember.
 * No build step, no dependency.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var store = (function () {
    try { return window.localStorage; } catch (e) { return null; }
  })();

  var state = {
    ws: null, name: null, key: null, lastSeq: 0, session: null, call: null,
    nextId: 1, pending: {}, backoff: 500, stopped: false, allowPhoto: true,
    shareRequest: null, photoRequest: null,
    iceServers: [], iceTimer: null // the server's TURN (hello reply), asked again at iceRenewIn
  };
  var media = {
    pc: null, hub: null, local: null, screen: null, screenStream: null, screenState: null,
    loopbackOnly: false, sentCandidates: null, lateCandidates: [],
    used: [], tiles: {}, chain: Promise.resolve(), signals: [], offers: 0,
    sfu: false, subs: {} // SFU mode: media.pc is the publisher; subs the feeds, by kind:name
  };
  var SFU = { kind: "sfu", name: "sfu" };
  window.kefuVisitor = { state: state, media: media }; // for tests and debugging

  // ------------------------------------------------------------ small UI helpers

  function setConn(text, cls) {
    var el = $("conn");
    el.textContent = text;
    el.className = "pill " + (cls || "");
  }

  function status(text) { $("status").textContent = text; }

  function initials(name) {
    return (name || "?").trim().slice(0, 2).toUpperCase();
  }

  function say(text, who, at) {
    var div = document.createElement("div");
    div.className = "msg " + who;
    var p = document.createElement("span");
    p.textContent = text;
    div.appendChild(p);
    if (at && who !== "system") {
      var t = document.createElement("time");
      t.dateTime = at;
      t.textContent = new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      div.appendChild(t);
    }
    $("log").appendChild(div);
    $("log").scrollTop = $("log").scrollHeight;
  }

  function callStatus(text, cls) {
    var el = $("call-status");
    el.textContent = text;
    el.className = "pill " + (cls || "");
  }

  // ------------------------------------------------------------ the socket

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /** The server's iceServers for the next peer connection; fresh ones after iceRenewIn s. */
  function useIce(p) {
    state.iceServers = Array.isArray(p.iceServers) ? p.iceServers : [];
    if (state.iceTimer) clearTimeout(state.iceTimer);
    state.iceTimer = null;
    if (typeof p.iceRenewIn === "number" && p.iceRenewIn > 0) {
      state.iceTimer = setTimeout(function () {
        request("iceServers").then(function (msg) { useIce(msg.payload || {}); }, function () {});
      }, p.iceRenewIn * 1000);
    }
  }

  function request(mark, p) {
    return new Promise(function (resolve, reject) {
      if (!state.ws || state.ws.readyState !== 1) { reject({ code: "offline", msg: "not connected" }); return; }
      var id = "w" + state.nextId++;
      state.pending[id] = { resolve: resolve, reject: reject };
      state.ws.send(JSON.stringify({ v: 1, id: id, mark: mark, params: p || {} }));
    });
  }

  function quietly(promise) { promise.catch(function () {}); }

  function connect() {
    setConn(state.lastSeq ? "reconnecting…" : "connecting…", "warn");
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
      if (msg && typeof msg === "object") handle(msg);
    };
    ws.onclose = function () {
      if (state.ws === ws) state.ws = null;
      Object.keys(state.pending).forEach(function (id) {
        state.pending[id].reject({ code: "offline", msg: "connection lost" });
      });
      state.pending = {};
      if (state.stopped) return;
      setConn("reconnecting…", "bad");
      setTimeout(connect, state.backoff);
      state.backoff = Math.min(state.backoff * 2, 10000);
    };
  }

  function handle(msg) {
    if (msg.id === "hello") {
      if (msg.subMark === "error") { refused(msg.error || {}); return; }
      var p = msg.payload || {};
      state.key = p.visitorKey;
      if (store) store.setItem("kefu.visitor." + state.name, JSON.stringify({ key: state.key }));
      state.backoff = 500;
      setConn("connected", "ok");
      setSession(p.session || null);
      useIce(p);
      return;
    }
    if (msg.id && state.pending[msg.id]) {
      var req = state.pending[msg.id];
      delete state.pending[msg.id];
      if (msg.subMark === "error") req.reject(msg.error || {}); else req.resolve(msg);
      return;
    }
    if (typeof msg.seq === "number") {
      if (msg.seq <= state.lastSeq) return; // seen already (a replay after reconnecting)
      state.lastSeq = msg.seq;
    }
    if (msg.mark === "event") onEvent(msg.subMark, msg.payload || {});
    else if (msg.subMark === "error" && msg.error) say("The service refused a message: " + msg.error.msg, "system");
  }

  function refused(error) {
    state.stopped = true;
    if (state.ws) state.ws.close();
    setConn("offline", "bad");
    $("desk").classList.add("hidden");
    $("start").classList.remove("hidden");
    $("start-error").textContent = error.code === "forbidden"
      ? "This name is already in use. Please choose another one."
      : "Could not connect: " + (error.msg || error.code);
  }

  // ------------------------------------------------------------ the conversation

  function setSession(session) {
    state.session = session && session.status !== "closed" ? session : null;
    var s = state.session;
    var open = !!s && s.status === "open";
    $("end-btn").disabled = !s;
    $("video-btn").disabled = !(open && !state.call);
    $("queue-box").classList.toggle("hidden", !(s && s.status === "queued"));
    if (s && s.status === "queued" && s.position) $("queue-position").textContent = "#" + s.position;
    $("agent-line").textContent = open ? (s.agentName || "Your agent") : "No agent yet";
    $("agent-avatar").textContent = open ? initials(s.agentName) : "?";
    $("agent-avatar").classList.toggle("on", open);
    if (!s) status("Type a message to reach an agent.");
    else if (s.status === "queued") status("Waiting for an agent…");
    else status("You are chatting with " + (s.agentName || "an agent") + ".");
  }

  function onEvent(kind, p) {
    switch (kind) {
      case "queue":
        if (state.session && state.session.status === "queued") {
          state.session.position = p.position;
          setSession(state.session);
        }
        break;
      case "sessionAssigned":
        setSession(p);
        say((p.agentName || "An agent") + " joined the conversation.", "system");
        break;
      case "message":
        if (p.from === "visitor") return; // our own, shown when sent
        say(p.text, p.from === "system" ? "system" : "them", p.at);
        break;
      case "sessionClosed":
        say(p.by === "visitor" ? "You ended the conversation." : "The conversation was closed.", "system");
        setSession(null);
        break;
      case "call": onCall(p); break;
      case "signal": onSignal(p); break;
      case "shareRequest": onShareRequest(p); break;
      case "photoRequest": onPhotoRequest(p); break;
      case "replaced":
        state.stopped = true;
        setConn("opened elsewhere", "bad");
        say("This conversation was opened in another window.", "system");
        break;
      default: break;
    }
  }

  // ------------------------------------------------------------ calls

  function onCall(p) {
    var call = state.call;
    switch (p.what) {
      case "ringing":
        state.call = { id: p.callId, agentName: p.agentName, phase: "ringing" };
        openCallView();
        callStatus("calling " + (p.agentName || "the agent") + "…", "warn");
        break;
      case "invited":
        if (call && call.id !== p.callId) { // one call at a time
          quietly(request("answerCall", { callId: p.callId, answer: "busy" }));
          return;
        }
        state.call = { id: p.callId, agentName: p.agentName, phase: "invited" };
        setSession(state.session);
        $("invite-text").textContent = (p.agentName || "An agent") + " invites you to a video call.";
        if (!$("invite-dialog").open) $("invite-dialog").showModal();
        break;
      case "accepted": // the agent picked up our request: join the meeting
        if (!call || call.id !== p.callId) state.call = { id: p.callId, agentName: p.agentName };
        state.call.phase = "joining";
        openCallView();
        callStatus("connecting…", "warn");
        request("joinCall", { callId: p.callId }).then(joined).catch(function (e) {
          say("Could not join the call: " + (e.msg || e.code), "system");
          endCall();
        });
        break;
      case "cancelled":
        if (!call || call.id !== p.callId) return;
        if ($("invite-dialog").open) $("invite-dialog").close();
        say(call.phase === "ringing" ? "The agent could not take the video call." : "The video call was cancelled.", "system");
        endCall();
        break;
      case "memberJoined":
        if (call && p.kind === "visitor" && p.name !== state.name) say(p.name + " joined the call.", "system");
        else if (call && p.role === "supervisor") say("A supervisor, " + p.name + ", joined the call.", "system");  // issue 20: a barge
        else if (call && p.kind === "agent" && p.name !== call.agentName) say("Agent " + p.name + " joined the call.", "system");
        break;
      case "memberLeft":
        if (call && p.name !== state.name) say(p.name + " left the call.", "system");
        break;
      case "ended":
        if (!call || call.id !== p.callId) return;
        say(p.by === state.name ? "You hung up." : "The video call ended.", "system");
        endCall();
        break;
      // call transfers (issue 20, docs/calls.md)
      case "held":
        if (call && call.id === p.callId) { say("Please hold: the agent is consulting a colleague.", "system"); callStatus("on hold", "warn"); }
        break;
      case "resumed":
        if (call && call.id === p.callId) { say("The agent is back.", "system"); callStatus("connected", "ok"); }
        break;
      case "queued":
        // a blind transfer to a team none of whose agents is ready (D50): the call waits with no
        // agent; no media until one picks up (the hub mode's connection closes with the old hub)
        if (!call || call.id !== p.callId) return;
        say("All agents are busy: please wait, you are number " + p.position + " in the queue.", "system");
        if (!media.sfu) closeMedia();
        callStatus("waiting for an agent (#" + p.position + ")", "warn");
        break;
      case "transferred":
        if (!call || call.id !== p.callId) return;
        call.agentName = p.agentName;
        say("Your call is now with agent " + p.agentName + ".", "system");
        // the hub mode: the media's hub moves to the new agent's plugin, whose offer comes next
        // (D30); the SFU mode keeps its connections, the agents' feeds come and go
        if (!media.sfu) { closeMedia(); callStatus("connecting…", "warn"); }
        break;
      default: break;
    }
  }

  function answer(kind) {
    if ($("invite-dialog").open) $("invite-dialog").close();
    var call = state.call;
    if (!call || call.phase !== "invited") return;
    if (kind === "accept") {
      call.phase = "joining";
      openCallView();
      callStatus("connecting…", "warn");
      ensureLocalMedia(); // the camera starts while the agent's offer is on its way
    }
    request("answerCall", { callId: call.id, answer: kind }).then(kind === "accept" ? joined : null).catch(function (e) {
      say("Could not answer: " + (e.msg || e.code), "system");
      endCall();
    });
    if (kind !== "accept") { state.call = null; setSession(state.session); }
  }

  /** The answerCall / joinCall reply: in the SFU mode we publish now (docs/calls.md). */
  function joined(msg) {
    var p = (msg && msg.payload) || {};
    if (p.media === "sfu" && state.call) media.chain = media.chain.then(publish).catch(mediaProblem);
  }

  function mediaProblem(e) { say("Media problem: " + (e.message || e.msg || e), "system"); }

  function openCallView() {
    $("call-panel").classList.remove("hidden");
    $("video-btn").disabled = true;
    $("stage-empty").classList.remove("hidden");
  }

  function endCall() {
    $("call-panel").classList.add("hidden");
    closeMedia();
    state.call = null;
    setSession(state.session);
  }

  // ------------------------------------------------------------ media

  function ensureLocalMedia() {
    if (media.local) return Promise.resolve(media.local);
    if (media.localPromise) return media.localPromise;
    var constraints = { audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } };
    media.localPromise = navigator.mediaDevices.getUserMedia(constraints).then(function (stream) {
      media.local = stream;
      $("local-video").srcObject = stream;
      return stream;
    }).catch(function (e) {
      say("Your camera or microphone is not available (" + (e.name || e.message) + "): the agent will not see or hear you.", "system");
      media.local = new MediaStream();
      return media.local;
    }).then(function (stream) {
      media.localPromise = null;
      return stream;
    });
    return media.localPromise;
  }

  function closeMedia() {
    if (media.pc) { media.pc.close(); media.pc = null; }
    Object.keys(media.subs).forEach(function (key) { media.subs[key].pc.close(); });
    media.subs = {};
    media.sfu = false;
    if (media.screen) { media.screen.stop(); media.screen = null; }
    media.screenState = null;
    if (media.local) { media.local.getTracks().forEach(function (t) { t.stop(); }); media.local = null; }
    $("local-video").srcObject = null;
    Object.keys(media.tiles).forEach(removeTile);
    media.used = [];
    media.hub = null;
    media.sentCandidates = null;
    media.lateCandidates = [];
    $("share-stop-btn").classList.add("hidden");
    $("sharing-note").classList.add("hidden");
    $("mute-btn").textContent = "Mute"; $("mute-btn").setAttribute("aria-pressed", "false");
    $("camera-btn").textContent = "Camera off"; $("camera-btn").setAttribute("aria-pressed", "false");
  }

  /** SDP helpers: the sections of a description, by mid. */
  function sections(sdp) {
    var out = {};
    sdp.split(/\r\n/).reduce(function (cur, line) {
      if (line.indexOf("m=") === 0) { cur = { kind: line.slice(2).split(" ")[0], lines: [] }; }
      if (!cur) return cur;
      cur.lines.push(line);
      if (line.indexOf("a=mid:") === 0) out[line.slice(6)] = cur;
      return cur;
    }, null);
    Object.keys(out).forEach(function (mid) {
      var s = out[mid];
      s.direction = "sendrecv";
      s.lines.forEach(function (l) {
        if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l)) s.direction = l.slice(2);
        if (l.indexOf("a=msid:") === 0) s.trackId = l.split(" ")[1];
      });
    });
    return out;
  }

  /** kefu.<role>.<member> (docs/media.md): whose track, and which of theirs. */
  function parseLabel(id) {
    var m = /^kefu\.(camera|mic|screen)\.(.+)$/.exec(id || "");
    if (!m) return null;
    var member = m[2];
    if (member.charAt(0) === "~") {
      try {
        var b64 = member.slice(1).replace(/-/g, "+").replace(/_/g, "/");
        while (b64.length % 4) b64 += "=";
        var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
        member = new TextDecoder().decode(bytes);
      } catch (e) { return null; }
    }
    return { role: m[1], member: member };
  }

  function isLoopback(address) { return /^127\./.test(address) || address === "::1"; }

  function candidateAddress(line) { return line.split(" ")[4] || ""; }

  /** A hub that offers loopback candidates only is on this very machine (the
   * single-machine setup): we offer it loopback UDP candidates only, so that
   * our side of the media stays on 127.0.0.1 as far as we can tell it. */
  function loopbackHub(offerSdp) {
    var offered = offerSdp.split(/\r\n/).filter(function (l) { return l.indexOf("a=candidate:") === 0; });
    return offered.length > 0 && offered.every(function (l) { return isLoopback(candidateAddress(l)); });
  }

  /** Whether a candidate line ("candidate:..." or "a=candidate:...") goes to the hub. */
  function wanted(line) {
    if (!media.loopbackOnly) return true;
    return isLoopback(candidateAddress(line)) && (line.split(" ")[2] || "").toLowerCase() === "udp";
  }

  function fitCandidates(answerSdp) {
    return answerSdp.split(/\r\n/).filter(function (l) {
      return l.indexOf("a=candidate:") !== 0 || wanted(l);
    }).join("\r\n");
  }

  function hasWanted(sdp) {
    return sdp.split(/\r\n/).some(function (l) { return l.indexOf("a=candidate:") === 0 && wanted(l); });
  }

  /** Until a candidate the hub can use is in our description (the rest trickles), at most ``limit`` ms. */
  function firstCandidate(pc, limit) {
    return new Promise(function (resolve) {
      var done = false;
      var check = function () {
        if (done) return;
        if (pc.iceGatheringState === "complete" || (pc.localDescription && hasWanted(pc.localDescription.sdp))) {
          done = true;
          pc.removeEventListener("icecandidate", check);
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icecandidate", check);
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(function () { done = true; resolve(); }, limit);
      check();
    });
  }

  /** A candidate gathered after our answer went out: sent on its own (trickle ICE). */
  function trickle(candidate) {
    var call = state.call;
    if (!call || !media.hub) return;
    var text = candidate ? candidate.candidate : "";
    if (text && (media.sentCandidates.indexOf(text) >= 0 || !wanted(text))) return;
    var data = { type: "candidate", candidate: text };
    if (candidate && candidate.sdpMid !== null) data.sdpMid = candidate.sdpMid;
    if (candidate && candidate.sdpMLineIndex !== null) data.sdpMLineIndex = candidate.sdpMLineIndex;
    quietly(request("signal", { callId: call.id, to: media.hub, data: data }));
  }

  function peer() {
    if (media.pc) return media.pc;
    var pc = new RTCPeerConnection({ iceServers: state.iceServers, bundlePolicy: "max-bundle" });
    media.pc = pc;
    pc.onicecandidate = function (ev) {
      if (media.sentCandidates === null) media.lateCandidates.push(ev.candidate);
      else trickle(ev.candidate);
    };
    pc.ontrack = function (ev) { media.incoming = true; reconcileTiles(); ev.track.onunmute = reconcileTiles; };
    watchState(pc);
    return pc;
  }

  /** The call's status from a connection's state; a failed one is reported (reliability F15). */
  function watchState(pc) {
    pc.onconnectionstatechange = function () {
      var s = pc.connectionState;
      if (s === "connected") { callStatus("connected", "ok"); if (state.call) state.call.phase = "connected"; }
      else if (s === "disconnected") callStatus("reconnecting…", "warn");
      else if (s === "failed") {
        callStatus("no media connection", "bad");
        // reliability F15: the server ends our part of the call (media_unreachable)
        if (state.call && state.call.id) quietly(request("mediaFailed", { callId: state.call.id, reason: "ice failed" }));
      }
      else if (s === "connecting" || s === "new") callStatus("connecting…", "warn");
    };
  }

  /** Our tracks waiting for a slot: the camera, the microphone, the screen. */
  function localTracks() {
    var out = [];
    if (media.local) {
      media.local.getVideoTracks().forEach(function (t) { out.push({ track: t, kind: "video" }); });
      media.local.getAudioTracks().forEach(function (t) { out.push({ track: t, kind: "audio" }); });
    }
    if (media.screen) out.push({ track: media.screen, kind: "video", screen: true });
    return out;
  }

  /** Put each unsent local track on a fresh slot the offer can receive on. */
  function bindLocal(pc, offered) {
    var sending = pc.getTransceivers().map(function (t) { return t.sender.track; });
    var work = [];
    localTracks().forEach(function (item) {
      if (sending.indexOf(item.track) >= 0) return;
      var slot = pc.getTransceivers().filter(function (t) {
        var sec = t.mid !== null ? offered[t.mid] : null;
        return sec && sec.kind === item.kind && !t.sender.track && media.used.indexOf(t) < 0 &&
          (sec.direction === "sendrecv" || sec.direction === "recvonly") && t.currentDirection !== "stopped";
      })[0];
      if (!slot) return; // no room yet: a renegotiate asks for it
      media.used.push(slot);
      sending.push(item.track);
      slot.direction = offered[slot.mid].direction === "sendrecv" ? "sendrecv" : "sendonly";
      work.push(slot.sender.replaceTrack(item.track));
      if (item.screen) media.screenState = "bound";
    });
    return Promise.all(work);
  }

  function onSignal(p) {
    var call = state.call;
    if (!call || p.callId !== call.id || !p.from) return;
    var data = p.data || {};
    if (p.from.kind === "sfu") { onSfuSignal(data); return; }
    if (p.from.kind !== "agent") return; // only the hub signals us
    media.signals.push({ from: p.from, type: data.type });
    if (data.type === "offer" && typeof data.sdp === "string") {
      media.chain = media.chain.then(function () { return answerOffer(p.from, data.sdp); })
        .catch(function (e) { say("Media problem: " + (e.message || e.msg || e), "system"); });
    } else if (data.type === "answer" && media.pc) {
      media.chain = media.chain.then(function () {
        return media.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
      }).catch(function () {});
    }
  }

  function answerOffer(from, sdp) {
    var call = state.call;
    if (!call) return Promise.resolve();
    media.hub = from;
    if (!media.pc) media.loopbackOnly = loopbackHub(sdp);
    var pc = peer();
    var offered = sections(sdp);
    return ensureLocalMedia().then(function () {
      return pc.setRemoteDescription({ type: "offer", sdp: sdp });
    }).then(function () {
      return bindLocal(pc, offered);
    }).then(function () {
      return pc.createAnswer();
    }).then(function (a) {
      return pc.setLocalDescription(a);
    }).then(function () {
      return media.sentCandidates === null ? firstCandidate(pc, 2000) : null;
    }).then(function () {
      media.offers += 1;
      reconcileTiles();
      var answerSdp = fitCandidates(pc.localDescription.sdp);
      var sent = request("signal", { callId: call.id, to: from, data: { type: "answer", sdp: answerSdp } });
      if (media.sentCandidates === null) { // the first answer: what was not in it trickles
        media.sentCandidates = answerSdp.split(/\r\n/).filter(function (l) { return l.indexOf("a=candidate:") === 0; })
          .map(function (l) { return l.slice(2); });
        var late = media.lateCandidates;
        media.lateCandidates = [];
        late.forEach(trickle);
      }
      return sent;
    }).then(function () {
      if (media.screenState === "bound" && state.call) {
        media.screenState = "open";
        return request("shareAnswer", { callId: state.call.id, answer: "open" });
      }
    });
  }

  // ------------------------------------------------------------ media through the SFU (docs/calls.md)

  /** Until ``pc`` has gathered its candidates (at most ``limit`` ms: the rest trickles). */
  function gathered(pc, limit) {
    return new Promise(function (resolve) {
      var check = function () {
        if (pc.iceGatheringState !== "complete") return;
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, limit);
      check();
    });
  }

  /** A connection to the media server whose description goes out once gathered;
   * candidates found later are sent on their own after it (``feed``: a subscription's). */
  function sfuPeer(feed) {
    var pc = new RTCPeerConnection({ iceServers: state.iceServers, bundlePolicy: "max-bundle" });
    var link = { pc: pc, feed: feed, sent: null, late: [] };
    pc.onicecandidate = function (ev) {
      if (link.sent === null) link.late.push(ev.candidate); else sfuTrickle(link, ev.candidate);
    };
    return link;
  }

  function sfuTrickle(link, candidate) {
    var call = state.call;
    var text = candidate ? candidate.candidate : null;
    if (!call || (text && link.sent.indexOf(text) >= 0)) return;
    var data = { type: "candidate", candidate: text };
    if (candidate && candidate.sdpMid !== null) data.sdpMid = candidate.sdpMid;
    if (candidate && candidate.sdpMLineIndex !== null) data.sdpMLineIndex = candidate.sdpMLineIndex;
    if (link.feed) data.feed = link.feed;
    quietly(request("signal", { callId: call.id, to: SFU, data: data }));
  }

  /** Send ``data`` (with ``link``'s description) to the sfu, then what it gathered since. */
  function sfuSend(link, data) {
    return gathered(link.pc, 2000).then(function () {
      var call = state.call;
      if (!call) return null;
      data.sdp = link.pc.localDescription.sdp;
      link.sentSdp = data.sdp;
      return request("signal", { callId: call.id, to: SFU, data: data });
    }).then(function (reply) {
      link.sent = (link.sentSdp || "").split(/\r\n/).filter(function (l) { return l.indexOf("a=candidate:") === 0; })
        .map(function (l) { return l.slice(2); });
      var late = link.late;
      link.late = [];
      late.forEach(function (c) { sfuTrickle(link, c); });
      return reply;
    });
  }

  /** Publish the camera and microphone once (sendonly), offering to the sfu. */
  function publish() {
    if (!state.call || media.sfu) return null;
    media.sfu = true;
    return ensureLocalMedia().then(function (stream) {
      if (!state.call || media.pc) return null;
      var link = sfuPeer(null);
      media.pc = link.pc;
      media.publisher = link;
      watchState(link.pc);
      stream.getTracks().forEach(function (t) {
        link.pc.addTransceiver(t, { direction: "sendonly", streams: [stream] });
      });
      return link.pc.createOffer().then(function (offer) {
        return link.pc.setLocalDescription(offer);
      }).then(function () {
        return sfuSend(link, { type: "offer" });
      });
    });
  }

  /** SFU mode: the screen as a second track of the publisher, offered to the sfu again
   * (it adds the stream to the feed and offers it to every subscriber); "open" once answered. */
  function sfuShare(track, stream) {
    media.chain = media.chain.then(function () {
      if (!media.pc || media.screen !== track) return null;
      media.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      return sfuRepublish().then(function () {
        if (media.screen === track && state.call && media.screenState === "asked") {
          media.screenState = "open";
          return request("shareAnswer", { callId: state.call.id, answer: "open" });
        }
      });
    }).catch(mediaProblem);
    return media.chain;
  }

  /** The publisher's new offer (its tracks changed), answered by the sfu. */
  function sfuRepublish() {
    var link = media.publisher;
    if (!link || !state.call) return Promise.resolve(null);
    return link.pc.createOffer().then(function (offer) {
      return link.pc.setLocalDescription(offer);
    }).then(function () {
      return sfuSend(link, { type: "offer" });
    });
  }

  function feedKey(feed) { return feed && typeof feed.name === "string" ? feed.kind + ":" + feed.name : null; }

  function onSfuSignal(data) {
    media.signals.push({ from: SFU, type: data.type, feed: data.feed });
    var key = feedKey(data.feed);
    if (data.type === "answer" && !data.feed) {
      media.chain = media.chain.then(function () {
        if (media.pc && media.sfu) return media.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
      }).catch(mediaProblem);
    } else if (data.type === "offer" && key && typeof data.sdp === "string") {
      if (!media.sfu) media.chain = media.chain.then(publish).catch(mediaProblem); // the reply not read yet
      media.chain = media.chain.then(function () { return subscribe(data.feed, data.sdp); }).catch(mediaProblem);
    } else if (data.type === "leave" && key) {
      media.chain = media.chain.then(function () { unsubscribe(key); });
    }
  }

  /** The server's offer of a member's feed: a recvonly connection of its own, answered. */
  function subscribe(feed, sdp) {
    if (!state.call) return null;
    var key = feedKey(feed);
    var link = media.subs[key];
    if (!link) {
      link = media.subs[key] = sfuPeer({ kind: feed.kind, name: feed.name });
      link.pc.ontrack = function () { showFeed(key); };
      link.pc.onconnectionstatechange = function () {
        if (link.pc.connectionState === "failed") callStatus("no media from " + feed.name, "bad");
      };
    }
    return link.pc.setRemoteDescription({ type: "offer", sdp: sdp }).then(function () {
      link.pc.getTransceivers().forEach(function (t) { t.direction = "recvonly"; });
      return link.pc.createAnswer();
    }).then(function (a) {
      return link.pc.setLocalDescription(a);
    }).then(function () {
      media.offers += 1;
      showFeed(key);
      return sfuSend(link, { type: "answer", feed: link.feed });
    });
  }

  /** A feed's tracks as the member's tile (as the hub mode shows a member). */
  function showFeed(key) {
    var link = media.subs[key];
    if (!link) return;
    var tracks = link.pc.getReceivers().map(function (r) { return r.track; }).filter(function (t) { return t; });
    if (!tracks.length) return;
    media.incoming = true;
    showTile("member:" + link.feed.name, { member: link.feed.name, screen: false, tracks: tracks });
    $("stage-empty").classList.add("hidden");
  }

  function unsubscribe(key) {
    var link = media.subs[key];
    if (!link) return;
    delete media.subs[key];
    link.pc.close();
    removeTile("member:" + link.feed.name);
    $("stage-empty").classList.toggle("hidden", Object.keys(media.tiles).length > 0);
  }

  // the tiles: one per member (camera + microphone), one per screen
  function reconcileTiles() {
    var pc = media.pc;
    if (!pc || !pc.remoteDescription) return;
    var offered = sections(pc.remoteDescription.sdp);
    var wanted = {};
    pc.getTransceivers().forEach(function (t) {
      var sec = t.mid !== null ? offered[t.mid] : null;
      if (!sec || !t.receiver.track) return;
      var ours = t.currentDirection || t.direction;
      var theySend = sec.direction === "sendrecv" || sec.direction === "sendonly";
      if (!theySend || (ours !== "sendrecv" && ours !== "recvonly")) return;
      var label = parseLabel(sec.trackId) || { role: t.receiver.track.kind === "audio" ? "mic" : "camera", member: "agent" };
      var key = (label.role === "screen" ? "screen:" : "member:") + label.member;
      var tile = wanted[key] || (wanted[key] = { member: label.member, screen: label.role === "screen", tracks: [] });
      tile.tracks.push(t.receiver.track);
    });
    Object.keys(media.tiles).forEach(function (key) { if (!wanted[key]) removeTile(key); });
    Object.keys(wanted).forEach(function (key) { showTile(key, wanted[key]); });
    $("stage-empty").classList.toggle("hidden", Object.keys(media.tiles).length > 0);
  }

  function showTile(key, want) {
    var tile = media.tiles[key];
    if (!tile) {
      var fig = document.createElement("figure");
      fig.className = "tile" + (want.screen ? " screen" : "");
      var v = document.createElement("video");
      v.autoplay = true; v.playsInline = true;
      var who = want.member === (state.call && state.call.agentName) ? "Agent " + want.member : want.member;
      v.setAttribute("aria-label", want.screen ? "Screen of " + want.member : "Video of " + who);
      var cap = document.createElement("figcaption");
      cap.textContent = want.screen ? want.member + " · screen" : who;
      fig.appendChild(v); fig.appendChild(cap);
      $("remote-tiles").appendChild(fig);
      tile = media.tiles[key] = { fig: fig, video: v, stream: new MediaStream() };
      v.srcObject = tile.stream;
    }
    var have = tile.stream.getTracks();
    have.forEach(function (t) { if (want.tracks.indexOf(t) < 0) tile.stream.removeTrack(t); });
    want.tracks.forEach(function (t) { if (have.indexOf(t) < 0) tile.stream.addTrack(t); });
    var play = tile.video.play();
    if (play && play.catch) play.catch(function () {});
  }

  function removeTile(key) {
    var tile = media.tiles[key];
    if (!tile) return;
    tile.fig.remove();
    delete media.tiles[key];
  }

  // ------------------------------------------------------------ screen share (inviteShare)

  function renegotiate(send) {
    if (!state.call || !media.hub) return Promise.reject(new Error("no media connection"));
    return request("signal", { callId: state.call.id, to: media.hub, data: { type: "renegotiate", send: send } });
  }

  function onShareRequest(p) {
    state.shareRequest = p;
    if (!state.call || p.callId !== state.call.id || !media.pc) {
      quietly(request("shareAnswer", { callId: p.callId, answer: "error", reason: "no media connection yet" }));
      return;
    }
    if (media.screen) { // already shared: say so again
      quietly(request("shareAnswer", { callId: p.callId, answer: "open" }));
      return;
    }
    if (!$("share-dialog").open) $("share-dialog").showModal();
  }

  function startShare() {
    $("share-dialog").close();
    var req = state.shareRequest || {};
    if (!navigator.mediaDevices.getDisplayMedia) {
      quietly(request("shareAnswer", { callId: req.callId, answer: "error", reason: "this browser cannot share its screen" }));
      return;
    }
    navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }).then(function (stream) {
      if (!state.call || !media.pc) { stream.getTracks().forEach(function (t) { t.stop(); }); throw new Error("the call ended"); }
      var track = stream.getVideoTracks()[0];
      media.screen = track;
      media.screenStream = stream;
      media.screenState = "asked";
      track.onended = stopShare; // the browser's own "Stop sharing"
      $("share-stop-btn").classList.remove("hidden");
      $("sharing-note").classList.remove("hidden");
      if (media.sfu) return sfuShare(track, stream);
      return renegotiate({ video: 1, audio: 0 });
    }).catch(function (e) {
      var refusedByUser = e && (e.name === "NotAllowedError" || e.name === "AbortError");
      quietly(request("shareAnswer", {
        callId: req.callId, answer: refusedByUser ? "refuse" : "error",
        reason: refusedByUser ? undefined : String(e.message || e).slice(0, 120)
      }));
    });
  }

  function stopShare() {
    var track = media.screen;
    if (!track) return;
    media.screen = null;
    media.screenState = null;
    track.onended = null;
    track.stop();
    $("share-stop-btn").classList.add("hidden");
    $("sharing-note").classList.add("hidden");
    if (media.pc) {
      media.pc.getTransceivers().forEach(function (t) {
        if (t.sender.track === track) { t.sender.replaceTrack(null); t.direction = "inactive"; }
      });
    }
    if (state.call) {
      if (media.sfu) media.chain = media.chain.then(sfuRepublish).catch(mediaProblem);
      else quietly(renegotiate({ video: 0, audio: 0 }));
      quietly(request("shareAnswer", { callId: state.call.id, answer: "close" }));
    }
  }

  // ------------------------------------------------------------ photo (takePhoto)

  function onPhotoRequest(p) {
    state.photoRequest = p;
    if (!state.allowPhoto) {
      quietly(request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "disabled" }));
      return;
    }
    if (!state.call || p.callId !== state.call.id) {
      quietly(request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "error", reason: "not in this call" }));
      return;
    }
    if (!$("photo-dialog").open) $("photo-dialog").showModal();
  }

  function toJpeg(source, width, height) {
    var canvas = document.createElement("canvas");
    canvas.width = width; canvas.height = height;
    canvas.getContext("2d").drawImage(source, 0, 0, width, height);
    return new Promise(function (resolve, reject) {
      canvas.toBlob(function (blob) {
        if (blob) resolve({ blob: blob, width: width, height: height }); else reject(new Error("no image"));
      }, "image/jpeg", 0.92);
    });
  }

  /** A still of the camera at its full resolution (ImageCapture where the browser has it). */
  function capture(track) {
    if (window.ImageCapture) {
      var ic = new window.ImageCapture(track);
      return ic.takePhoto().then(createImageBitmap).catch(function () { return ic.grabFrame(); })
        .then(function (bitmap) { return toJpeg(bitmap, bitmap.width, bitmap.height); });
    }
    var v = document.createElement("video");
    v.muted = true; v.playsInline = true; v.srcObject = new MediaStream([track]);
    return v.play().then(function () { return toJpeg(v, v.videoWidth, v.videoHeight); });
  }

  function headerValue(text) {
    return /^[\x20-\x7e]*$/.test(text) ? { value: text, encoded: false } : { value: encodeURIComponent(text), encoded: true };
  }

  function takePhoto() {
    $("photo-dialog").close();
    var p = state.photoRequest;
    if (!p) return;
    var track = media.local && media.local.getVideoTracks()[0];
    var work = track ? capture(track) : Promise.reject(new Error("no camera"));
    work.then(function (shot) {
      var name = headerValue(state.name);
      var headers = { "Content-Type": "image/jpeg", "X-Visitor-Key": state.key, "X-Visitor-Name": name.value };
      if (name.encoded) headers["X-Visitor-Name-Encoding"] = "percent";
      return fetch("/api/visitor/photo?callId=" + encodeURIComponent(p.callId) + "&requestId=" + encodeURIComponent(p.requestId), {
        method: "POST", body: shot.blob, headers: headers
      }).then(function (r) {
        if (!r.ok) throw new Error("upload failed (HTTP " + r.status + ")");
        say("Photo sent to the agent (" + shot.width + "×" + shot.height + ").", "system");
      });
    }).catch(function (e) {
      say("The photo could not be sent: " + e.message, "system");
      quietly(request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "error", reason: String(e.message).slice(0, 120) }));
    });
  }

  // ------------------------------------------------------------ wiring

  function start(name) {
    if (!name) return;
    state.name = name;
    state.stopped = false;
    state.allowPhoto = $("allow-photo").checked;
    $("start-error").textContent = "";
    var saved = store && store.getItem("kefu.visitor." + name);
    state.key = null;
    if (saved) { try { state.key = JSON.parse(saved).key; } catch (e) { state.key = null; } }
    $("start").classList.add("hidden");
    $("desk").classList.remove("hidden");
    $("text").focus();
    connect();
  }

  $("start-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    start($("name").value.trim());
  });

  $("chat-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("text").value;
    if (!text.trim()) return;
    var clientMsgId = "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    say(text, "me", new Date().toISOString());
    $("text").value = "";
    request("sendMessage", { text: text, clientMsgId: clientMsgId }).then(function (r) {
      var p = r.payload || {};
      if (!state.session || state.session.sessionId !== p.sessionId) {
        setSession({ sessionId: p.sessionId, status: p.status, position: p.position });
      } else if (p.status === "queued" && p.position) {
        state.session.position = p.position;
        setSession(state.session);
      }
    }).catch(function (e) { say("Not sent: " + (e.msg || e.code), "system"); });
  });

  $("video-btn").addEventListener("click", function () {
    $("video-btn").disabled = true;
    ensureLocalMedia();
    request("requestVideo", {}).then(function (r) {
      var id = r.payload && r.payload.callId;
      if (id && !state.call) {
        state.call = { id: id, agentName: state.session && state.session.agentName, phase: "ringing" };
        openCallView();
        callStatus("calling " + (state.call.agentName || "the agent") + "…", "warn");
      }
    }).catch(function (e) {
      say("Video is not available right now: " + (e.msg || e.code), "system");
      closeMedia();
      setSession(state.session);
    });
  });
  $("end-btn").addEventListener("click", function () {
    quietly(request("closeSession", {}).then(function () { setSession(null); }));
  });
  $("accept-btn").addEventListener("click", function () { answer("accept"); });
  $("refuse-btn").addEventListener("click", function () { answer("refuse"); });
  $("invite-dialog").addEventListener("cancel", function (ev) { ev.preventDefault(); answer("refuse"); });
  $("hangup-btn").addEventListener("click", function () {
    var call = state.call;
    if (call) quietly(request("hangup", { callId: call.id }));
    if (call) say("You hung up.", "system");
    endCall();
  });
  $("mute-btn").addEventListener("click", function () {
    var tracks = media.local ? media.local.getAudioTracks() : [];
    if (!tracks.length) return;
    var muted = tracks[0].enabled;
    tracks.forEach(function (t) { t.enabled = !muted; });
    $("mute-btn").textContent = muted ? "Unmute" : "Mute";
    $("mute-btn").setAttribute("aria-pressed", String(muted));
  });
  $("camera-btn").addEventListener("click", function () {
    var tracks = media.local ? media.local.getVideoTracks() : [];
    if (!tracks.length) return;
    var off = tracks[0].enabled;
    tracks.forEach(function (t) { t.enabled = !off; });
    $("camera-btn").textContent = off ? "Camera on" : "Camera off";
    $("camera-btn").setAttribute("aria-pressed", String(off));
  });
  $("share-yes").addEventListener("click", startShare);
  $("share-no").addEventListener("click", function () {
    $("share-dialog").close();
    var req = state.shareRequest || {};
    quietly(request("shareAnswer", { callId: req.callId, answer: "refuse" }));
  });
  $("share-dialog").addEventListener("cancel", function (ev) { ev.preventDefault(); $("share-no").click(); });
  $("share-stop-btn").addEventListener("click", stopShare);
  $("photo-yes").addEventListener("click", takePhoto);
  $("photo-no").addEventListener("click", function () {
    $("photo-dialog").close();
    var p = state.photoRequest || {};
    quietly(request("photoAnswer", { callId: p.callId, requestId: p.requestId, answer: "refuse" }));
  });
  $("photo-dialog").addEventListener("cancel", function (ev) { ev.preventDefault(); $("photo-no").click(); });

  // ?name=Ann starts at once; ?photo=off unticks the photo consent
  if (params.get("photo") === "off") $("allow-photo").checked = false;
  if (params.get("name")) {
    $("name").value = params.get("name");
    start(params.get("name"));
  }
})();
