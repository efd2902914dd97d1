// Submit a job: the spec's main fields, a dry run that shows the plan, and a submit (with an Idempotency-Key per
// form fill) that opens the new job.

import {api, ApiError, uuid} from "../api.js";
import {card, errorBox, facts, fmt, h, mount, pageHead, table} from "../dom.js";

const POLICIES = [
  ["head_only", "head only: only the new head trains"],
  ["until", "until: a block group and everything before it stay frozen"],
  ["none", "none: everything trains"],
  ["gradual", "gradual: head first, then one more block group per epoch"],
  ["lp_ft", "lp_ft: linear probe, then everything with discriminative rates"],
];

function field(label, input, hint = null, attrs = {}) {
  return h("div", {class: "field", ...attrs}, h("label", {for: input.id}, label), input,
    hint ? h("div", {class: "hint"}, hint) : null);
}

function numberInput(id, value, {min, max, step = "1"}) {
  return h("input", {type: "number", id, name: id, value: String(value), min, max, step, required: true});
}

function select(id, options, value) {
  return h("select", {id, name: id}, options.map(([v, label]) => h("option", {value: v, selected: v === value}, label)));
}

function planView(result) {
  const plan = result.plan;
  const groups = table([
    {label: "Block group", cell: (g) => h("span", {class: "strong"}, g.name)},
    {label: "Trainable", cls: "num", cell: (g) => fmt.int(g.trainable_params)},
    {label: "Frozen", cls: "num", cell: (g) => fmt.int(g.frozen_params)},
    {label: "LR", cls: "num", cell: (g) => (g.trainable_from_epoch ? String(+g.learning_rate.toPrecision(3)) : "–")},
    {label: "From epoch", cls: "num", cell: (g) => (g.trainable_from_epoch ?? "never")},
  ], plan.block_groups, {rowAttrs: (g) => ({class: g.trainable_from_epoch ? "" : "row-frozen"})});
  const total = plan.trainable_params + plan.frozen_params;
  return h("div", {id: "plan", class: "plan"},
    h("div", {class: "stats"},
      h("div", {class: "stat"}, h("div", {class: "stat-value", id: "plan-trainable"}, fmt.int(plan.trainable_params)),
        h("div", {class: "stat-label"}, `trainable params (${fmt.pct(total ? plan.trainable_params / total : 0)})`)),
      h("div", {class: "stat"}, h("div", {class: "stat-value"}, fmt.int(plan.frozen_params)),
        h("div", {class: "stat-label"}, "frozen params")),
      h("div", {class: "stat"}, h("div", {class: "stat-value"}, plan.backbone_features_cached ? "yes" : "no"),
        h("div", {class: "stat-label"}, "backbone features cached"))),
    result.dataset_status !== "ready"
      ? h("div", {class: "notice"}, `The dataset is ${result.dataset_status}: a submit is refused until it is ready.`) : null,
    groups,
    h("h3", {}, "Phases"),
    h("ol", {class: "phases"}, plan.phases.map((p) => h("li", {},
      h("strong", {}, p.first_epoch === p.last_epoch ? `epoch ${p.first_epoch}` : `epochs ${p.first_epoch}–${p.last_epoch}`),
      ": trains ", p.trainable_groups.join(", "),
      p.frozen_groups.length ? h("span", {class: "muted"}, ` · frozen ${p.frozen_groups.join(", ")}`) : null))),
    facts([["Weights", result.weights_id || "none (random init)"]]));
}

export function newJobView(query) {
  const preset = query.get("dataset");
  let archs = [];
  let baseModels = [];
  let idempotencyKey = uuid(); // one per form fill: a resubmit of the same fill cannot make a second job

  const dataset = h("select", {id: "dataset", name: "dataset", required: true}, h("option", {value: ""}, "Loading…"));
  const arch = h("select", {id: "arch", name: "arch"});
  const archInfo = h("div", {class: "hint", id: "arch-info"});
  const weights = h("select", {id: "weights", name: "weights"});
  const weightsId = h("input", {type: "text", id: "weights-id", name: "weights-id", placeholder: "model_… or bm_…",
    pattern: "(model|bm)_[0-9a-z]+"});
  const weightsIdField = field("Weights id", weightsId, "continue from one of your models or base models");
  const policy = select("policy", POLICIES, "head_only");
  const until = h("select", {id: "until", name: "until"});
  const untilField = field("Frozen through", until, "this block group and every one before it stay frozen");
  const headEpochs = h("input", {type: "number", id: "head-epochs", min: 1, max: 200, placeholder: "half the epochs"});
  const headEpochsField = field("Head-only epochs", headEpochs);
  const epochs = numberInput("epochs", 5, {min: 1, max: 200});
  const batch = numberInput("batch-size", 32, {min: 1, max: 512});
  const lr = numberInput("learning-rate", 0.001, {min: 0, max: 10, step: "any"});
  const imageSize = numberInput("image-size", 224, {min: 16, max: 512});
  const optimizer = select("optimizer", [["adam", "Adam"], ["adamw", "AdamW"], ["sgd", "SGD (momentum 0.9)"]], "adam");
  const scheduler = select("scheduler", [["none", "constant"], ["cosine", "cosine"], ["onecycle", "one-cycle"],
    ["step", "step"]], "none");
  const augment = select("augment", [["none", "none"], ["light", "light (crop, flip)"],
    ["strong", "strong (crop, flip, TrivialAugment, erasing)"]], "none");
  const seed = numberInput("seed", 0, {min: 0, max: 2 ** 31 - 1});

  const errorOut = h("div", {id: "job-form-error"});
  const planOut = h("div", {id: "plan-box"});
  const dryRun = h("button", {type: "button", class: "btn", id: "dry-run"}, "Dry run");
  const submit = h("button", {type: "submit", class: "btn btn-primary", id: "submit-job"}, "Submit job");

  function syncVisibility() {
    untilField.hidden = policy.value !== "until";
    headEpochsField.hidden = policy.value !== "lp_ft";
    weightsIdField.hidden = weights.value !== "__id";
  }

  function fillArch() {
    const a = archs.find((x) => x.name === arch.value);
    if (!a) return;
    const groups = a.block_groups.filter((g) => g !== "head");
    const keep = until.value;
    mount(until, groups.map((g) => h("option", {value: g, selected: g === keep}, g)));
    if (!groups.includes(keep)) until.value = groups[Math.floor(groups.length / 2)] || groups[0];
    mount(archInfo, `${a.family} · ${fmt.int(a.total_params)} params · block groups ${a.block_groups.join(" → ")}`);
    const keepWeights = weights.value;
    const imagenet = baseModels.some((b) => b.arch === a.name && b.source === "imagenet");
    const own = baseModels.filter((b) => b.arch === a.name && b.source !== "imagenet");
    mount(weights,
      h("option", {value: "imagenet"}, imagenet ? "ImageNet (pretrained)" : "ImageNet (not imported on this server)"),
      h("option", {value: "none"}, "none (random init)"),
      own.map((b) => h("option", {value: b.id}, `${b.name || b.id} (${b.id})`)),
      h("option", {value: "__id"}, "another model or base model id…"));
    weights.value = [...weights.options].some((o) => o.value === keepWeights) ? keepWeights : imagenet ? "imagenet" : "none";
    syncVisibility();
  }

  function spec() {
    const num = (el) => (el.value === "" ? undefined : Number(el.value));
    const freeze = {policy: policy.value};
    if (policy.value === "until") freeze.until = until.value;
    if (policy.value === "lp_ft" && headEpochs.value) freeze.head_epochs = num(headEpochs);
    return {
      dataset_id: dataset.value,
      base_model: {arch: arch.value, weights: weights.value === "__id" ? weightsId.value.trim() : weights.value},
      freeze,
      hyperparameters: {epochs: num(epochs), batch_size: num(batch), learning_rate: num(lr), image_size: num(imageSize),
        optimizer: optimizer.value, scheduler: scheduler.value, augment: augment.value, seed: num(seed)},
    };
  }

  function showError(err) {
    mount(errorOut, errorBox(err instanceof ApiError ? err : {code: "error", message: String(err)}));
  }

  async function send(dry) {
    if (!form.reportValidity()) return;
    errorOut.replaceChildren();
    dryRun.disabled = submit.disabled = true;
    try {
      if (dry) {
        const result = await api("/v1/jobs?dry_run=true", {method: "POST", body: spec()});
        mount(planOut, card("Plan (dry run: nothing queued)", planView(result)));
      } else {
        const job = await api("/v1/jobs", {method: "POST", body: spec(), headers: {"Idempotency-Key": idempotencyKey}});
        location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
      }
    } catch (err) {
      showError(err);
    } finally {
      dryRun.disabled = submit.disabled = false;
    }
  }

  dryRun.addEventListener("click", () => send(true));
  arch.addEventListener("change", fillArch);
  policy.addEventListener("change", syncVisibility);
  weights.addEventListener("change", syncVisibility);

  const form = h("form", {id: "job-form", class: "job-form", novalidate: false,
    oninput: () => { idempotencyKey = uuid(); }, onchange: () => { idempotencyKey = uuid(); },
    onsubmit: (e) => { e.preventDefault(); send(false); }},
  h("fieldset", {}, h("legend", {}, "Data and model"),
    h("div", {class: "fields"},
      field("Dataset", dataset, "only ready datasets can train", {class: "field span-2"}),
      field("Architecture", arch), field("Weights", weights), weightsIdField,
      h("div", {class: "span-2"}, archInfo))),
  h("fieldset", {}, h("legend", {}, "What trains"),
    h("div", {class: "fields"}, field("Freeze policy", policy, null, {class: "field span-2"}), untilField,
      headEpochsField)),
  h("fieldset", {}, h("legend", {}, "Hyperparameters"),
    h("div", {class: "fields fields-4"},
      field("Epochs", epochs), field("Batch size", batch), field("Learning rate", lr), field("Image size (px)", imageSize),
      field("Optimizer", optimizer), field("Schedule", scheduler), field("Augmentation", augment), field("Seed", seed))),
  errorOut,
  h("div", {class: "form-actions"}, dryRun, submit));

  const node = h("div", {class: "stack"},
    pageHead("New fine-tuning job", "Every field but the dataset has a default; a dry run shows what would train."),
    h("div", {class: "grid-2 grid-form"}, card(null, form), planOut));

  return {
    node,
    async ready() {
      try {
        const [ds, ar, bm] = await Promise.all([api("/v1/datasets?limit=100"), api("/v1/architectures"),
          api("/v1/base-models?limit=100").catch(() => ({data: []}))]);
        archs = ar.data;
        baseModels = bm.data;
        const ready = ds.data.filter((d) => d.status === "ready");
        mount(dataset, ready.length ? null : h("option", {value: ""}, "no ready dataset: upload one first"),
          ready.map((d) => h("option", {value: d.id, selected: d.id === preset},
            `${d.name || "(unnamed)"} · ${fmt.int(d.num_images)} images, ${d.classes.length} classes · ${d.id}`)));
        mount(arch, archs.map((a) => h("option", {value: a.name, selected: a.name === "efficientnet_lite0"}, a.name)));
        fillArch();
      } catch (err) {
        showError(err);
      }
    },
  };
}
