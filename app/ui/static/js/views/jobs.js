// Jobs: every job of the tenant with its live status and progress (polled every 2 s while the tab is visible).

import {api, poll} from "../api.js";
import {badge, bar, card, errorBox, fmt, h, idLink, mount, pageHead, table} from "../dom.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];

function progress(j) {
  const {epoch, epochs} = j.progress || {epoch: 0, epochs: 0};
  const f = epochs ? epoch / epochs : 0;
  return bar(j.status === "succeeded" ? 1 : f, {label: `${epoch}/${epochs}`,
    cls: j.status === "running" ? "bar-live" : j.status === "failed" ? "bar-bad" : ""});
}

const COLUMNS = [
  {label: "Job", cls: "nowrap", cell: (j) => idLink("jobs", j.id)},
  {label: "Status", cell: (j) => badge(j.status)},
  {label: "Model", cell: (j) => h("span", {}, h("span", {class: "strong"}, j.spec.base_model.arch),
    h("span", {class: "muted small"}, ` · ${j.spec.base_model.weights} · ${j.spec.freeze.policy}`))},
  {label: "Progress", cls: "progress-cell", cell: progress},
  {label: "Val acc.", cls: "num", cell: (j) => fmt.pct(j.latest_metrics && j.latest_metrics.val_accuracy)},
  {label: "Val loss", cls: "num", cell: (j) => fmt.num(j.latest_metrics && j.latest_metrics.val_loss, 3)},
  {label: "Dataset", cls: "nowrap", cell: (j) => h("span", {class: "mono small", title: j.dataset_id}, fmt.shortId(j.dataset_id))},
  {label: "Submitted", cls: "nowrap", cell: (j) => h("span", {title: fmt.time(j.created_at)}, fmt.ago(j.created_at))},
  {label: "Result", cls: "nowrap", cell: (j) => (j.model_id ? idLink("models", j.model_id)
    : j.error ? h("span", {class: "cell-error", title: j.error.message}, j.error.code) : "–")},
];

export function jobsView() {
  const list = h("div", {id: "jobs-list"}, h("p", {class: "empty"}, "Loading…"));
  const error = h("div");
  const filter = h("select", {id: "jobs-filter", "aria-label": "status", onchange: () => poller.now()},
    STATUSES.map((s) => h("option", {value: s}, s || "all statuses")));
  let poller = null;

  async function refresh() {
    try {
      const qs = filter.value ? `&status=${encodeURIComponent(filter.value)}` : "";
      const page = await api(`/v1/jobs?limit=50${qs}`);
      mount(list, table(COLUMNS, page.data, {empty: "No jobs here yet.",
        rowAttrs: (j) => ({"data-id": j.id, "data-status": j.status, class: "clickable",
          onclick: (e) => { if (!e.target.closest("a")) location.hash = `#/jobs/${j.id}`; }})}),
      page.has_more ? h("p", {class: "muted small"}, "The 50 newest are shown.") : null);
      error.replaceChildren();
    } catch (err) {
      error.replaceChildren(errorBox(err));
      throw err;
    }
  }

  const node = h("div", {class: "stack"},
    pageHead("Jobs", "Fine-tuning runs, live: the list refreshes every 2 seconds while this tab is visible.",
      h("a", {class: "btn btn-primary", href: "#/new"}, "New job")),
    card("Fine-tuning jobs", [error, list], {actions: filter}));
  return {node, ready() { poller = poll(refresh, 2000); }, cleanup() { if (poller) poller.stop(); }};
}
