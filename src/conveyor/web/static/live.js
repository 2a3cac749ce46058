// conveyor dashboard: keep the page live without a reload.
// Every N seconds (body data-live-every) fetch this same URL and swap in each element
// marked data-live (by id) whose server-rendered HTML changed. No inline script, no
// third-party code: served from the package under script-src 'self'.
"use strict";
(function () {
  var body = document.body;
  var every = parseFloat(body.getAttribute("data-live-every") || "0");
  if (!(every > 0) || !window.fetch || !window.DOMParser) { return; }
  var status = document.getElementById("live-status");
  var last = {};  // id -> the server's HTML of that element at the last update
  document.querySelectorAll("[data-live]").forEach(function (el) { last[el.id] = el.outerHTML; });
  var busy = false;
  var updates = 0;

  function say(text, bad) {
    if (!status) { return; }
    status.textContent = text;
    status.className = bad ? "live stale" : "live";
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, {
      credentials: "same-origin", cache: "no-store", redirect: "error",
      headers: { "X-Conveyor-Live": "1" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var changed = 0;
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var next = fresh.getElementById(el.id);
        if (!next || next.outerHTML === last[el.id]) { return; }
        last[el.id] = next.outerHTML;
        el.replaceWith(document.importNode(next, true));
        changed += 1;
      });
      updates += 1;
      body.setAttribute("data-live-updates", String(updates));
      var now = new Date();
      say("live · " + pad(now.getHours()) + ":" + pad(now.getMinutes()) + ":" +
          pad(now.getSeconds()) + (changed ? " · " + changed + " changed" : ""), false);
    }).catch(function (error) {
      say("live · not updated (" + error.message + "; reload to sign in again?)", true);
    }).then(function () { busy = false; });
  }

  window.setInterval(tick, every * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
})();
