// Building the DOM without HTML strings: every API value goes in as a text node, never through innerHTML.

/** h("div", {class: "card", onclick: fn, dataset: {x: 1}}, "text", child, [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value); // CSSOM: allowed by the CSP, unlike style=""
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked" || name === "disabled" || name === "selected") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace el's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  pct: (x, digits = 1) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)}%`),
  num: (x, digits = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits)),
  lr: (x) => (x === null || x === undefined ? "–" : Number(x).toExponential(1)),
  bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  },
  time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  },
  ago(iso) {
    if (!iso) return "–";
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },
  duration(fromIso, toIso) {
    if (!fromIso) return "–";
    const s = Math.max(0, Math.round(((toIso ? new Date(toIso) : new Date()) - new Date(fromIso)) / 1000));
    return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s`
      : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },
  shortId: (id) => (id && id.length > 16 ? `${id.slice(0, 12)}…${id.slice(-4)}` : id || "–"),
};

/** A coloured status pill. */
export function badge(status) {
  return h("span", {class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}`}, status);
}

/** A link to an object's page, showing its shortened id (the whole id as a tooltip). */
export function idLink(kind, id) {
  if (!id) return "–";
  return h("a", {href: `#/${kind}/${encodeURIComponent(id)}`, title: id, class: "mono"}, fmt.shortId(id));
}

/** A card with a title (and optional actions on the right). */
export function card(title, body, {actions = null, cls = ""} = {}) {
  return h("section", {class: `card ${cls}`},
    title ? h("div", {class: "card-head"}, h("h2", {}, title), actions ? h("div", {class: "card-actions"}, actions) : null)
      : null,
    body);
}

/** A <table> with a header row and one row per item; columns: [{label, cell(item), cls}]. */
export function table(columns, items, {empty = "Nothing yet.", rowAttrs = null} = {}) {
  if (!items.length) return h("p", {class: "empty"}, empty);
  return h("div", {class: "table-wrap"}, h("table", {class: "table"},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {class: c.cls || ""}, c.label)))),
    h("tbody", {}, items.map((item) => h("tr", rowAttrs ? rowAttrs(item) : {},
      columns.map((c) => h("td", {class: c.cls || ""}, c.cell(item))))))));
}

/** A definition list from [label, value] pairs (value: text or a node). */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "–")]));
}

/** The API's error body rendered: code, message, and the details (validation errors field by field). */
export function errorBox(err) {
  if (!err) return h("div", {class: "error-box", hidden: true});
  const details = err.details || {};
  const items = [];
  if (Array.isArray(details.errors)) {
    for (const e of details.errors) items.push(`${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`);
  }
  for (const [k, v] of Object.entries(details)) {
    if (k !== "errors") items.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  return h("div", {class: "error-box", role: "alert", "data-code": err.code || ""},
    h("strong", {}, err.code ? `${err.code}` : "error"), " ", h("span", {}, err.message || String(err)),
    items.length ? h("ul", {}, items.map((i) => h("li", {}, i))) : null);
}

/** A horizontal bar (0..1). */
export function bar(fraction, {label = null, cls = ""} = {}) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h("div", {class: `bar ${cls}`, role: "progressbar", "aria-valuenow": Math.round(pct),
    "aria-valuemin": 0, "aria-valuemax": 100},
  h("div", {class: "bar-fill", style: {width: `${pct}%`}}), label ? h("span", {class: "bar-label"}, label) : null);
}

/** The page's title row: title and subtitle on the left, actions on the right. */
export function pageHead(title, subtitle = null, actions = null) {
  return h("div", {class: "page-head"},
    h("div", {}, h("h1", {}, title), subtitle ? h("p", {class: "muted"}, subtitle) : null),
    actions ? h("div", {class: "head-actions"}, actions) : null);
}
