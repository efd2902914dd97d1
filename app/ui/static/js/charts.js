// Per-epoch line charts on uPlot (vendored under /ui/vendor/uplot). The container's data-points attribute says
// how many epochs are drawn, for tests and for anyone curious.

const PALETTE = {train: "#2563eb", val: "#f97316"};

/**
 * A chart of per-epoch series: series = [{key, label, color}]. update(rows) takes metric rows ({epoch, ...}) in
 * epoch order. The uPlot instance is built once the container has a width, and follows its size afterwards.
 */
export function epochChart(container, {series, percent = false, epochs = 1}) {
  let plot = null;
  let data = [[], ...series.map(() => [])];
  let maxEpoch = Math.max(epochs, 2);
  container.dataset.points = "0";

  const options = (width) => ({
    width,
    height: 260,
    padding: [12, 16, 0, 4],
    cursor: {drag: {x: false, y: false}, points: {size: 8}},
    legend: {live: false}, // labels only: the latest numbers are in the stats above the charts
    scales: {
      x: {time: false, range: () => [1, maxEpoch]},
      y: percent ? {range: [0, 1]} : {range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1]},
    },
    axes: [
      {label: "epoch", stroke: "#64748b", grid: {stroke: "#eef2f7"}, ticks: {stroke: "#e2e8f0"},
        incrs: [1, 2, 5, 10, 20, 50, 100], values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v : ""))},
      {stroke: "#64748b", grid: {stroke: "#eef2f7"}, ticks: {stroke: "#e2e8f0"}, size: 56,
        values: (u, vals) => vals.map((v) => (percent ? `${Math.round(v * 100)}%` : +v.toFixed(3)))},
    ],
    series: [
      {label: "epoch", value: (u, v) => (v === null || v === undefined ? "–" : v)},
      ...series.map((s) => ({
        label: s.label, stroke: s.color || PALETTE[s.key.split("_")[0]] || "#0f172a", width: 2,
        points: {show: true, size: 6}, spanGaps: true,
        value: (u, v) => (v === null || v === undefined ? "–" : percent ? `${(v * 100).toFixed(1)}%` : v.toFixed(4)),
      })),
    ],
  });

  const observer = new ResizeObserver((entries) => {
    const width = Math.floor(entries[0].contentRect.width);
    if (width <= 0) return;
    if (!plot) {
      plot = new window.uPlot(options(width), data, container);
    } else if (Math.abs(plot.width - width) > 1) {
      plot.setSize({width, height: 260});
    }
  });
  observer.observe(container);

  return {
    setEpochs(n) { maxEpoch = Math.max(n || 1, 2, ...data[0]); if (plot) plot.setData(data); },
    update(rows) {
      data = [rows.map((r) => r.epoch), ...series.map((s) => rows.map((r) => r[s.key] ?? null))];
      maxEpoch = Math.max(maxEpoch, ...data[0]);
      container.dataset.points = String(rows.length);
      if (plot) plot.setData(data);
    },
    destroy() { observer.disconnect(); if (plot) plot.destroy(); plot = null; },
  };
}
