/*!
 * imclient.js — the kefu IMClient for web pages (SPEC §3–§5).
 *
 * Load it from the plugin (http://127.0.0.1:1040/imclient.js) or the server
 * (/static/imclient.js). It defines window.IMClient with the spec's names,
 * parameters, callbacks and data, so the spec's own sample code runs as it is:
 *
 *   var client = new IMClient({ baseWsUrl: "ws://127.0.0.1:1040", ssoTo: "...",
 *                               success: fn, error: fn, ssoReady: fn, kefuReady: fn, kefuWSClose: fn });
 *   client.initInnerCallBack({ chatCloseCB: fn, visitorStreamOffline: fn });
 *   client.callbackToVisitor({ visitorName: "v1", inviteSuccess: fn, error: fn });      // v1204
 *   client.callbackToVisitor({ visitorName: "v1" }, function (state, payload) { ... }); // v190307
 *
 * Both conventions work on every API, alone or together. Every callback gets
 * the message: data.payload, data.error.msg (and data.code, as the spec's
 * startLogin sample reads err.code == -1), data.data for the two booleans.
 * The v190307 callback gets (state, payload) for every message of the request.
 * Callbacks run with `this` set to the client.
 *
 * The wire protocol is the one of the Python SDK (docs/protocol.md). From a
 * page on an allowed origin no pairing token is needed. If the plugin does not
 * answer, `error` fires and the client tries again with a growing delay
 * (addition: `reconnect: false` turns that off); requests made before the
 * connection is up wait for it.
 *
 * A call API's request (and inviteShare's) lives on until one of its final
 * callbacks (IMClient.isFinal); every other API answers once.
 *
 * Local Network Access (Chrome 147+): a page that is not itself on loopback
 * needs the browser's permission to reach the plugin on 127.0.0.1 (or on a name
 * resolving to it, as wss://lccp-ex.easemob.com:1040); refused, the socket
 * fails before it opens, with no reason given. Then the client asks the
 * Permissions API; a state "denied" or "prompt" (the prompt was dismissed or
 * could not show) makes `error` and every waiting request get
 * {code: "local_network_denied", msg} saying what to do, instead of
 * "plugin_unreachable". See docs/deploy.md.
 *
 * Additions: options `lang` ("en": error messages in English; Chinese by
 * default, as the seed prints them; the plugin's errors and this client's own,
 * such as plugin_unreachable, from the catalogue's table below), `token`, `kefuWSOpen`, `quit`, `reconnect`;
 * initInnerCallBack also takes `stateChange(state, payload)` and the server's
 * events by name (`sessionAssigned`, `message`, `queue`, `call`, `share`, ...);
 * APIs sendMessage, transferSession, transferCall, completeTransfer, cancelTransfer,
 * monitorCall, whisper, barge, leaveMonitor (issue 20: a supervisor in a call; its agent
 * hears of it by initInnerCallBack supervisorChange), setAgentState, logout, getState, getWindow,
 * multipleVideoRefuse; client.state (the latest state code), client.currentCall
 * (the call the agent is in, also after a page reload: docs/sdk.md), client.close().
 * No dependency, no build step. See docs/web.md.
 */
(function (global) {
  "use strict";

  var VERSION = 1;
  // The callbacks that end a long request (kefu.protocol.plugin_api.CALL_FINAL_SUBMARKS; a
  // browser test compares the two); every other API answers once.
  // a callback's other names: the v1204 release note calls kefuCloseVideoSuccess closeVideoSuccess
  var ALIASES = { kefuCloseVideoSuccess: "closeVideoSuccess" };
  var HANGUPS = ["error", "timeoutDisconnect", "visitorDisconnect", "kefuCloseVideoSuccess"];
  var INVITES = ["error", "visitorRefuse", "videoBusyMark", "timeoutDisconnect", "visitorDisconnect", "kefuCloseVideoSuccess"];
  var FINAL = {
    videoPickUp: HANGUPS,
    multipleVideoPickUp: ["error", "exitSuccess", "kefuCloseVideoSuccess", "timeoutDisconnect", "refuseSuccess"],
    multipleVideoRefuse: ["error", "success"],
    videoInviteAgent: ["error", "exitSuccess", "kefuCloseVideoSuccess", "visitorRefuse", "videoBusyMark", "timeoutDisconnect"],
    callbackToVisitor: INVITES,
    videoInviteCurrentVisitor: INVITES,
    videoInviteVisitor: INVITES,
    videoDisconnect: ["error", "success"],
    // call transfers (issue 20): until the call is the target's, or back with the agent
    transferCall: ["error", "transferSuccess", "queued", "completeSuccess", "refuse", "timeoutDisconnect",
      "cancelSuccess", "targetLeft", "visitorDisconnect", "kefuCloseVideoSuccess"],
    completeTransfer: ["error", "completeSuccess"],
    cancelTransfer: ["error", "cancelSuccess"],
    // SPEC §4.5: the visitor's share opens, then closes
    inviteShare: ["error", "close"]
  };
  var APIS = [
    // SPEC §4.1 the window
    "startLogin", "setWindowSize", "minimize", "startup", "restore", "quit",
    // SPEC §4.2 IM
    "pickUpSession", "chatClose",
    // SPEC §4.3 audio and video
    "videoPickUp", "multipleVideoPickUp", "videoInviteAgent", "callbackToVisitor",
    "videoInviteCurrentVisitor", "videoInviteVisitor", "videoDisconnect",
    // SPEC §4.4, §4.5
    "takePhoto", "snapshot", "inviteShare",
    // SPEC §4.6
    "sessionCount", "sessionState", "isMultipleVideo", "isShareState",
    // additions
    "sendMessage", "setAgentState", "logout", "getState", "getWindow", "multipleVideoRefuse",
    "transferSession", "transferCall", "completeTransfer", "cancelTransfer",
    "monitorCall", "whisper", "barge", "leaveMonitor"
  ];

  function isFinal(mark, subMark) {
    var finals = FINAL[mark];
    return !finals || finals.indexOf(subMark) >= 0;
  }

  function payloadOf(msg) {
    if ("payload" in msg) return msg.payload;
    if ("error" in msg) return { error: msg.error };
    if ("data" in msg) return { data: msg.data };
    return undefined;
  }

  function safely(fn, self, args, what) {
    try {
      fn.apply(self, args);
    } catch (e) {
      if (global.console) global.console.error("IMClient: the " + what + " callback threw", e);
    }
  }

  // The catalogue's messages (kefu.protocol.errors.CATALOGUE), for the errors this client makes
  // itself: in the page's language as kefu.protocol.errors.localize gives the plugin's.
  // --- generated by `kefu docs` from src/kefu/protocol/errors.py; do not edit by hand
  var MESSAGES = {
    "SDK_08": {"en": "id lookup failed; check the visitor's details", "zh": "查询id出错,请检查访客信息是否正确"},
    "SDK_11": {"en": "the visitor is in a session now; cannot call out", "zh": "当前访客正在进行会话,无法外呼"},
    "-1": {"en": "login timed out", "zh": "登录超时"},
    "snapShotDisabled": {"en": "snapShotDisabled", "zh": "snapShotDisabled"},
    "bad_json": {"en": "the message is not valid JSON", "zh": "消息不是合法的JSON"},
    "bad_request": {"en": "the message is not a request object", "zh": "消息不是请求对象"},
    "missing_field": {"en": "a required field is missing", "zh": "缺少必填字段"},
    "invalid_field": {"en": "a field has the wrong type or value", "zh": "字段类型或取值错误"},
    "unknown_mark": {"en": "unknown API", "zh": "未知的API"},
    "unsupported_version": {"en": "unsupported protocol version", "zh": "不支持的协议版本"},
    "too_large": {"en": "the message is too large", "zh": "消息过大"},
    "binary_frame": {"en": "binary frames are not accepted; send JSON text", "zh": "不接受二进制帧,请发送JSON文本"},
    "duplicate_request": {"en": "a request with this id is already in progress", "zh": "相同id的请求正在处理中"},
    "unauthenticated": {"en": "authenticate first", "zh": "请先认证"},
    "bad_credentials": {"en": "wrong name or password", "zh": "用户名或密码错误"},
    "token_expired": {"en": "the token has expired; log in again", "zh": "令牌已过期,请重新登录"},
    "login_locked": {"en": "too many failed logins; try again later", "zh": "登录失败次数过多,请稍后再试"},
    "forbidden": {"en": "not allowed", "zh": "无权操作"},
    "origin_refused": {"en": "this page's origin may not control the plugin", "zh": "该页面来源无权控制插件"},
    "host_refused": {"en": "wrong Host header", "zh": "Host头不合法"},
    "controller_busy": {"en": "another client controls the plugin", "zh": "插件已被其他客户端控制"},
    "account_disabled": {"en": "this account is disabled", "zh": "账号已停用"},
    "not_logged_in": {"en": "the agent is not logged in", "zh": "坐席未签入"},
    "invalid_state": {"en": "not allowed in the agent's current state", "zh": "当前状态下不允许该操作"},
    "no_such_session": {"en": "no such session", "zh": "会话不存在"},
    "session_closed": {"en": "the session is closed", "zh": "会话已关闭"},
    "no_such_call": {"en": "no such call", "zh": "通话不存在"},
    "no_such_agent": {"en": "no such agent", "zh": "坐席不存在"},
    "no_such_visitor": {"en": "no such visitor", "zh": "访客不存在"},
    "visitor_offline": {"en": "the visitor is not connected", "zh": "访客不在线"},
    "agent_offline": {"en": "the agent is not logged in or not connected", "zh": "坐席未登录或不在线"},
    "not_in_call": {"en": "not in a call", "zh": "当前不在通话中"},
    "no_capacity": {"en": "the agent has no free capacity", "zh": "坐席接待量已满"},
    "agent_busy": {"en": "the agent cannot take a call now", "zh": "坐席当前无法接听"},
    "transfer_in_progress": {"en": "a transfer of this call is already in progress", "zh": "该通话已有转接正在进行"},
    "no_transfer": {"en": "no transfer of this agent is in progress", "zh": "当前没有进行中的转接"},
    "no_agent_available": {"en": "no agent of the queue is ready", "zh": "该队列没有空闲坐席"},
    "not_available_yet": {"en": "this API is not available in this version", "zh": "该API在此版本中尚不可用"},
    "no_media": {"en": "no video from the visitor yet", "zh": "尚未收到访客视频"},
    "no_such_media": {"en": "no such photo, snapshot or recording", "zh": "照片、截图或录像不存在"},
    "share_refused": {"en": "the visitor refused to share the screen", "zh": "访客拒绝共享屏幕"},
    "photo_refused": {"en": "the visitor refused the photo", "zh": "访客拒绝拍照"},
    "redirect_refused": {"en": "returnTo is not an allowed origin", "zh": "returnTo 不是允许的地址"},
    "rate_limited": {"en": "too many messages; slow down", "zh": "消息过于频繁,请稍后再试"},
    "upstream_down": {"en": "the connection to the server is down; it is being restored", "zh": "与服务器的连接已断开,正在恢复"},
    "plugin_unreachable": {"en": "the plugin does not answer; start it (IMClient.startup or `kefu plugin`)", "zh": "插件无响应,请先启动插件"},
    "token_revoked": {"en": "this token was revoked (logged out, or the account was changed); log in again", "zh": "令牌已失效(已退出登录或账号已变更),请重新登录"},
    "too_many_connections": {"en": "too many connections from this address; close some and try again", "zh": "该地址的连接数过多,请关闭部分连接后重试"},
    "local_network_denied": {"en": "the browser refused this page access to the local network (the plugin on 127.0.0.1): allow 'local network access' for this site, or ask IT to set the LocalNetworkAccessAllowedForUrls policy for the workstation origin", "zh": "浏览器拒绝了本页面访问本地网络(127.0.0.1 上的插件):请为本站点允许「本地网络访问」,或请IT为坐席页面的来源配置 LocalNetworkAccessAllowedForUrls 策略"},
    "recording_finished": {"en": "the recording is finished and cannot be changed", "zh": "录像已完成,不可修改"},
    "no_such_request": {"en": "no open request with this id", "zh": "没有该id对应的待处理请求"},
    "no_such_webhook": {"en": "no such webhook", "zh": "该回调地址(webhook)不存在"},
    "storage_full": {"en": "the server's storage is full; nothing was stored. Free disk space and try again", "zh": "服务器存储空间已满,未保存任何内容。请释放磁盘空间后重试"},
    "media_server_unavailable": {"en": "the media server is unavailable; the call cannot be placed now", "zh": "媒体服务器不可用,暂时无法建立通话"},
    "media_server_lost": {"en": "the media server stopped during the call; the call has ended", "zh": "通话过程中媒体服务器停止工作,通话已结束"},
    "media_unreachable": {"en": "the call's media could not connect (no network path, even through the relay)", "zh": "通话媒体无法连通(即使经由中继也无可用网络路径)"},
    "timeout": {"en": "the operation timed out", "zh": "操作超时"},
    "internal": {"en": "internal error", "zh": "内部错误"}
  };
  // --- end of the generated messages

  /** An error made here, in `lang`: in Chinese msg is the catalogue's Chinese message and the
   * specific English one moves to `detail` (docs/decisions.md D21); in English msg is the specific one. */
  function localError(mark, code, detail, lang) {
    var known = MESSAGES[code];
    var error = { code: code, msg: detail || (known ? known.en : code) };
    if (lang !== "en" && known) {
      error.msg = known.zh;
      if (detail && detail !== known.en && detail !== known.zh) error.detail = detail;
    }
    return { v: VERSION, mark: mark, subMark: "error", code: code, error: error };
  }

  // The permission that lets a page reach 127.0.0.1: Chrome names it "loopback-network" since it
  // split Local Network Access in two, "local-network-access" before; a name the browser does not
  // know throws (or rejects), and is skipped.
  var LNA_PERMISSIONS = ["loopback-network", "local-network-access"];
  var LNA_HELP = "Allow this site to access apps on this device (the icon left of the address bar, " +
    "or the bank's policy LocalNetworkAccessAllowedForUrls), then reload the page.";

  function onLoopback() {
    var host = global.location ? global.location.hostname : "";
    return host === "127.0.0.1" || host === "localhost" || host === "[::1]" || host === "::1";
  }

  /** done(state) with the Local Network Access permission's state, or null: not asked
   * (a page on loopback needs none) or not known to this browser. */
  function localNetworkState(done) {
    var perms = global.navigator && global.navigator.permissions;
    if (!perms || typeof perms.query !== "function" || onLoopback()) {
      done(null);
      return;
    }
    var i = 0;
    (function next() {
      if (i >= LNA_PERMISSIONS.length) {
        done(null);
        return;
      }
      var asked;
      try {
        asked = perms.query({ name: LNA_PERMISSIONS[i++] });
      } catch (e) {
        next();
        return;
      }
      Promise.resolve(asked).then(function (status) { done(status && status.state ? status.state : null); }, next);
    })();
  }

  function IMClient(options) {
    if (!(this instanceof IMClient)) return new IMClient(options);
    options = options || {};
    if (typeof options.baseWsUrl !== "string" || !/^wss?:\/\//.test(options.baseWsUrl)) {
      throw new Error('IMClient needs baseWsUrl, e.g. "ws://127.0.0.1:1040"');
    }
    if (typeof options.ssoTo !== "string" || !options.ssoTo) {
      throw new Error("IMClient needs ssoTo, the address of the customer-service app");
    }
    this.options = options;
    this.baseWsUrl = options.baseWsUrl;
    this.ssoTo = options.ssoTo;
    this.videoBarVisible = !!options.videoBarVisible;
    this.lang = options.lang === "en" ? "en" : "zh"; // of every error message (D21)
    this.linkStatus = false; // connected to the plugin
    this.ready = false; // the agent is logged in (kefuReady)
    this.state = null; // the agent's latest state code (addition)
    // addition: the call the agent is in (or rings in), as the plugin told it (hello,
    // kefuReady, getState) and the call events moved it; null out of any call (docs/sdk.md)
    this.currentCall = null;
    this._me = null; // the agent's name (kefuReady)
    this._calls = {}; // callId -> the call, as kefu.protocol.mirror.CallMirror keeps it
    this._inner = {};
    this._pending = {};
    this._waiting = []; // requests made before the connection is up
    this._early = []; // pushes that came before the hello reply
    this._nextId = 0;
    this._ws = null;
    this._paired = false;
    this._closed = false;
    this._quitting = false;
    this._backoff = 500;
    this._reportedDown = false; // the code last told to `error` while down, or false
    this._downWhy = "";
    this._connect();
  }

  IMClient.prototype._option = function (name, data) {
    var cb = this.options[name];
    if (typeof cb === "function") safely(cb, this, [data], name);
  };

  IMClient.prototype._connect = function () {
    var self = this;
    var ws;
    try {
      ws = new WebSocket(this.baseWsUrl);
    } catch (e) {
      var mixed = global.location && global.location.protocol === "https:" && /^ws:/.test(this.baseWsUrl);
      this._down("cannot open " + this.baseWsUrl + ": " + e.message +
                 (mixed ? " (a page on https must use wss:// to the plugin, started with --tls-cert)" : ""));
      return;
    }
    var opened = false;
    this._ws = ws;
    this._paired = false;
    this._early = [];
    ws.onopen = function () {
      opened = true;
      var params = { client: "imclient.js", lang: self.lang };
      if (self.options.token) params.token = self.options.token;
      // the page's videoBarVisible reaches the plugin's window (the CLI flag is only the default)
      if ("videoBarVisible" in self.options) params.videoBarVisible = self.videoBarVisible;
      ws.send(JSON.stringify({ v: VERSION, id: "hello", mark: "hello", params: params }));
    };
    ws.onmessage = function (ev) {
      var msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (msg && typeof msg === "object") self._dispatch(msg);
    };
    ws.onclose = function (ev) {
      var wasPaired = self._paired;
      self._ws = null;
      self._paired = false;
      self.linkStatus = false;
      self.ready = false;
      var pending = self._pending;
      self._pending = {};
      Object.keys(pending).forEach(function (id) {
        var req = pending[id];
        req.handle(localError(req.mark, "plugin_unreachable", "the connection to the plugin closed", self.lang));
      });
      if (self._closed || self._quitting) return;
      if (wasPaired) {
        self._down("the connection to the plugin closed (" + ev.code + ")");
        return;
      }
      var unanswered = "the plugin does not answer on " + self.baseWsUrl;
      if (opened) {
        self._down(unanswered);
        return;
      }
      // failed before it opened: the browser may have refused this page the local network
      localNetworkState(function (state) {
        if (self._closed || self._ws !== null) return;
        if (state === "denied" || state === "prompt") {
          self._down("this browser does not let this page reach the plugin on this computer " +
                     "(Local Network Access permission: " + state + "). " + LNA_HELP, "local_network_denied");
        } else {
          self._down(unanswered);
        }
      });
    };
  };

  IMClient.prototype._down = function (why, code) {
    var self = this;
    code = code || "plugin_unreachable";
    this._downWhy = why;
    if (this._reportedDown !== code) {
      this._reportedDown = code;
      this._option("error", localError("client", code, why, this.lang));
    }
    if (this.options.reconnect === false || code === "local_network_denied") {
      // nothing gets through until the user (or the bank's policy) allows it: fail them now
      var waiting = this._waiting;
      this._waiting = [];
      waiting.forEach(function (w) { w.handle(localError(w.mark, code, why, self.lang)); });
    }
    if (this.options.reconnect === false) return;
    setTimeout(function () { if (!self._closed) self._connect(); }, this._backoff);
    this._backoff = Math.min(this._backoff * 2, 10000);
  };

  IMClient.prototype._dispatch = function (msg) {
    if (!this._paired) {
      if (msg.id === "hello" && msg.subMark === "success") {
        this._paired = true;
        this._reportedDown = false;
        this._backoff = 500;
        this.linkStatus = true;
        this._callTold(msg.payload);
        this._option("success", msg);
        // what the plugin pushed before its reply (a browser is greeted at once) follows success
        var early = this._early;
        this._early = [];
        for (var j = 0; j < early.length; j++) this._dispatch(early[j]);
        var waiting = this._waiting;
        this._waiting = [];
        for (var i = 0; i < waiting.length; i++) this._send(waiting[i]);
      } else if (msg.subMark === "error" && (msg.id === "hello" || msg.mark === "client" || !msg.id)) {
        // refused (controller_busy, unauthenticated ...): one error, not another for the close
        if (msg.error && !("code" in msg)) msg.code = msg.error.code;
        this._reportedDown = "plugin_unreachable";
        this._option("error", msg);
      } else {
        this._early.push(msg);
      }
      return;
    }
    if (msg.id && this._pending[msg.id]) {
      var req = this._pending[msg.id];
      if (isFinal(req.mark, msg.subMark)) delete this._pending[msg.id];
      req.handle(msg);
      return;
    }
    if (msg.mark === "client") {
      if (msg.subMark === "kefuReady") {
        this.ready = true;
        this._callTold(msg.payload);
      } else if (msg.subMark === "ssoReady") {
        this.ready = false;
        this._me = null;
        this._calls = {};
        this._currentNow();
      }
      else if (msg.subMark === "quit") this._quitting = true;
      if (msg.subMark === "error" && msg.error && !("code" in msg)) msg.code = msg.error.code;
      this._option(msg.subMark, msg);
      return;
    }
    if (msg.mark === "state") {
      this.state = msg.state;
      this._emit("stateChange", [msg.state, msg.payload]);
      return;
    }
    if (msg.subMark === "error" && !msg.id) {
      this._option("error", msg);
      return;
    }
    if (msg.mark === "event" && msg.subMark === "call") this._callEvent(msg.payload);
    if (typeof msg.subMark === "string") this._emit(msg.subMark, [msg]);
  };

  // currentCall: the same rules as kefu.protocol.mirror.CallMirror (update, current)
  IMClient.prototype._callTold = function (payload) {
    if (!payload || typeof payload !== "object") return;
    if (payload.agent && typeof payload.agent.name === "string") this._me = payload.agent.name;
    if ("currentCall" in payload) {
      this._calls = {};
      var told = payload.currentCall;
      if (told && typeof told === "object") this._callEvent(told, told.share === true);
    }
    this._currentNow();
  };

  IMClient.prototype._callEvent = function (p, share) {
    if (!p || typeof p.callId !== "string" || typeof p.primary !== "string" || !Array.isArray(p.members)) return;
    var old = this._calls[p.callId] || {};
    if (p.what === "ended" || p.phase === "ended") {
      delete this._calls[p.callId];
    } else {
      this._calls[p.callId] = {
        callId: p.callId,
        flow: typeof p.flow === "string" ? p.flow : (old.flow || null),
        phase: typeof p.phase === "string" ? p.phase : (old.phase || null),
        primary: p.primary,
        members: p.members.filter(function (m) { return m && typeof m === "object"; }),
        share: share === undefined ? !!old.share : share
      };
    }
    this._currentNow();
  };

  IMClient.prototype._currentNow = function () {
    var me = this._me;
    var joined = null;
    var invited = null;
    for (var id in this._calls) {
      if (!Object.prototype.hasOwnProperty.call(this._calls, id)) continue;
      var call = this._calls[id];
      for (var i = 0; i < call.members.length; i++) {
        var m = call.members[i];
        if (m.kind !== "agent" || m.name !== me) continue;
        if (m.status === "joined") joined = call;
        else if (m.status === "invited") invited = call;
        break;
      }
    }
    this.currentCall = me === null ? null : (joined || invited);
  };

  IMClient.prototype._emit = function (name, args) {
    var cb = this._inner[name];
    if (typeof cb === "function") safely(cb, this, args, name);
  };

  /** SPEC §3.2: callbacks of the events pushed from inside the plugin. */
  IMClient.prototype.initInnerCallBack = function (callbacks) {
    for (var name in callbacks) {
      if (Object.prototype.hasOwnProperty.call(callbacks, name) && typeof callbacks[name] === "function") {
        this._inner[name] = callbacks[name];
      }
    }
  };

  IMClient.prototype._call = function (mark, options, callback) {
    var self = this;
    if (typeof options === "function" && callback === undefined) {
      callback = options; // logout(cb), getState(cb)
      options = null;
    }
    var callbacks = {};
    var params = {};
    if (options && typeof options === "object") {
      for (var k in options) {
        if (!Object.prototype.hasOwnProperty.call(options, k)) continue;
        if (typeof options[k] === "function") callbacks[k] = options[k];
        else params[k] = options[k];
      }
    }
    var req = {
      mark: mark,
      params: params,
      handle: function (msg) {
        if (msg.subMark === "error" && msg.error && !("code" in msg)) msg.code = msg.error.code;
        if (mark === "getState" && msg.subMark === "success") self._callTold(msg.payload);
        var cb = callbacks[msg.subMark];
        if (typeof cb !== "function" && ALIASES[msg.subMark]) cb = callbacks[ALIASES[msg.subMark]];
        if (typeof cb === "function") safely(cb, self, [msg], msg.subMark);
        if (typeof callback === "function") safely(callback, self, [msg.state, payloadOf(msg)], "state");
      }
    };
    if (mark === "quit") this._quitting = true;
    if (this._paired) this._send(req);
    else if (this._closed) req.handle(localError(mark, "plugin_unreachable", "the client is closed", this.lang));
    else if (this._reportedDown === "local_network_denied") {
      req.handle(localError(mark, "local_network_denied", this._downWhy, this.lang));
    } else this._waiting.push(req);
  };

  IMClient.prototype._send = function (req) {
    var id = "j" + (++this._nextId);
    this._pending[id] = req;
    var msg = { v: VERSION, id: id, mark: req.mark };
    if (Object.keys(req.params).length) msg.params = req.params;
    try {
      this._ws.send(JSON.stringify(msg));
    } catch (e) {
      delete this._pending[id];
      req.handle(localError(req.mark, "plugin_unreachable", "not connected to the plugin", this.lang));
    }
  };

  /** Addition: close the connection to the plugin (the plugin keeps running). */
  IMClient.prototype.close = function () {
    this._closed = true;
    if (this._ws) this._ws.close();
  };

  APIS.forEach(function (mark) {
    IMClient.prototype[mark] = function (options, callback) {
      return this._call(mark, options, callback);
    };
  });

  /** SPEC §4.1 startup: show the plugin; if nothing answers, launch it through its URL scheme. */
  IMClient.prototype.startup = function (options, callback) {
    var url = (options && options.clientUrl) || "pocprotocol://";
    if (!this._paired && url === "pocprotocol://" && global.location) {
      try {
        global.location.href = url; // the OS starts `kefu plugin` (kefu plugin --install-url-handler)
      } catch (e) { /* not in a browser that allows it */ }
    }
    return this._call("startup", options, callback);
  };

  IMClient.version = VERSION;
  IMClient.isFinal = isFinal;
  global.IMClient = IMClient;
})(typeof window !== "undefined" ? window : this);
