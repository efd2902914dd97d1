// Datasets: the list (live while any is processing) and the upload form with a progress bar.

import {api, ApiError, poll, upload, uuid} from "../api.js";
import {badge, bar, card, errorBox, fmt, h, mount, pageHead, table} from "../dom.js";

function splits(ds) {
  if (!ds.splits) return "–";
  return ["train", "val", "test"].map((k) => `${k} ${fmt.int(ds.splits[k] || 0)}`).join(" · ");
}

function classes(ds) {
  if (!ds.classes) return "–";
  const shown = ds.classes.slice(0, 6);
  return h("span", {class: "chips", title: ds.classes.join(", ")},
    h("span", {class: "count"}, fmt.int(ds.classes.length)),
    shown.map((c) => h("span", {class: "chip"}, c)),
    ds.classes.length > shown.length ? h("span", {class: "chip chip-more"}, `+${ds.classes.length - shown.length}`) : null);
}

function statusCell(ds) {
  return h("span", {}, badge(ds.status),
    ds.error ? h("div", {class: "cell-error"}, `${ds.error.code}: ${ds.error.message}`,
      ds.error.member ? ` (${ds.error.member})` : "") : null);
}

const COLUMNS = [
  {label: "Name", cell: (d) => h("div", {}, h("div", {class: "strong"}, d.name || "(unnamed)"),
    h("div", {class: "mono muted small", title: d.id}, d.id))},
  {label: "Status", cell: statusCell},
  {label: "Images", cls: "num", cell: (d) => fmt.int(d.num_images)},
  {label: "Classes", cell: classes},
  {label: "Splits", cell: splits},
  {label: "Size", cls: "num", cell: (d) => fmt.bytes(d.bytes)},
  {label: "Uploaded", cell: (d) => h("span", {title: fmt.time(d.created_at)}, fmt.ago(d.created_at))},
  {label: "", cls: "actions", cell: (d) => (d.status === "ready"
    ? h("a", {class: "btn btn-small", href: `#/new?dataset=${encodeURIComponent(d.id)}`}, "Train") : null)},
];

function uploadForm(onUploaded) {
  const file = h("input", {type: "file", id: "upload-file", name: "file", accept: ".zip,.tar,.tar.gz,.tgz", required: true});
  const name = h("input", {type: "text", id: "upload-name", name: "name", maxlength: 200, placeholder: "optional"});
  const progress = h("div", {id: "upload-progress", class: "upload-progress", hidden: true});
  const result = h("div", {id: "upload-result"});
  const button = h("button", {type: "submit", class: "btn btn-primary", id: "upload-submit"}, "Upload");

  const form = h("form", {class: "form-grid", id: "upload-form", onsubmit: async (e) => {
    e.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    const body = new FormData();
    body.append("file", chosen, chosen.name);
    if (name.value.trim()) body.append("name", name.value.trim());
    button.disabled = true;
    result.replaceChildren();
    progress.hidden = false;
    mount(progress, bar(0, {label: "0%"}));
    try {
      const ds = await upload("/v1/datasets", body, {headers: {"Idempotency-Key": uuid()}, onProgress: (loaded, total) => {
        const f = total ? loaded / total : 0;
        mount(progress, bar(f, {label: total ? `${fmt.bytes(loaded)} of ${fmt.bytes(total)} · ${Math.round(f * 100)}%`
          : fmt.bytes(loaded)}));
      }});
      mount(progress, bar(1, {label: "uploaded: checking and splitting in the background", cls: "bar-done"}));
      result.replaceChildren(h("div", {class: "notice notice-ok"}, "Uploaded ", h("span", {class: "mono"}, ds.id),
        `: ${ds.status}.`));
      form.reset();
      onUploaded();
    } catch (err) {
      progress.hidden = true;
      result.replaceChildren(errorBox(err instanceof ApiError ? err : {message: String(err)}));
    } finally {
      button.disabled = false;
    }
  }},
  h("label", {for: "upload-file"}, "Archive"), file,
  h("label", {for: "upload-name"}, "Name"), name,
  h("div", {class: "form-actions"}, button),
  h("p", {class: "hint span-2"}, "A zip or tar of ", h("code", {}, "class_name/image.jpg"), " folders, optionally split into ",
    h("code", {}, "train/ val/ test/"), "."),
  progress, result);
  return form;
}

export function datasetsView() {
  const list = h("div", {id: "datasets-list"}, h("p", {class: "empty"}, "Loading…"));
  const error = h("div");
  let poller = null;

  async function refresh() {
    try {
      const page = await api("/v1/datasets?limit=100");
      mount(list, table(COLUMNS, page.data, {empty: "No datasets yet: upload one.",
        rowAttrs: (d) => ({"data-id": d.id, "data-status": d.status})}));
      error.replaceChildren();
    } catch (err) {
      error.replaceChildren(errorBox(err));
      throw err;
    }
  }

  const node = h("div", {class: "stack"},
    pageHead("Datasets", "Labelled image archives. Decoding and the train/val split run after the upload."),
    card("Upload a dataset", uploadForm(() => poller && poller.now())),
    card("Your datasets", [error, list]));
  return {node, ready() { poller = poll(refresh, 2000); }, cleanup() { if (poller) poller.stop(); }};
}
