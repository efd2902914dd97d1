// One model: evaluation, lineage, artifacts with downloads, and the aliases that point at it.

import {api, ApiError, download} from "../api.js";
import {card, errorBox, facts, fmt, h, idLink, mount, table} from "../dom.js";
import {evaluation} from "./evaluation.js";
import {specFacts} from "./job.js";

const EXTENSIONS = {safetensors: "safetensors", onnx: "onnx", config: "json"};

function artifactsTable(model) {
  return table([
    {label: "Format", cell: (a) => h("span", {class: "strong"}, a.format)},
    {label: "Size", cls: "num", cell: (a) => fmt.bytes(a.bytes)},
    {label: "sha256", cell: (a) => h("span", {class: "mono small", title: a.sha256}, `${a.sha256.slice(0, 16)}…`)},
    {label: "", cls: "actions", cell: (a) => {
      const status = h("span", {class: "muted small"});
      const button = h("button", {type: "button", class: "btn btn-small", "data-format": a.format,
        id: `download-${a.format}`, onclick: async () => {
          button.disabled = true;
          status.textContent = " downloading…";
          try {
            const size = await download(`/v1/models/${encodeURIComponent(model.id)}/artifacts/${a.format}`,
              `${model.id}.${EXTENSIONS[a.format] || a.format}`);
            status.textContent = ` saved (${fmt.bytes(size)})`;
          } catch (err) {
            status.replaceChildren(errorBox(err));
          } finally {
            button.disabled = false;
          }
        }}, "Download");
      return h("span", {}, button, status);
    }},
  ], model.artifacts, {empty: "No artifacts."});
}

function aliasesBox(model) {
  const list = h("div", {id: "aliases-list"});
  const result = h("div");
  const name = h("input", {type: "text", id: "alias-name", required: true, maxlength: 100, placeholder: "production",
    pattern: "[a-z0-9][a-z0-9._\\-]{0,99}", title: "lower-case letters, digits, '.', '_' and '-'"});

  async function refresh() {
    try {
      const found = [];
      let after = null;
      for (let i = 0; i < 20; i += 1) { // aliases are few; walk the pages up to 2,000
        const page = await api(`/v1/aliases?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
        found.push(...page.data.filter((a) => a.model_id === model.id));
        if (!page.has_more || !page.data.length) break;
        after = page.data[page.data.length - 1].name;
      }
      mount(list, found.length
        ? h("ul", {class: "alias-list"}, found.map((a) => h("li", {"data-alias": a.name},
          h("span", {class: "chip chip-alias"}, a.name), h("span", {class: "muted small"}, ` since ${fmt.time(a.updated_at)}`))))
        : h("p", {class: "empty"}, "No alias points to this model."));
    } catch (err) {
      mount(list, errorBox(err));
    }
  }

  const form = h("form", {class: "inline-form", id: "alias-form", onsubmit: async (e) => {
    e.preventDefault();
    result.replaceChildren();
    try {
      await api(`/v1/aliases/${encodeURIComponent(name.value.trim())}`, {method: "PUT", body: {model_id: model.id}});
      result.replaceChildren(h("div", {class: "notice notice-ok"}, `Alias ${name.value.trim()} now points here.`));
      form.reset();
      refresh();
    } catch (err) {
      result.replaceChildren(errorBox(err instanceof ApiError ? err : {message: String(err)}));
    }
  }}, h("label", {for: "alias-name"}, "Point an alias here"), name,
  h("button", {type: "submit", class: "btn btn-primary"}, "Set alias"));
  refresh();
  return h("div", {}, list, form, result,
    h("p", {class: "hint"}, "Other services fetch ", h("code", {}, "GET /v1/aliases/{name}"), " or its artifacts; moving an ",
      "alias is atomic."));
}

export function modelView(modelId) {
  const title = h("h1", {}, "Model");
  const body = h("div", {class: "stack"}, h("p", {class: "empty"}, "Loading…"));
  const node = h("div", {class: "stack"},
    h("div", {class: "page-head"}, h("div", {},
      h("div", {class: "crumbs"}, h("a", {href: "#/models"}, "Models"), " / ", h("span", {class: "mono"}, modelId)),
      title)),
    body);

  return {
    node,
    async ready() {
      let model;
      try {
        model = await api(`/v1/models/${encodeURIComponent(modelId)}`);
      } catch (err) {
        mount(body, errorBox(err));
        return;
      }
      mount(title, `${model.arch} · ${model.classes.length} classes`);
      const lin = model.lineage || {};
      const prep = model.preprocessing || {};
      mount(body,
        card("Evaluation", evaluation(model)),
        h("div", {class: "grid-2"},
          card("Artifacts", [artifactsTable(model),
            h("p", {class: "hint"}, "The safetensors file and the config rebuild the model with torchvision alone; ",
              "ONNX serves predictions.")]),
          card("Aliases", aliasesBox(model))),
        h("div", {class: "grid-2"},
          card("Lineage", [facts([
            ["Job", idLink("jobs", model.job_id)],
            ["Dataset", h("span", {class: "mono", title: model.dataset_id}, model.dataset_id)],
            ["Dataset sha256", h("span", {class: "mono small"}, lin.dataset_sha256 || "–")],
            ["Base weights", lin.base_weights ? h("span", {class: "mono"}, lin.base_weights) : "none (random init)"],
            lin.base_weights_sha256 ? ["Base weights sha256", h("span", {class: "mono small"}, lin.base_weights_sha256)]
              : null,
            lin.best_epoch ? ["Best epoch", String(lin.best_epoch)] : null,
            ["Code version", lin.code_version || "–"],
            ["Created", fmt.time(model.created_at)],
          ]), lin.spec ? [h("h3", {}, "Spec"), specFacts(lin.spec)] : null]),
          card("Preprocessing", [facts([
            ["Architecture", model.arch],
            ["Resize", prep.resize ? `${prep.resize} px (shorter side, ${prep.interpolation || "bilinear"})` : "–"],
            ["Center crop", prep.crop ? `${prep.crop} px` : "–"],
            ["Mean", prep.mean ? prep.mean.join(", ") : "–"],
            ["Std", prep.std ? prep.std.join(", ") : "–"],
            ["Classes", model.classes.join(", ")],
          ]), h("details", {}, h("summary", {}, "Config (JSON)"),
            h("pre", {class: "json"}, JSON.stringify(model.config, null, 2)))])));
    },
  };
}
