// Models: every trained model with its headline accuracy.

import {api} from "../api.js";
import {card, errorBox, fmt, h, idLink, mount, pageHead, table} from "../dom.js";

const COLUMNS = [
  {label: "Model", cell: (m) => idLink("models", m.id)},
  {label: "Architecture", cell: (m) => h("span", {class: "strong"}, m.arch)},
  {label: "Classes", cls: "num", cell: (m) => fmt.int(m.classes.length)},
  {label: "Val acc.", cls: "num", cell: (m) => fmt.pct(m.metrics.val_accuracy)},
  {label: "Test acc.", cls: "num", cell: (m) => fmt.pct(m.metrics.test_accuracy)},
  {label: "Size", cls: "num", cell: (m) => fmt.bytes((m.artifacts.find((a) => a.format === "safetensors") || {}).bytes)},
  {label: "Job", cell: (m) => idLink("jobs", m.job_id)},
  {label: "Created", cell: (m) => h("span", {title: fmt.time(m.created_at)}, fmt.ago(m.created_at))},
];

export function modelsView() {
  const list = h("div", {id: "models-list"}, h("p", {class: "empty"}, "Loading…"));
  const node = h("div", {class: "stack"},
    pageHead("Models", "Each succeeded job leaves one: safetensors, a config that rebuilds it, and ONNX."),
    card("Trained models", list));
  return {
    node,
    async ready() {
      try {
        const page = await api("/v1/models?limit=100");
        mount(list, table(COLUMNS, page.data, {empty: "No models yet: they appear when a job succeeds.",
          rowAttrs: (m) => ({"data-id": m.id, class: "clickable",
            onclick: (e) => { if (!e.target.closest("a")) location.hash = `#/models/${m.id}`; }})}));
      } catch (err) {
        mount(list, errorBox(err));
      }
    },
  };
}
