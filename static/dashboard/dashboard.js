// Switchboard dashboard: refreshes the overview's body in place every few seconds, unless paused.
// The server renders everything (including the chart); this only swaps the HTML fragment.
(function () {
  "use strict";

  var PAUSED_KEY = "switchboard.refreshPaused";

  function isPaused() {
    try {
      return window.localStorage.getItem(PAUSED_KEY) === "1";
    } catch (error) {
      return false;
    }
  }

  function setPaused(paused) {
    try {
      window.localStorage.setItem(PAUSED_KEY, paused ? "1" : "0");
    } catch (error) {
      // private mode: the choice lasts as long as the page
    }
  }

  function startRefresh(container, control) {
    var url = container.dataset.refreshUrl;
    var seconds = Number(container.dataset.refreshSeconds) || 15;
    var busy = false;
    var paused = isPaused();

    function showState() {
      if (!control) return;
      var button = control.querySelector("[data-pause]");
      var state = control.querySelector("[data-refresh-state]");
      button.textContent = paused ? "Resume refresh" : "Pause refresh";
      button.setAttribute("aria-pressed", paused ? "true" : "false");
      state.textContent = paused ? "Paused: the page shows the time it was last refreshed." : "Refreshes every " + seconds + " s.";
    }

    function refresh() {
      if (busy || paused || document.hidden) return;
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
          if (html === null || paused) return;
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

    if (control) {
      control.querySelector("[data-pause]").addEventListener("click", function () {
        paused = !paused;
        setPaused(paused);
        showState();
        if (!paused) refresh();
      });
    }
    showState();
    window.setInterval(refresh, seconds * 1000);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.querySelector("[data-refresh-url]");
    if (container) startRefresh(container, document.querySelector("[data-refresh-control]"));
  });
})();
