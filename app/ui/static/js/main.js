// The dashboard's entry point: sign-in gate, hash routing (#/jobs/job_…), one view at a time.

import {session} from "./api.js";
import {mount} from "./dom.js";
import {datasetsView} from "./views/datasets.js";
import {jobView} from "./views/job.js";
import {jobsView} from "./views/jobs.js";
import {modelView} from "./views/model.js";
import {modelsView} from "./views/models.js";
import {newJobView} from "./views/newjob.js";
import {signInView} from "./views/signin.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const signOut = document.getElementById("sign-out");
const label = document.getElementById("session-label");

const ROUTES = [
  [/^\/?$/, () => datasetsView()],
  [/^\/datasets$/, () => datasetsView()],
  [/^\/jobs$/, () => jobsView()],
  [/^\/jobs\/([^/]+)$/, (m) => jobView(decodeURIComponent(m[1]))],
  [/^\/models$/, () => modelsView()],
  [/^\/models\/([^/]+)$/, (m) => modelView(decodeURIComponent(m[1]))],
  [/^\/new$/, (m, query) => newJobView(query)],
];

let current = null; // the shown view: {node, cleanup}
let signInMessage = null;

function show(v) {
  if (current && current.cleanup) current.cleanup();
  current = v;
  mount(view, v.node);
  if (v.ready) v.ready(); // after the node is in the document (charts need a width)
  window.scrollTo(0, 0);
}

function route() {
  const [path, qs] = (location.hash.replace(/^#/, "") || "/datasets").split("?");
  const signedIn = Boolean(session.key);
  nav.hidden = !signedIn;
  signOut.hidden = !signedIn;
  label.textContent = signedIn ? `key ${session.key.split("_").slice(0, 2).join("_")}_…` : "";
  if (!signedIn) {
    show(signInView({message: signInMessage, onSignedIn: () => { signInMessage = null; route(); }}));
    return;
  }
  const section = path.split("/")[1] || "datasets";
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.nav === section);
  for (const [pattern, make] of ROUTES) {
    const m = path.match(pattern);
    if (m) { show(make(m, new URLSearchParams(qs || ""))); return; }
  }
  show({node: document.createTextNode("Page not found.")});
}

signOut.addEventListener("click", () => {
  session.clear();
  signInMessage = null;
  location.hash = "#/datasets";
  route();
});

window.addEventListener("taas:unauthorized", () => {
  if (!session.key) return;
  session.clear();
  signInMessage = "The API no longer accepts this key (revoked?): sign in again.";
  route();
});

window.addEventListener("hashchange", route);
route();
