// A model's evaluation: the confusion matrix as a coloured table (rows: true class) and per-class P/R/F1.

import {fmt, h} from "../dom.js";

/** Cell colour: blue on the diagonal, red off it, its strength the share of the true class's images. */
function shade(share, diagonal) {
  const [r, g, b] = diagonal ? [37, 99, 235] : [220, 38, 38];
  const a = share === 0 ? 0 : 0.08 + 0.82 * share;
  return {background: `rgba(${r}, ${g}, ${b}, ${a.toFixed(3)})`, color: a > 0.5 ? "#fff" : "#0f172a"};
}

export function confusionMatrix(classes, matrix) {
  const rowsTotal = matrix.map((row) => row.reduce((s, v) => s + v, 0));
  return h("div", {class: "table-wrap"}, h("table", {class: "confusion", id: "confusion-matrix"},
    h("thead", {},
      h("tr", {}, h("th", {class: "corner", rowspan: 2}, "true \\ predicted"),
        h("th", {colspan: classes.length, class: "axis"}, "predicted class")),
      h("tr", {}, classes.map((c) => h("th", {scope: "col", title: c}, c)))),
    h("tbody", {}, matrix.map((row, i) => h("tr", {},
      h("th", {scope: "row", title: classes[i]}, classes[i]),
      row.map((v, j) => {
        const share = rowsTotal[i] ? v / rowsTotal[i] : 0;
        return h("td", {style: shade(share, i === j), title: `true ${classes[i]}, predicted ${classes[j]}: ${v} ` +
          `(${fmt.pct(share)} of ${classes[i]})`}, String(v));
      }))))));
}

export function perClassTable(classes, perClass) {
  const rows = classes.filter((c) => perClass[c]);
  const cell = (x) => h("td", {class: "num"}, fmt.num(x, 3));
  return h("div", {class: "table-wrap"}, h("table", {class: "table compact", id: "per-class"},
    h("thead", {}, h("tr", {}, ["Class", "Precision", "Recall", "F1", "Support"].map((l, i) =>
      h("th", {class: i ? "num" : ""}, l)))),
    h("tbody", {}, rows.map((c) => {
      const m = perClass[c];
      return h("tr", {}, h("td", {class: "strong"}, c), cell(m.precision), cell(m.recall), cell(m.f1),
        h("td", {class: "num"}, fmt.int(m.support)));
    }))));
}

/** Headline numbers, the confusion matrix and the per-class table, or null when the model has none. */
export function evaluation(model) {
  const m = model.metrics || {};
  const stats = h("div", {class: "stats"},
    stat("Val accuracy", fmt.pct(m.val_accuracy)),
    m.test_accuracy !== undefined ? stat("Test accuracy", fmt.pct(m.test_accuracy)) : null,
    m.top5_accuracy !== undefined ? stat("Top-5 accuracy", fmt.pct(m.top5_accuracy)) : null,
    stat("Evaluated on", m.evaluated_on || "–"),
    stat("Classes", fmt.int(model.classes.length)));
  if (!m.confusion_matrix) return stats;
  return h("div", {class: "evaluation"}, stats,
    h("div", {class: "eval-grid"},
      h("div", {}, h("h3", {}, `Confusion matrix (${m.evaluated_on || "val"} split)`), confusionMatrix(model.classes,
        m.confusion_matrix)),
      m.per_class ? h("div", {}, h("h3", {}, "Per class"), perClassTable(model.classes, m.per_class)) : null));
}

export function stat(label, value, attrs = {}) {
  return h("div", {class: "stat", ...attrs}, h("div", {class: "stat-value"}, value), h("div", {class: "stat-label"}, label));
}
