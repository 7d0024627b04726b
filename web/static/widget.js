/* Switchboard chat widget. Embed with:
 *   <script src="https://HOST/widget.js" data-inbox="PUBLIC_TOKEN" async></script>
 * Optional: data-identifier, data-identifier-hash (HMAC-SHA256 of the identifier with the
 * inbox secret, computed by your server), data-name; or window.Switchboard.identify({...}).
 * Plain JavaScript in a Shadow DOM: the page's CSS cannot reach it, and it touches nothing
 * of the page but its own host element. Every text is set with textContent. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.Switchboard) return;
  var inbox = script.getAttribute("data-inbox");
  var base = new URL(script.src, location.href).origin;
  var api = base + "/widget/api/" + encodeURIComponent(inbox);
  var wsUrl = base.replace(/^http/, "ws") + "/widget/ws/" + encodeURIComponent(inbox);
  var keyToken = "switchboard:" + inbox + ":token";
  var keyOutbox = "switchboard:" + inbox + ":outbox";
  var who = {
    identifier: script.getAttribute("data-identifier") || undefined,
    identifier_hash: script.getAttribute("data-identifier-hash") || undefined,
    name: script.getAttribute("data-name") || undefined
  };
  var state = { token: null, config: null, socket: null, retry: 1000, shown: {}, open: false,
                online: true, sentOnce: false, typingAt: 0, closed: false, agentIds: [] };
  // Receipts told to the team already: "delivered" once a reply reached this page, "read"
  // once the visitor had the chat open on a visible page.
  var told = { delivered: {}, read: {} };

  function store(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, typeof value === "string" ? value : JSON.stringify(value));
    } catch (e) { /* private mode: the thread lasts this page only */ }
  }
  function load(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function outbox() { try { return JSON.parse(load(keyOutbox) || "[]"); } catch (e) { return []; } }
  function newId() {
    var a = new Uint8Array(16); crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A custom tag, so the page's type selectors (div, button...) never match the host; and
  // everything lives in a wrapper that resets inherited styles (all: initial).
  var host = el("switchboard-widget");
  var root = host.attachShadow({ mode: "open" });
  var css = el("style");
  css.textContent = [
    ":host{all:initial}",
    ".sb{all:initial;position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330}",
    ".sb *{box-sizing:border-box;font:inherit;color:inherit;letter-spacing:normal;text-transform:none}",
    ".sb .launch{width:56px;height:56px;border-radius:50%;border:0;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;background:var(--accent)}",
    ".panel{display:none;flex-direction:column;position:absolute;right:0;bottom:70px;width:340px;max-width:calc(100vw - 40px);height:460px;max-height:calc(100vh - 110px);background:#fff;border-radius:12px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.25)}",
    ".panel.open{display:flex}",
    ".sb .head{padding:14px 16px;color:#fff;background:var(--accent)}",
    ".head b{display:block;font-size:15px}.head span{font-size:12px;opacity:.9}",
    ".log{flex:1;overflow-y:auto;padding:12px;background:#f6f7fb}",
    ".msg{max-width:80%;margin:4px 0;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}",
    ".agent{background:#fff;border:1px solid #e2e5ee}",
    ".sb .visitor{margin-left:auto;color:#fff;background:var(--accent)}",
    ".pending{opacity:.6}",
    ".note{font-size:12px;color:#5b6275;text-align:center;margin:8px 0}",
    ".typing{font-size:12px;color:#5b6275;padding:0 14px;height:18px}",
    ".away{padding:10px 12px;background:#fff8e6;border-top:1px solid #f0e2b6;font-size:13px}",
    ".away form{display:flex;gap:6px;margin-top:6px}",
    ".away input{flex:1;padding:6px 8px;border:1px solid #cfd4e0;border-radius:6px;font:inherit}",
    ".bar{display:flex;gap:6px;padding:10px;border-top:1px solid #e2e5ee;background:#fff}",
    "textarea{flex:1;resize:none;height:40px;padding:9px 10px;border:1px solid #cfd4e0;border-radius:8px;font:inherit}",
    ".sb button.send,.sb .away button{border:0;border-radius:8px;color:#fff;padding:0 14px;cursor:pointer;background:var(--accent)}",
    ".sb .status{font-size:12px;color:#a33;padding:0 12px}",
    ".sb .head b{font-weight:600;font-size:15px}.sb .head span{font-size:12px}",
    ".sb .file{display:block;margin-top:4px;text-decoration:underline;cursor:pointer;color:inherit}",
    ".sb .msg img{display:block;max-width:100%;max-height:180px;margin-top:4px;border-radius:8px;cursor:pointer}",
    ".sb .who{font-size:11px;font-weight:600;color:#5b6275;margin:8px 0 0 4px}",
    ".sb .launch{position:relative}",
    ".sb .csat{margin:4px 0 8px;padding:8px;background:#fff;border:1px solid #e2e5ee;border-radius:12px;max-width:90%}",
    ".sb .scores{display:flex;gap:6px}",
    ".sb button.score{width:34px;height:34px;border:1px solid #cfd4e0;border-radius:50%;background:#fff;cursor:pointer;font-weight:600}",
    ".sb button.score[aria-pressed=true]{color:#fff;background:var(--accent);border-color:var(--accent)}",
    ".sb .thanks{font-size:12px;color:#5b6275;margin-top:6px}",
    ".sb .csat form{display:flex;gap:6px;margin-top:6px}",
    ".sb .csat form button{border:0;border-radius:8px;color:#fff;padding:0 12px;cursor:pointer;background:var(--accent)}",
    ".sb .unread{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#e03131;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center;box-sizing:border-box}"
  ].join("\n");
  root.appendChild(css);
  var launch = el("button", "launch");
  var unreadBadge = el("span", "unread");
  unreadBadge.style.display = "none";
  var svgNs = "http://www.w3.org/2000/svg", icon = document.createElementNS(svgNs, "svg");
  var path = document.createElementNS(svgNs, "path");
  icon.setAttribute("viewBox", "0 0 24 24"); icon.setAttribute("width", "26"); icon.setAttribute("height", "26");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  icon.appendChild(path); launch.appendChild(icon); launch.appendChild(unreadBadge);
  launch.setAttribute("aria-label", "Open chat");
  var panel = el("div", "panel");
  panel.setAttribute("role", "dialog");
  var head = el("div", "head"), title = el("b", "", "Chat"), sub = el("span", "", "");
  head.appendChild(title); head.appendChild(sub);
  var log = el("div", "log");
  log.setAttribute("aria-live", "polite");
  var typing = el("div", "typing", "");
  var status = el("div", "status", "");
  var away = el("div", "away");
  away.style.display = "none";
  var awayText = el("div", "", "");
  var form = el("form"), email = el("input"), save = el("button", "", "Send");
  email.type = "email"; email.placeholder = "you@example.com"; email.required = true;
  email.setAttribute("aria-label", "Your email");
  form.appendChild(email); form.appendChild(save);
  away.appendChild(awayText); away.appendChild(form);
  var bar = el("div", "bar"), input = el("textarea"), send = el("button", "send", "Send");
  input.placeholder = "Write a message\u2026";
  input.setAttribute("aria-label", "Message");
  input.maxLength = 5000;
  bar.appendChild(input); bar.appendChild(send);
  [head, log, typing, away, status, bar].forEach(function (n) { panel.appendChild(n); });
  var wrap = el("div", "sb");
  wrap.appendChild(panel); wrap.appendChild(launch);
  root.appendChild(wrap);

  function setAccent(color) { wrap.style.setProperty("--accent", color || "#3157d5"); }
  setAccent();

  function bubble(message, pending) {
    var key = message.client_id || message.id;
    if (message.client_id && state.shown[message.client_id]) {
      var mine = state.shown[message.client_id];
      mine.classList.remove("pending");
      if (message.id) state.shown["s" + message.id] = mine;
      return;
    }
    if (message.id && state.shown["s" + message.id]) return;
    var b = el("div", "msg " + (message.from === "visitor" ? "visitor" : "agent"), message.text);
    // Who answered, above their reply (not when they answer twice in a row).
    var last = log.lastElementChild;
    if (message.from === "agent" && message.agent && (!last || last.dataset.agent !== message.agent)) {
      log.appendChild(el("div", "who", message.agent));
    }
    if (message.from === "agent" && message.agent) b.dataset.agent = message.agent;
    (message.attachments || []).forEach(function (file) { b.appendChild(fileView(file)); });
    if (pending) b.classList.add("pending");
    if (message.client_id) state.shown[message.client_id] = b;
    if (message.id) state.shown["s" + message.id] = b;
    if (message.id && message.from === "agent") state.agentIds.push(message.id);
    log.appendChild(b);
    if (message.survey) log.appendChild(rating(message.rated));
    log.scrollTop = log.scrollHeight;
    return key;
  }
  // The satisfaction survey: 1-5 (one click records it), then an optional comment.
  function rating(rated) {
    var box = el("div", "csat"), row = el("div", "scores"), thanks = el("div", "thanks", "");
    var more = el("form", "more"), comment = el("textarea"), sendComment = el("button", "", "Send");
    var chosen = rated || null;
    comment.placeholder = "Anything to add? (optional)";
    comment.setAttribute("aria-label", "Comment");
    comment.maxLength = 2000;
    more.appendChild(comment); more.appendChild(sendComment);
    more.style.display = "none";
    function said(score) {
      chosen = score;
      thanks.textContent = "Thank you! You rated us " + score + " out of 5.";
      Array.prototype.forEach.call(row.children, function (button) {
        button.setAttribute("aria-pressed", String(Number(button.dataset.score) === score));
      });
    }
    [1, 2, 3, 4, 5].forEach(function (n) {
      var button = el("button", "score", String(n));
      button.type = "button";
      button.dataset.score = String(n);
      button.setAttribute("aria-label", "Rate " + n + " out of 5");
      button.addEventListener("click", function () {
        request("POST", "/csat", { score: n }).then(function () {
          said(n); more.style.display = "flex"; status.textContent = "";
        }).catch(function (e) { status.textContent = e.message; });
      });
      row.appendChild(button);
    });
    more.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!chosen || !comment.value.trim()) return;
      request("POST", "/csat", { score: chosen, comment: comment.value }).then(function () {
        more.style.display = "none";
        thanks.textContent = "Thank you! Your comment reached the team.";
      }).catch(function (e) { status.textContent = e.message; });
    });
    box.appendChild(row); box.appendChild(thanks); box.appendChild(more);
    if (rated) said(rated);
    return box;
  }
  // Files are fetched with the visitor's token (never put in a URL), then handed to the
  // browser as a blob: plain images are shown, everything else is a download link.
  var IMAGES = { "image/png": 1, "image/jpeg": 1, "image/gif": 1, "image/webp": 1 };
  function fetchFile(file) {
    return fetch(api + "/attachments/" + encodeURIComponent(file.id), {
      headers: { Authorization: "Bearer " + state.token }
    }).then(function (r) {
      if (!r.ok) throw new Error("The file " + file.filename + " could not be downloaded");
      return r.blob();
    });
  }
  function download(file) {
    fetchFile(file).then(function (blob) {
      var url = URL.createObjectURL(blob), a = el("a");
      a.href = url; a.download = file.filename; a.style.display = "none";
      wrap.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
    }).catch(function (e) { status.textContent = e.message; });
  }
  function fileView(file) {
    var kb = Math.max(1, Math.round((file.size || 0) / 1024));
    var link = el("a", "file", "\uD83D\uDCCE " + file.filename + " (" + kb + " KB)");
    link.href = "#";
    link.setAttribute("data-file", file.id);
    link.addEventListener("click", function (e) { e.preventDefault(); download(file); });
    if (!IMAGES[file.content_type]) return link;
    var box = el("div");
    var img = el("img");
    img.alt = file.filename;
    img.addEventListener("click", function () { download(file); });
    fetchFile(file).then(function (blob) { img.src = URL.createObjectURL(blob); })
      .catch(function () { img.remove(); });
    box.appendChild(img); box.appendChild(link);
    return box;
  }

  function tell(kind) {
    if (!state.socket || state.socket.readyState !== 1) return;
    var ids = state.agentIds.filter(function (id) { return !told[kind][id]; }).slice(-200);
    if (!ids.length) return;
    ids.forEach(function (id) { told[kind][id] = true; });
    state.socket.send(JSON.stringify({ type: kind, ids: ids }));
  }
  function receipts() {
    tell("delivered");
    if (state.open && document.visibilityState === "visible") { tell("read"); unread(0); }
  }
  // Replies while the chat is minimised or the page hidden: a count on the launcher, and the
  // page's title blinks until the visitor looks.
  var pageTitle = document.title, blink = null;
  function unread(count) {
    state.unread = count;
    unreadBadge.textContent = count > 9 ? "9+" : String(count);
    unreadBadge.style.display = count ? "block" : "none";
    if (count && !blink) {
      pageTitle = document.title;
      blink = setInterval(function () {
        document.title = document.title === pageTitle
          ? "(" + state.unread + ") New message" : pageTitle;
      }, 1000);
    } else if (!count && blink) {
      clearInterval(blink); blink = null; document.title = pageTitle;
    }
  }
  document.addEventListener("visibilitychange", receipts);

  function render(messages) {
    log.textContent = ""; state.shown = {}; state.agentIds = [];
    if (state.config) log.appendChild(el("div", "note", state.config.greeting));
    (messages || []).forEach(function (m) { bubble(m); });
    outbox().forEach(function (m) { bubble({ client_id: m.id, from: "visitor", text: m.text }, true); });
  }
  function showConfig(config) {
    state.config = config;
    state.online = config.online;
    title.textContent = config.name;
    sub.textContent = config.online ? "We usually reply in a few minutes" : "We're away right now";
    setAccent(config.accent_color);
    awayText.textContent = config.away_message;
    away.style.display = !config.online && state.sentOnce ? "block" : "none";
  }

  function request(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return fetch(api + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) { var e = new Error((data.error && data.error.message) || r.statusText); e.status = r.status; throw e; }
          return data;
        });
      });
  }

  // Where the visitor is, for the agent's contact panel: this page, where they came from,
  // their language and time zone (the server reads the browser and OS from User-Agent).
  function visit() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { zone = undefined; }
    return { url: location.href, title: document.title, referrer: document.referrer || undefined,
             language: navigator.language || undefined, time_zone: zone };
  }

  function start() {
    state.closed = false;
    return request("POST", "/session", {
      token: load(keyToken) || undefined, identifier: who.identifier,
      identifier_hash: who.identifier_hash, name: who.name, visit: visit()
    }).then(function (data) {
      state.token = data.token; store(keyToken, data.token);
      state.sentOnce = data.messages.some(function (m) { return m.from === "visitor"; });
      showConfig(data.config); render(data.messages); status.textContent = "";
      connect();
    }).catch(function (e) { status.textContent = e.message; });
  }

  function connect() {
    if (state.closed) return;
    var socket = new WebSocket(wsUrl);
    state.socket = socket;
    socket.onopen = function () { socket.send(JSON.stringify({ type: "hello", token: state.token })); };
    socket.onmessage = function (e) {
      var frame = JSON.parse(e.data);
      if (frame.type === "ready") {
        state.retry = 1000; status.textContent = "";
        showConfig(frame.config); render(frame.messages); flush(); receipts();
      } else if (frame.type === "reload") {
        render(frame.messages); receipts();
      } else if (frame.type === "config") {
        showConfig(frame.config); // an agent came online or went away: no reload needed
      } else if (frame.type === "message") {
        bubble(frame.message);
        if (frame.message.from === "agent") {
          typing.textContent = "";
          if (!state.open || document.visibilityState !== "visible") unread((state.unread || 0) + 1);
          receipts();
        }
      } else if (frame.type === "ack") {
        store(keyOutbox, outbox().filter(function (m) { return m.id !== frame.id; }));
      } else if (frame.type === "typing") {
        typing.textContent = frame.typing ? "Typing\u2026" : "";
      } else if (frame.type === "error") {
        status.textContent = frame.message;
        if (frame.id) dropPending(frame.id);
      }
    };
    socket.onclose = function (e) {
      if (state.socket !== socket || state.closed) return;
      state.socket = null;
      if (e.code === 4401) { store(keyToken, null); state.token = null; start(); return; }
      status.textContent = "Reconnecting\u2026";
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 15000);
    };
  }

  function dropPending(id) {
    store(keyOutbox, outbox().filter(function (m) { return m.id !== id; }));
    if (state.shown[id]) { state.shown[id].remove(); delete state.shown[id]; }
  }

  // Every message waits in localStorage until the server acknowledges it; the server keeps
  // one message per id, so a resend after a drop can never double it.
  function flush() {
    outbox().forEach(function (m) {
      if (state.socket && state.socket.readyState === 1) {
        state.socket.send(JSON.stringify({ type: "message", id: m.id, text: m.text, language: m.language }));
      } else if (state.token) {
        request("POST", "/messages", { id: m.id, text: m.text, language: m.language }).then(function () {
          store(keyOutbox, outbox().filter(function (x) { return x.id !== m.id; }));
        }).catch(function (e) {
          if (e.status && e.status < 500 && e.status !== 429) dropPending(m.id);
          status.textContent = e.message;
        });
      }
    });
  }

  function submit() {
    var text = input.value.trim();
    if (!text) return;
    var message = { id: newId(), text: text, language: navigator.language || undefined };
    store(keyOutbox, outbox().concat([message]));
    bubble({ client_id: message.id, from: "visitor", text: text }, true);
    input.value = "";
    state.sentOnce = true;
    if (!state.online) away.style.display = "block";
    if (state.socket && state.socket.readyState === 1) {
      state.socket.send(JSON.stringify({ type: "typing", typing: false }));
    }
    state.typingAt = 0;  // the next key pressed says "typing" again at once
    flush();
  }

  send.addEventListener("click", submit);
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - state.typingAt > 2000 && state.socket && state.socket.readyState === 1) {
      state.typingAt = now;
      state.socket.send(JSON.stringify({ type: "typing", typing: true }));
    }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    request("POST", "/email", { email: email.value }).then(function (data) {
      awayText.textContent = "Thanks! We'll reply to " + data.email + ".";
      form.style.display = "none";
    }).catch(function (err) { status.textContent = err.message; });
  });
  launch.addEventListener("click", function () {
    state.open = !state.open;
    panel.classList.toggle("open", state.open);
    if (state.open) { input.focus(); receipts(); }
  });

  window.Switchboard = {
    identify: function (user) {
      who = { identifier: user.identifier, identifier_hash: user.identifier_hash, name: user.name };
      return restart();
    },
    reset: function () { who = {}; store(keyToken, null); return restart(); },
    open: function () { state.open = true; panel.classList.add("open"); receipts(); }
  };
  function restart() {
    state.closed = true;
    if (state.socket) { var s = state.socket; state.socket = null; s.close(); }
    store(keyOutbox, null);
    return start();
  }

  (document.body || document.documentElement).appendChild(host);
  start();
})();
