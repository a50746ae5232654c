// Switchboard dashboard: refreshes the overview's body in place every few seconds.
// The server renders everything (including the chart); this only swaps the HTML fragment.
(function () {
  "use strict";

  function startRefresh(container) {
    var url = container.dataset.refreshUrl;
    var seconds = Number(container.dataset.refreshSeconds) || 15;
    var busy = false;

    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          // Logged out or lost the permission meanwhile: reload, which leads to the login page.
          if (response.redirected || response.status === 401 || response.status === 403) {
            window.location.reload();
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return;
          container.innerHTML = html;
          container.classList.remove("stale");
          container.dataset.refreshedAt = new Date().toISOString();
        })
        .catch(function () {
          container.classList.add("stale"); // keep the last good view; try again next time
        })
        .finally(function () {
          busy = false;
        });
    }

    window.setInterval(refresh, seconds * 1000);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.querySelector("[data-refresh-url]");
    if (container) startRefresh(container);
  });
})();
