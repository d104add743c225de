// Cascade pages: a little vanilla JS. Progressive: every page works without it.
(function () {
  "use strict";

  // <select data-autosubmit> submits its form on change (the operator switcher).
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
  });

  // <form data-confirm="Really?"> asks before it is sent (launch, pause, cancel).
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Poll a JSON URL and hand the answer to a page function; stops when told to.
  window.cascadePoll = function (url, onData, intervalMs) {
    var timer = null;
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && onData(data) === false) return;
          timer = setTimeout(tick, intervalMs || 2000);
        })
        .catch(function () { timer = setTimeout(tick, (intervalMs || 2000) * 2); });
    }
    tick();
    return function stop() { clearTimeout(timer); };
  };

  // Debounced GET of a URL built from a form, into an element (live counts, previews).
  window.cascadeLive = function (form, url, target, delayMs) {
    var timer = null;
    var latest = 0;
    function refresh() {
      var params = new URLSearchParams(new FormData(form));
      var mine = ++latest;
      target.setAttribute("aria-busy", "true");
      fetch(url + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          if (mine !== latest) return; // a newer answer is on its way: drop this older one
          target.innerHTML = html;
          target.setAttribute("aria-busy", "false");
        });
    }
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, delayMs || 300);
    });
    form.addEventListener("change", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, delayMs || 300);
    });
    refresh();
  };
})();
