// Tools on the page: which of the server's configured MCP servers a conversation may
// use (GET /mcp/servers), and each call the model makes, folded: its name and server,
// the arguments it wrote, the result, and a yes/no where the server asks for approval.
// Everything shown is text (textContent): arguments and results come from a model
// and a tool, never from the page.

const $ = (id) => document.getElementById(id);
const KEPT = "llmkit-mcp:"; // + conversation name: the servers chosen for it

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// JSON text as the model wrote it, indented when it parses
function pretty(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

// The servers a conversation may use, and whether its model must start with a call
// (tool_choice "required", or one tool by name). The choice is the page's (a turn
// names its servers, the store keeps no standing choice), so it is kept in
// localStorage per conversation; a chat not yet created keeps it under "".
export class ToolServers {
  constructor(api) {
    this.api = api;
    this.servers = [];
    this.conversation = "";
    $("tools-first").addEventListener("change", () => this.save());
  }

  async load() {
    try {
      const { data } = await this.api.json("/mcp/servers");
      this.servers = data;
    } catch {
      this.servers = []; // a server without MCP: no tools on the page
    }
    $("tools").hidden = this.servers.length === 0;
    this.show();
  }

  kept(name = this.conversation) {
    try {
      const kept = JSON.parse(localStorage.getItem(KEPT + name) || "{}");
      const known = new Set(this.servers.map((s) => s.name));
      return { servers: (kept.servers || []).filter((n) => known.has(n)), first: kept.first || "" };
    } catch { return { servers: [], first: "" }; }
  }

  // what a turn sends: {mcp, tool_choice} when tools are on, else {}
  turn() {
    const { servers, first } = this.kept();
    if (!servers.length) return {};
    if (!first) return { mcp: servers };
    return { mcp: servers, tool_choice: first === "required" ? "required" : { name: first } };
  }

  keep(choice, name = this.conversation) {
    if (choice.servers.length || choice.first) localStorage.setItem(KEPT + name, JSON.stringify(choice));
    else localStorage.removeItem(KEPT + name);
  }

  save() {
    this.keep({
      servers: [...$("tool-servers").querySelectorAll("input:checked")].map((b) => b.value),
      first: $("tools-first").value,
    });
    this.show();
  }

  forget(name) { localStorage.removeItem(KEPT + name); }

  // the conversation shown changed (opened, created)
  open(name) {
    this.conversation = name || "";
    this.show();
  }

  // a conversation got a new name (renamed; created from the chat not yet made, "")
  move(from, to) {
    const carried = this.kept(from);
    this.forget(from);
    this.keep(carried, to);
    if (this.conversation === from) this.open(to);
  }

  show() {
    const { servers, first } = this.kept();
    const chosen = new Set(servers);
    $("tool-servers").replaceChildren(...this.servers.map((s) => {
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = s.name;
      box.checked = chosen.has(s.name);
      box.disabled = !!s.error;
      box.addEventListener("change", () => this.save());
      const label = el("label", "check");
      label.dataset.server = s.name;
      const what = s.error ? `unreachable: ${s.error}`
        : `${s.tools.length} tool${s.tools.length === 1 ? "" : "s"}` +
          (s.require_approval === "always" ? " · asks before each call" : "");
      label.append(box, el("span", "", s.name), el("span", "url", what));
      label.title = s.tools.map((t) => t.name).join(", ");
      return label;
    }));
    // the first step: the model decides, any tool, or one of the chosen servers' tools
    const names = this.servers.filter((s) => chosen.has(s.name)).flatMap((s) => s.tools.map((t) => t.name));
    const option = (value, text) => Object.assign(document.createElement("option"), { value, textContent: text });
    $("tools-first").replaceChildren(option("", "the model decides"), option("required", "any tool"),
      ...[...new Set(names)].map((n) => option(n, n)));
    $("tools-first").value = first && (first === "required" || names.includes(first)) ? first : "";
    $("tools-first").disabled = chosen.size === 0;
    const n = chosen.size;
    $("tools-chip").hidden = this.servers.length === 0;
    $("tools-count").textContent = n ? `${n} tool server${n === 1 ? "" : "s"}` : "No tools";
  }
}

// One call, folded: `call` {id, server, name, arguments}; `result` {output, error}
// or null (running, or waiting for approval).
export function toolBox(call, result = null) {
  const box = el("details", "tool");
  box.dataset.call = call.id;
  const summary = el("summary");
  summary.innerHTML = '<svg class="icon small"><use href="#i-tool"/></svg>';
  summary.append(el("span", "tname", call.name));
  if (call.server) summary.append(el("span", "fact", call.server));
  summary.append(el("span", "tstate", "running…"));
  const body = el("div", "tbody");
  body.append(el("div", "tlabel", "Arguments"), el("pre", "args", pretty(call.arguments || "{}")));
  box.append(summary, body);
  if (result) setResult(box, result);
  return box;
}

export function setResult(box, { output, error }) {
  box.querySelector(".approval")?.remove();
  box.classList.toggle("failed", !!error);
  box.classList.toggle("done", !error);
  box.querySelector(".tstate").textContent = error ? "failed" : "done";
  let pre = box.querySelector("pre.result");
  if (!pre) {
    box.querySelector(".tbody").append(el("div", "tlabel", error ? "Error" : "Result"),
      (pre = el("pre", "result")));
  }
  pre.textContent = pretty(output ?? "");
}

// The server asks before running the call: onAnswer(true|false)
export function askApproval(box, call, onAnswer) {
  if (box.querySelector(".approval")) return;
  box.querySelector(".tstate").textContent = "needs approval";
  const card = el("div", "approval");
  card.append(el("div", "", `Run ${call.name}${call.server ? ` on ${call.server}` : ""}?`));
  const row = el("div", "row");
  const yes = el("button", "primary", "Approve");
  const no = el("button", "", "Deny");
  yes.type = no.type = "button";
  yes.addEventListener("click", () => onAnswer(true));
  no.addEventListener("click", () => onAnswer(false));
  row.append(yes, no);
  card.append(row);
  box.open = true;
  box.querySelector(".tbody").append(card);
}
