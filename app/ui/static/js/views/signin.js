// Sign in with an API key: checked against the API (a read call), then kept in sessionStorage for this tab.

import {api, ApiError, session} from "../api.js";
import {errorBox, h} from "../dom.js";

export function signInView({message, onSignedIn}) {
  const input = h("input", {type: "password", id: "api-key", name: "api-key", autocomplete: "off", required: true,
    placeholder: "taas_…", spellcheck: "false", "aria-label": "API key"});
  const error = h("div", {id: "sign-in-error"}, message ? h("div", {class: "notice"}, message) : null);
  const button = h("button", {type: "submit", class: "btn btn-primary", id: "sign-in"}, "Sign in");

  const form = h("form", {class: "signin-form", onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    error.replaceChildren();
    try {
      await api("/v1/datasets?limit=1", {key, quiet: true}); // any read route: 401 for an unknown key
      session.set(key);
      onSignedIn();
    } catch (err) {
      error.replaceChildren(errorBox(err instanceof ApiError ? err : {message: String(err)}));
      button.disabled = false;
      input.select();
    }
  }},
  h("label", {for: "api-key"}, "API key"), input, button, error);

  const node = h("div", {class: "signin"},
    h("section", {class: "card signin-card"},
      h("h1", {}, "Sign in to taas"),
      h("p", {class: "muted"}, "Paste an API key. It stays in this browser tab only (sessionStorage) and is sent as a ",
        h("code", {}, "Bearer"), " token to the API. ", h("code", {}, "make run"), " writes a development key to ",
        h("code", {}, "data/dev-key"), "."),
      form));
  return {node, ready: () => input.focus()};
}
