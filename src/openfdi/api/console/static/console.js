// The console's own script: no inline handlers anywhere (the CSP forbids them).
(function () {
  "use strict";

  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll("input.pick").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // Rows and duration per run (oldest first), failed runs marked in red.
  function runChart() {
    var box = document.getElementById("run-chart");
    var source = document.getElementById("chart-data");
    if (!box || !source || typeof uPlot === "undefined") return;
    var d = JSON.parse(source.textContent);
    if (!d.t.length) {
      box.textContent = "No finished run to chart yet.";
      return;
    }
    var opts = {
      width: Math.min(box.clientWidth || 800, 1000),
      height: 220,
      series: [
        {},
        { label: "rows", stroke: "#2563eb", width: 2, scale: "rows" },
        { label: "seconds", stroke: "#16a34a", width: 2, scale: "s" },
        {
          label: "failed",
          stroke: "#dc2626",
          width: 0,
          scale: "rows",
          points: { show: true, size: 9, fill: "#dc2626" },
        },
      ],
      axes: [{}, { scale: "rows", label: "rows" }, { scale: "s", side: 1, label: "s", grid: { show: false } }],
    };
    new uPlot(opts, [d.t, d.rows, d.seconds, d.failed], box);
  }

  document.addEventListener("DOMContentLoaded", function () {
    selectAll();
    confirmForms();
    runChart();
  });
})();
