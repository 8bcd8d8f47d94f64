// nuvol dashboard: live updates. The page names its stream in
// <body data-live>; the server sends rows it rendered (and escaped) and
// this script puts them in place by key, so a page never reloads. Without
// JavaScript every page still works; it just does not update itself.
(function () {
  "use strict";
  var src = document.body.getAttribute("data-live");
  if (!src || !window.EventSource) return;
  var status = document.getElementById("live-status");
  function say(on) {
    if (!status) return;
    status.textContent = on ? status.getAttribute("data-on") : status.getAttribute("data-off");
    status.className = "live " + (on ? "on" : "off");
  }
  function byKey(list, key) {
    for (var i = 0; i < list.children.length; i++) {
      if (list.children[i].getAttribute("data-key") === key) return list.children[i];
    }
    return null;
  }
  function apply(m) {
    if (m.op === "reload") {
      // More changed since the page was rendered than the server kept.
      window.location.reload();
      return;
    }
    if (m.op === "text") {
      var el = document.getElementById(m.id);
      if (el) el.textContent = m.text;
      return;
    }
    var lists = document.querySelectorAll("[data-list]");
    for (var i = 0; i < lists.length; i++) {
      var list = lists[i];
      if (list.getAttribute("data-list") !== m.list) continue;
      var old = byKey(list, m.key);
      var newest = list.getAttribute("data-order") === "newest-first";
      if (m.op === "remove") {
        if (old) old.parentNode.removeChild(old);
        continue;
      }
      var t = document.createElement("template");
      t.innerHTML = m.html;
      var node = t.content.firstElementChild;
      if (!node) continue;
      if (old) {
        old.parentNode.replaceChild(node, old);
      } else if (newest) {
        list.insertBefore(node, list.firstElementChild);
      } else {
        list.appendChild(node);
      }
      // A bounded list drops its oldest rows (at the end when the newest
      // come first, else at the start: a log).
      var max = parseInt(list.getAttribute("data-max") || "0", 10);
      while (max > 0 && list.children.length > max) {
        list.removeChild(newest ? list.lastElementChild : list.firstElementChild);
      }
      var empty = document.getElementById(list.getAttribute("data-empty") || "");
      if (empty) empty.hidden = true;
    }
  }
  var es = new EventSource(src);
  es.onopen = function () { say(true); };
  es.onerror = function () { say(false); };
  es.addEventListener("u", function (e) {
    try { apply(JSON.parse(e.data)); } catch (err) { /* a bad message is skipped */ }
  });
})();
