// The curlyq dashboard's only script. Every page works without it; with it, the
// overview's live part refreshes itself, and destructive buttons ask first.
(function () {
  "use strict";

  // Re-fetches the fragment named by data-refresh-src every data-refresh-ms
  // milliseconds (not while the tab is hidden, never two at once) and puts it in place.
  function keepFresh(el) {
    var src = el.getAttribute("data-refresh-src");
    var every = parseInt(el.getAttribute("data-refresh-ms"), 10);
    if (!src || !(every >= 1000)) {
      return;
    }
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) {
        return;
      }
      busy = true;
      fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          el.replaceChildren.apply(el, Array.prototype.slice.call(doc.body.childNodes));
          el.removeAttribute("data-stale");
        })
        .catch(function () {
          // Keep the last good view, marked as out of date.
          el.setAttribute("data-stale", "true");
        })
        .finally(function () {
          busy = false;
        });
    }, every);
  }

  // Forms with data-confirm ask before they are sent.
  function askFirst(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }

  function start() {
    document.querySelectorAll("[data-refresh-src]").forEach(keepFresh);
    document.querySelectorAll("form[data-confirm]").forEach(askFirst);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
