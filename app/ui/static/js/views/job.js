// One job: status, spec, live loss and accuracy charts and events (from the SSE stream), cancel, and once it
// succeeded the model's confusion matrix and per-class scores.

import {api, ApiError, followEvents} from "../api.js";
import {epochChart} from "../charts.js";
import {badge, bar, card, errorBox, facts, fmt, h, idLink, mount} from "../dom.js";
import {evaluation, stat} from "./evaluation.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export function specFacts(spec) {
  const bm = spec.base_model || {};
  const freeze = spec.freeze || {};
  const hp = spec.hyperparameters || {};
  const {head, regularization: reg} = spec;
  const policy = (freeze.policy || "–") + (freeze.policy === "until" ? ` (through ${freeze.until})` : "")
    + (freeze.policy === "lp_ft" && freeze.head_epochs ? ` (${freeze.head_epochs} head epochs)` : "");
  const weights = bm.weights || "–";
  return facts([
    ["Architecture", bm.arch],
    ["Weights", weights.startsWith("model_") ? idLink("models", weights) : weights],
    ["Freeze", policy],
    ["Batch norm", freeze.batch_norm],
    ["Epochs", hp.epochs],
    ["Batch size", hp.batch_size],
    ["Learning rate", hp.learning_rate],
    ["Optimizer", hp.optimizer && `${hp.optimizer}${hp.weight_decay ? `, weight decay ${hp.weight_decay}` : ""}`],
    ["Scheduler", hp.scheduler && hp.scheduler + (hp.warmup_epochs ? `, ${hp.warmup_epochs} warm-up epochs` : "")],
    ["Image size", hp.image_size && `${hp.image_size} px`],
    ["Augment", hp.augment],
    ["Precision", hp.precision],
    head && head.dropout ? ["Head dropout", head.dropout] : null,
    reg && reg.kind && reg.kind !== "none" ? ["Regularization", `${reg.kind}, alpha ${reg.alpha}`] : null,
    ["Seed", hp.seed],
  ]);
}

function eventRow(ev) {
  return h("tr", {"data-seq": ev.seq, "data-type": ev.type},
    h("td", {class: "num muted"}, String(ev.seq)),
    h("td", {class: "muted nowrap", title: ev.created_at}, new Date(ev.created_at).toLocaleTimeString()),
    h("td", {}, h("span", {class: `tag tag-${ev.type.replace(/[^a-z_]/g, "")}`}, ev.type)),
    h("td", {}, ev.message || ""));
}

export function jobView(jobId) {
  let job = null;
  let stream = null;
  let modelShown = null;
  let reloadTimer = null;
  let gone = false; // left the page: whatever is still in flight must not start a stream
  let dataset = null; // its name and classes, for the title
  const rows = new Map(); // epoch -> metric row; a retried attempt's row replaces the earlier one

  const head = h("div", {class: "page-head"}, h("h1", {}, "Job ", h("span", {class: "mono"}, jobId)));
  const error = h("div");
  const stats = h("div", {class: "stats"});
  const lossBox = h("div", {class: "chart", id: "loss-chart", "data-points": "0"});
  const accBox = h("div", {class: "chart", id: "accuracy-chart", "data-points": "0"});
  const specBox = h("div");
  const evalBox = h("div", {id: "evaluation"});
  const evalCard = card("Evaluation", evalBox, {cls: "hidden-card"});
  evalCard.hidden = true;
  const streamState = h("span", {class: "stream-state", id: "stream-state"}, "connecting");
  const eventsBody = h("tbody");
  const eventsBox = h("div", {class: "table-wrap events-wrap"}, h("table", {class: "table compact", id: "events-list"},
    h("thead", {}, h("tr", {}, h("th", {class: "num"}, "#"), h("th", {}, "Time"), h("th", {}, "Type"),
      h("th", {}, "Message"))), eventsBody));

  const loss = epochChart(lossBox, {series: [{key: "train_loss", label: "train loss"}, {key: "val_loss", label: "val loss"}]});
  const acc = epochChart(accBox, {percent: true, series: [{key: "train_accuracy", label: "train accuracy"},
    {key: "val_accuracy", label: "val accuracy"}]});

  function redrawCharts() {
    const sorted = [...rows.values()].sort((a, b) => a.epoch - b.epoch);
    loss.update(sorted);
    acc.update(sorted);
  }

  function renderHead() {
    const actions = h("div", {class: "head-actions"});
    if (job && !FINISHED.has(job.status)) {
      const cancel = h("button", {class: "btn btn-danger", id: "cancel-job", type: "button",
        disabled: Boolean(job.cancel_requested_at), onclick: async () => {
          cancel.disabled = true;
          try { job = await api(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, {method: "POST"}); render(); } catch (err) {
            error.replaceChildren(errorBox(err));
            cancel.disabled = false;
          }
        }}, job.cancel_requested_at ? "Cancelling…" : "Cancel job");
      actions.append(cancel);
    }
    if (job && job.model_id) {
      actions.append(h("a", {class: "btn btn-primary", href: `#/models/${encodeURIComponent(job.model_id)}`,
        id: "open-model"}, "Open model"));
    }
    mount(head, h("div", {},
      h("div", {class: "crumbs"}, h("a", {href: "#/jobs"}, "Jobs"), " / ", h("span", {class: "mono"}, jobId)),
      h("h1", {}, job ? `${job.spec.base_model.arch} on ${dataset && dataset.name ? dataset.name : "a dataset"}` : "Job", " ",
        job ? h("span", {id: "job-status", "data-status": job.status}, badge(job.status)) : null)),
    actions);
  }

  function renderStats() {
    if (!job) return;
    const {epoch, epochs} = job.progress;
    const last = rows.size ? [...rows.values()].sort((a, b) => b.epoch - a.epoch)[0] : job.latest_metrics;
    mount(stats,
      h("div", {class: "stat stat-wide"}, h("div", {class: "stat-value"}, `${epoch} / ${epochs}`),
        bar(job.status === "succeeded" ? 1 : epochs ? epoch / epochs : 0,
          {cls: job.status === "running" ? "bar-live" : job.status === "failed" ? "bar-bad" : ""}),
        h("div", {class: "stat-label"}, "epochs")),
      stat("Train loss", fmt.num(last && last.train_loss, 4)),
      stat("Val loss", fmt.num(last && last.val_loss, 4)),
      stat("Val accuracy", fmt.pct(last && last.val_accuracy)),
      stat("Images / s", last && last.images_per_second ? fmt.int(Math.round(last.images_per_second)) : "–"),
      stat(FINISHED.has(job.status) ? "Took" : "Running for",
        job.started_at ? fmt.duration(job.started_at, job.finished_at) : "not started"),
      stat("Attempt", String(job.attempt)));
    loss.setEpochs(epochs);
    acc.setEpochs(epochs);
  }

  function renderSpec() {
    if (!job) return;
    mount(specBox,
      facts([["Dataset", h("span", {}, dataset && dataset.name ? `${dataset.name} ` : "",
        h("span", {class: "mono muted small", title: job.dataset_id}, job.dataset_id))],
        dataset && dataset.classes ? ["Classes", `${dataset.classes.length} (${fmt.int(dataset.num_images)} images)`] : null,
        ["Submitted", fmt.time(job.created_at)], ["Started", fmt.time(job.started_at)],
        ["Finished", fmt.time(job.finished_at)]]),
      job.error ? h("div", {class: "error-box"}, h("strong", {}, job.error.code), " ", job.error.message) : null,
      h("h3", {}, "Spec"), specFacts(job.spec),
      h("details", {}, h("summary", {}, "Resolved spec (JSON)"), h("pre", {class: "json"}, JSON.stringify(job.spec, null, 2))));
  }

  async function showModel() {
    if (!job || job.status !== "succeeded" || !job.model_id || modelShown === job.model_id) return;
    modelShown = job.model_id;
    try {
      const model = await api(`/v1/models/${encodeURIComponent(job.model_id)}`);
      mount(evalBox, evaluation(model));
      evalCard.hidden = false;
    } catch (err) {
      modelShown = null;
      mount(evalBox, errorBox(err));
      evalCard.hidden = false;
    }
  }

  function render() {
    renderHead();
    renderStats();
    renderSpec();
    showModel();
  }

  async function loadJob() {
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`);
      if (!dataset) dataset = await api(`/v1/datasets/${encodeURIComponent(job.dataset_id)}`).catch(() => null);
      error.replaceChildren();
      render();
    } catch (err) {
      error.replaceChildren(errorBox(err));
      if (err instanceof ApiError && err.status === 404 && stream) stream.close();
    }
  }

  const reloadSoon = () => { clearTimeout(reloadTimer); reloadTimer = setTimeout(loadJob, 150); };

  function onEvent(type, ev) {
    const following = eventsBox.scrollHeight - eventsBox.scrollTop - eventsBox.clientHeight < 40;
    eventsBody.append(eventRow(ev));
    while (eventsBody.childElementCount > 1000) eventsBody.firstElementChild.remove();
    if (following) eventsBox.scrollTop = eventsBox.scrollHeight; // keep the newest in view unless scrolled up
    if (type === "metrics" && ev.data && ev.data.epoch) {
      rows.set(ev.data.epoch, ev.data);
      redrawCharts();
      if (job) {
        job.progress.epoch = Math.max(job.progress.epoch, ev.data.epoch);
        renderStats();
      }
    } else if (type === "status") {
      reloadSoon();
    }
  }

  const node = h("div", {class: "stack"}, head, error, stats,
    h("div", {class: "grid-2"},
      card("Loss", lossBox, {actions: h("span", {class: "muted small"}, "per epoch")}),
      card("Accuracy", accBox, {actions: h("span", {class: "muted small"}, "per epoch")})),
    evalCard,
    h("div", {class: "grid-2 grid-wide-left"},
      card("Events", eventsBox, {actions: streamState}),
      card("Details", specBox)));

  return {
    node,
    async ready() {
      await loadJob();
      try {
        const metrics = await api(`/v1/jobs/${encodeURIComponent(jobId)}/metrics`);
        for (const r of metrics.data) if (!rows.has(r.epoch)) rows.set(r.epoch, r);
        redrawCharts();
        renderStats();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
      }
      if (!job || gone) return;
      stream = followEvents(jobId, {
        onEvent,
        onEnd: () => { loadJob(); },
        onState: (state, err) => {
          streamState.textContent = state === "live" ? "● live" : state === "ended" ? "finished"
            : state === "reconnecting" ? "reconnecting…" : `stream error: ${err ? err.code : ""}`;
          streamState.dataset.state = state;
        },
      });
    },
    cleanup() {
      gone = true;
      clearTimeout(reloadTimer);
      if (stream) stream.close();
      loss.destroy();
      acc.destroy();
    },
  };
}
