// The conversation list: one row per stored conversation (open, rename in place,
// delete), searched by the server in names and in what the messages say.
import { path } from "/ui/api.js";
import { el } from "/ui/messages.js";

const $ = (id) => document.getElementById(id);

export class ConversationList {
  // hooks: current() -> the open conversation's name; open(name); rename(name, wanted)
  // (a promise); removed(name); fail(error)
  constructor(api, hooks) {
    this.api = api;
    this.hooks = hooks;
  }

  async load() {
    const q = $("search").value.trim();
    const { data } = await this.api.json("/conversations" + (q ? `?q=${encodeURIComponent(q)}` : ""));
    $("conversations").replaceChildren(...data.map((c) => this.item(c)));
  }

  item(conv) {
    const li = el("li", { class: conv.name === this.hooks.current() ? "current" : "" });
    li.dataset.name = conv.name;
    const open = el("button", { type: "button", class: "open", title: conv.name,
      onclick: () => this.hooks.open(conv.name) }, conv.name);
    const rename = el("button", { type: "button", class: "act", "aria-label": `Rename ${conv.name}`,
      onclick: () => this.startRename(li, conv.name) }, "✎");
    const remove = el("button", { type: "button", class: "act", "aria-label": `Delete ${conv.name}`,
      onclick: () => this.remove(conv.name) }, "✕");
    li.append(open, rename, remove);
    return li;
  }

  startRename(li, name) {
    const input = el("input", { type: "text", "aria-label": "New name" });
    input.value = name;
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const wanted = input.value.trim();
      if (save && wanted && wanted !== name) {
        try { await this.hooks.rename(name, wanted); } catch (e) { this.hooks.fail(e); }
      }
      await this.load();
    };
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); finish(true); }
      if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
    li.replaceChildren(input);
    input.focus();
    input.select();
  }

  async remove(name) {
    if (!confirm(`Delete the conversation "${name}"? This cannot be undone.`)) return;
    try {
      await this.api.json(path(name), { method: "DELETE" });
      this.hooks.removed(name);
      await this.load();
    } catch (e) { this.hooks.fail(e); }
  }
}
