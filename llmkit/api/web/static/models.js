// The model picker: the served models with what a user weighs when choosing one
// (parameters, quantization, file size, context length, capabilities), put together
// from the server's two listings: Ollama's /api/tags has the size and details,
// OpenAI's /v1/models the context (max_model_len, as vLLM reports it).

const $ = (id) => document.getElementById(id);

// 138_000_000 -> "138 MB"
export function bytes(n) {
  if (!n) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// 8192 -> "8K", 131072 -> "128K"
export function tokens(n) {
  if (!n) return "";
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : n >= 1000 ? `${Math.round(n / 1000)}K` : `${n}`;
}

const untagged = (name) => name.replace(/:latest$/, "");

// [{id, size, context, parameters, quantization, capabilities}] in /v1/models' order
export async function loadModels(api) {
  const [openai, tags] = await Promise.all([
    api.json("/v1/models"),
    api.json("/api/tags").catch(() => ({ models: [] })), // facts only: the picker works without
  ]);
  const byName = new Map(tags.models.map((m) => [untagged(m.name), m]));
  return openai.data.map((m) => {
    const t = byName.get(m.id) || byName.get(untagged(m.id)) || {};
    return {
      id: m.id,
      context: m.max_model_len || null,
      size: t.size || null,
      parameters: t.details?.parameter_size || "",
      quantization: t.details?.quantization_level || "",
      capabilities: (t.capabilities || []).filter((c) => c !== "completion"),
    };
  });
}

function facts(m) {
  const out = [];
  if (m.parameters) out.push(m.parameters);
  if (m.quantization) out.push(m.quantization);
  if (m.size) out.push(bytes(m.size));
  if (m.context) out.push(`${tokens(m.context)} context`);
  return out;
}

// The picker over #model (a button) and #model-menu (a listbox); onPick(id) when chosen.
export class ModelPicker {
  constructor(onPick) {
    this.models = [];
    this.value = "";
    this.onPick = onPick;
    this.button = $("model");
    this.menu = $("model-menu");
    this.button.addEventListener("click", () => (this.menu.hidden ? this.open() : this.close()));
    this.button.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowDown") { ev.preventDefault(); this.open(); }
    });
    this.menu.addEventListener("keydown", (ev) => this.key(ev));
    document.addEventListener("click", (ev) => {
      if (!this.menu.hidden && !ev.target.closest(".picker")) this.close(false);
    });
  }

  fill(models) {
    this.models = models;
    this.menu.replaceChildren(...models.map((m) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.tabIndex = -1;
      li.dataset.model = m.id;
      const name = Object.assign(document.createElement("span"), { className: "name", textContent: m.id });
      const row = Object.assign(document.createElement("span"), { className: "facts" });
      for (const f of [...facts(m), ...m.capabilities]) {
        row.append(Object.assign(document.createElement("span"), { className: "fact", textContent: f }));
      }
      li.append(name, row);
      li.addEventListener("click", () => this.pick(m.id));
      return li;
    }));
    this.set(this.value || models[0]?.id || "");
  }

  get current() { return this.models.find((m) => m.id === this.value) || null; }

  // show `id` as chosen, without telling anyone (a conversation was opened)
  set(id) {
    this.value = id || this.models[0]?.id || "";
    this.button.value = this.value;
    const m = this.current;
    this.button.querySelector(".model-name").textContent = this.value || "no model";
    const f = m ? [m.parameters, m.size && bytes(m.size), m.context && `${tokens(m.context)} ctx`] : [];
    this.button.querySelector(".model-facts").textContent = f.filter(Boolean).join(" · ");
    for (const li of this.menu.children) {
      li.setAttribute("aria-selected", String(li.dataset.model === this.value));
    }
  }

  pick(id) {
    const changed = id !== this.value;
    this.set(id);
    this.close();
    if (changed) this.onPick(id);
  }

  open() {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    const chosen = this.menu.querySelector("[aria-selected='true']") || this.menu.firstElementChild;
    chosen?.focus();
  }

  close(refocus = true) {
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  key(ev) {
    const items = [...this.menu.children];
    const i = items.indexOf(document.activeElement);
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const next = items[(i + (ev.key === "ArrowDown" ? 1 : items.length - 1)) % items.length];
      next?.focus();
    } else if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      if (i >= 0) this.pick(items[i].dataset.model);
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      this.close();
    }
  }
}
