// quanbot console: draws every <canvas data-chart="id-of-a-json-script"> with Chart.js (served from /static).
// Chart data sits in <script type="application/json">, which the browser never runs, so the CSP can forbid
// inline scripts. htmx swaps call drawCharts again for new canvases.
(function () {
  function drawCharts(root) {
    if (typeof Chart === "undefined") return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var config = JSON.parse(source.textContent);
      config.options = Object.assign({ animation: false, responsive: true }, config.options || {});
      new Chart(canvas, config);
      canvas.dataset.drawn = "1";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawCharts(e.target); });
  window.quanbotDrawCharts = drawCharts;
})();
