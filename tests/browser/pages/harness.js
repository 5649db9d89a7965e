/* Test harness of the workstation page: what a test needs around the spec's
 * samples, without touching a character of them.
 *
 * 1. Port mapping. The spec's init sample connects to "ws://127.0.0.1:1040"
 *    (a page served over http) or "wss://lccp-ex.easemob.com:1040" (over
 *    https). The test's plugin listens on a free port, given by /config.js:
 *    WebSocket URLs on port 1040 of those hosts are mapped to it here (same
 *    scheme and host), and every URL asked for is kept in window.__sockets.
 * 2. Recording. Every callback the samples give IMClient (the constructor's
 *    options, initInnerCallBack's, each API's v1204 callbacks and v190307
 *    callback) is wrapped: before it runs, {api, name, args} goes into
 *    window.__calls (args as JSON). console.log lines go into window.__logs,
 *    page errors (a sample's SyntaxError) into window.__errors.
 * 3. window.runSample(name): load /samples/<name>.js as a classic script and
 *    resolve with the errors it raised.
 */
(function () {
  "use strict";
  var cfg = window.KEFU_TEST;
  window.__calls = [];
  window.__logs = [];
  window.__errors = [];
  window.__sockets = [];

  function clone(x) {
    try {
      return JSON.parse(JSON.stringify(x === undefined ? null : x));
    } catch (e) {
      return String(x);
    }
  }

  // --- 1. ws://127.0.0.1:1040 -> the test's plugin
  var NativeWebSocket = window.WebSocket;
  var SPEC_PLUGIN = /^(ws:\/\/127\.0\.0\.1|wss:\/\/lccp-ex\.easemob\.com):1040(?=\/|$)/;
  function MappedWebSocket(url, protocols) {
    window.__sockets.push(String(url));
    var target = String(url).replace(SPEC_PLUGIN, "$1:" + cfg.pluginPort);
    return protocols === undefined ? new NativeWebSocket(target) : new NativeWebSocket(target, protocols);
  }
  MappedWebSocket.prototype = NativeWebSocket.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (k) { MappedWebSocket[k] = NativeWebSocket[k]; });
  window.WebSocket = MappedWebSocket;

  // --- 2. recording
  var nativeLog = console.log;
  console.log = function () {
    window.__logs.push(clone(Array.prototype.slice.call(arguments)));
    return nativeLog.apply(console, arguments);
  };
  window.addEventListener("error", function (ev) {
    window.__errors.push({ message: ev.message, source: ev.filename || "", line: ev.lineno || 0 });
  });

  function record(api, name, args) {
    window.__calls.push({ api: api, name: name, args: clone(Array.prototype.slice.call(args)) });
  }
  function wrap(api, name, fn) {
    return function () {
      record(api, name, arguments);
      return fn.apply(this, arguments);
    };
  }
  function wrapOptions(api, options) {
    if (!options || typeof options !== "object") return options;
    var out = {};
    Object.keys(options).forEach(function (k) {
      out[k] = typeof options[k] === "function" ? wrap(api, k, options[k]) : options[k];
    });
    return out;
  }

  var Native = window.IMClient;
  if (typeof Native !== "function") {
    window.__errors.push({ message: "imclient.js did not define IMClient", source: cfg.imclientUrl, line: 0 });
    return;
  }
  function RecordedIMClient(options) {
    return new Native(wrapOptions("IMClient", options));
  }
  RecordedIMClient.prototype = Native.prototype;
  Object.keys(Native).forEach(function (k) { RecordedIMClient[k] = Native[k]; });
  window.IMClient = RecordedIMClient;

  Object.getOwnPropertyNames(Native.prototype).forEach(function (m) {
    var orig = Native.prototype[m];
    if (typeof orig !== "function" || m === "constructor" || m === "close" || m.charAt(0) === "_") return;
    Native.prototype[m] = function (options, callback) {
      if (typeof options === "function" && callback === undefined) {
        return orig.call(this, wrap(m, "callback", options));
      }
      var cb = typeof callback === "function" ? wrap(m, "callback", callback) : callback;
      return orig.call(this, wrapOptions(m, options), cb);
    };
  });

  // --- 3. running a sample
  window.runSample = function (name) {
    var before = window.__errors.length;
    return new Promise(function (resolve) {
      var s = document.createElement("script");
      s.src = "/samples/" + name + ".js";
      s.onload = function () { resolve(window.__errors.slice(before)); };
      s.onerror = function () { resolve([{ message: "could not load " + s.src }]); };
      document.body.appendChild(s);
    });
  };
})();
