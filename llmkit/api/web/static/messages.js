// One message of the conversation as the page shows it: the text (a reply as safe
// Markdown), its images, its tool calls (each folded, a result inside the call it
// answers), thinking, usage and the buttons that act on it; and a user turn's
// in-place editor. What the buttons do is the caller's (`act`).
import { messageImages } from "/ui/images.js";
import { renderMarkdown, showThinking } from "/ui/render.js";
import { askApproval, toolBox } from "/ui/tools.js";

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

// `act`: {api, edit(view, m), regenerate(), goOn(m), approve(call, yes)}
export function messageView(m, { last = false, results = new Map(), after = null } = {}, act) {
  const body = el("div", { class: "body" });
  if (m.role === "assistant") renderMarkdown(body, m.content);
  else body.textContent = m.content;
  const meta = el("div", { class: "meta" });
  if (m.interrupted) meta.append(el("span", { class: "badge" }, "interrupted"));
  if (m.usage) {
    const u = m.usage;
    const speed = u.tokens_per_second == null ? "" : ` · ${u.tokens_per_second.toFixed(1)} tokens/s`;
    meta.append(el("span", { class: "usage" },
      `${u.prompt_tokens} prompt + ${u.completion_tokens} reply tokens` +
      `${u.reasoning_tokens ? ` (${u.reasoning_tokens} thinking)` : ""}${speed}`));
  }
  if (m.role === "user") {
    meta.append(el("button", { type: "button", onclick: () => act.edit(view, m) }, "Edit"));
  } else if (last && m.role === "assistant" && m.id != null && !m.tool_calls?.length) {
    meta.append(el("button", { type: "button", onclick: () => act.regenerate() }, "Regenerate"));
    if (m.interrupted || m.finish_reason === "length") {
      meta.append(el("button", { type: "button", onclick: () => act.goOn(m) }, "Continue"));
    }
  }
  const cont = m.role === "assistant" && after === "assistant"; // the same turn, after a tool
  const view = el("article", { class: `msg ${m.role}${cont ? " cont" : ""}` },
    el("div", { class: "who" }, m.role === "user" ? "You" : m.role === "assistant" ? "Assistant" : m.role));
  if (m.images?.length) view.append(messageImages(m.images, act.api));
  view.append(body, el("div", { class: "calls" }), meta);
  view.dataset.id = m.id ?? "";
  for (const call of m.tool_calls || []) {
    const r = results.get(call.id);
    const b = toolBox(call, r ? { output: r.content, error: !!r.tool_error } : null);
    // a call with no result is waiting for the user's yes/no (the server stopped there)
    if (!r && last) askApproval(b, call, (yes) => act.approve(call, yes));
    view.querySelector(".calls").append(b);
  }
  if (m.role === "assistant") showThinking(view, m.reasoning, { thinking: !!m.thinking });
  return view;
}

// Edit a user turn in place: onSave(text), onCancel()
export function editForm(view, m, { onSave, onCancel }) {
  const area = el("textarea", { rows: "3", "aria-label": "Edit the message" });
  area.value = m.content;
  const save = el("button", { type: "button", onclick: () => {
    const text = area.value.trim();
    if (text) onSave(text);
  } }, "Save & send");
  const cancel = el("button", { type: "button", onclick: onCancel }, "Cancel");
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); save.click(); }
    if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); cancel.click(); }
  });
  view.querySelector(".body").replaceWith(area);
  view.querySelector(".meta").replaceChildren(save, cancel);
  area.focus();
}

