// The dashboard's chart (Chart.js, vendored in static/vendor/chartjs): deliveries, reads and
// clicks over time from the series URL, one line per metric and variant (or channel), and the
// cost so far on the right axis. Polled while the campaign is live.
(function () {
  "use strict";

  var box = document.getElementById("timeline");
  if (!box || !window.Chart) return;
  var canvas = document.getElementById("timeline-chart");
  var select = document.getElementById("timeline-split");
  var dashes = { delivered: [], read: [6, 3], clicked: [2, 2] };
  var palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f", "#be185d"];
  var chart = null;
  var latest = null;

  select.value = box.getAttribute("data-split") || "channel";

  function label(name) {
    return box.getAttribute("data-label-" + name) || name;
  }

  // Adds the finest series (metric x variant x channel) up to one line per metric and part.
  function group(series, split) {
    var lines = {};
    series.forEach(function (s) {
      var part = split === "variant" ? s.variant || label("all") : split === "channel" ? s.channel_label || s.channel : "";
      var key = s.metric + "|" + part;
      if (!lines[key]) lines[key] = { metric: s.metric, part: part, counts: s.counts.slice() };
      else s.counts.forEach(function (n, i) { lines[key].counts[i] += n; });
    });
    return Object.keys(lines).sort().map(function (key) { return lines[key]; });
  }

  function datasets(data, split) {
    var parts = [];
    // Points only while there are few buckets: a line of one point would not show at all.
    var radius = data.labels.length <= 30 ? 3 : 0;
    var lines = group(data.series, split).map(function (line) {
      if (parts.indexOf(line.part) < 0) parts.push(line.part);
      var color = palette[parts.indexOf(line.part) % palette.length];
      return {
        label: label(line.metric) + (line.part ? " · " + line.part : ""),
        data: line.counts,
        borderColor: color,
        backgroundColor: color,
        borderDash: dashes[line.metric] || [],
        pointRadius: radius,
        tension: 0.2,
        yAxisID: "y",
      };
    });
    data.costs.forEach(function (cost) {
      var total = 0;
      lines.push({
        label: label("cost") + (cost.currency ? ", " + cost.currency : ""),
        data: cost.amounts.map(function (amount) { total += amount; return Math.round(total * 100) / 100; }),
        borderColor: "#6b7280",
        backgroundColor: "#6b7280",
        pointRadius: radius,
        stepped: true,
        yAxisID: "cost",
      });
    });
    return lines;
  }

  function draw() {
    if (!latest) return;
    var config = { labels: latest.labels, datasets: datasets(latest, select.value) };
    if (chart) {
      chart.data = config;
      chart.update("none");
      return;
    }
    chart = new window.Chart(canvas, {
      type: "line",
      data: config,
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { beginAtZero: true, ticks: { precision: 0 } },
          cost: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
        },
      },
    });
  }

  select.addEventListener("change", draw);
  var live = box.getAttribute("data-live") === "true";
  window.cascadePoll(box.getAttribute("data-series-url"), function (data) {
    latest = data;
    draw();
    if (!live) return false;
  }, 5000);
})();
