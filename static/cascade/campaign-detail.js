// The campaign dashboard: polls the stats URL (the board's data-stats-url) and redraws the
// counters, the funnel and the tables; reloads when the state changes, for the buttons.
(function () {
  "use strict";

  var board = document.getElementById("dashboard");
  if (!board) return;
  var cols = ["total", "fell_through_here", "waiting", "sent", "delivered", "read", "failed", "skipped"];

  // Counts grouped as the page's language writes them (12 345 in Russian), like the server's.
  var numbers = new Intl.NumberFormat(document.documentElement.lang || undefined);
  var counted = ["recipients", "delivered", "read", "failed", "skipped"];

  function cell(text, numeric) {
    var td = document.createElement("td");
    td.textContent = numeric ? numbers.format(text) : text;
    if (numeric) td.className = "num";
    return td;
  }

  function draw(data) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var key = el.getAttribute("data-field");
      if (!(key in data)) return;
      el.textContent = counted.indexOf(key) >= 0 ? numbers.format(data[key]) : data[key];
    });
    document.getElementById("state").className = "badge " + data.state;
    // Widths set through el.style (the CSSOM), which a Content-Security-Policy allows.
    document.querySelector("[data-bar=progress]").style.width = data.progress + "%";
    var top = Math.max(1, data.funnel[0].count);
    data.funnel.forEach(function (stage) {
      document.querySelector("[data-funnel=" + stage.stage + "]").style.width = (100 * stage.count / top) + "%";
      document.querySelector("[data-funnel-count=" + stage.stage + "]").textContent = numbers.format(stage.count);
    });
    var body = document.querySelector("#channels tbody");
    body.replaceChildren.apply(body, data.channels.map(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-channel", c.channel);
      tr.appendChild(cell(c.channel_label));
      cols.forEach(function (k) { var td = cell(c[k], true); td.setAttribute("data-col", k); tr.appendChild(td); });
      return tr;
    }));
    var failures = document.querySelector("#failures tbody");
    var rows = data.failures.map(function (f) {
      var tr = document.createElement("tr");
      [f.channel_label, f.status_label, f.reason_label].forEach(function (v) { tr.appendChild(cell(v)); });
      tr.appendChild(cell(f.count, true));
      return tr;
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = cell(gettext("None so far."));
      td.colSpan = 4;
      td.className = "muted";
      tr.appendChild(td);
      rows = [tr];
    }
    failures.replaceChildren.apply(failures, rows);
    return true;
  }

  var last = null;
  cascadePoll(board.getAttribute("data-stats-url"), function (data) {
    draw(data);
    // A state changed elsewhere (or the campaign finished): the buttons change with it.
    if (last && last !== data.state) { window.location.reload(); return false; }
    last = data.state;
    if (data.finished && data.progress >= 100) return false;
  }, 2000);
})();
