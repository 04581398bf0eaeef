// The chat page: the conversation list, the open conversation and its settings,
// and the composer; everything kept by the server's store (nothing in the browser
// but the API key, for this tab).
import { Api, ApiError, path } from "/ui/api.js";
import { renderMarkdown, showThinking } from "/ui/render.js";

const $ = (id) => document.getElementById(id);
const state = { current: null, messages: [], busy: false, abort: null, models: [] };
const api = new Api(askKey);

// -- the key prompt ------------------------------------------------------------------

function askKey(reason) {
  const dialog = $("key-dialog");
  $("key-error").textContent = reason;
  $("key-input").value = "";
  return new Promise((resolve) => {
    $("key-form").onsubmit = () => { resolve($("key-input").value.trim()); };
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  });
}

// -- small helpers ---------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function fail(e) { status(e instanceof ApiError ? e.message : String(e), true); }

function setBusy(busy) {
  state.busy = busy;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  for (const b of document.querySelectorAll(".msg .meta button")) b.disabled = busy;
}

// -- the conversation list -------------------------------------------------------------

async function loadList() {
  const q = $("search").value.trim();
  const { data } = await api.json("/conversations" + (q ? `?q=${encodeURIComponent(q)}` : ""));
  const list = $("conversations");
  list.replaceChildren(...data.map(listItem));
}

function listItem(conv) {
  const li = el("li", { class: conv.name === state.current?.name ? "current" : "" });
  li.dataset.name = conv.name;
  const open = el("button", { type: "button", class: "open", title: conv.name,
    onclick: () => { openConversation(conv.name); $("sidebar").classList.remove("open"); } }, conv.name);
  const rename = el("button", { type: "button", class: "act", "aria-label": `Rename ${conv.name}`,
    onclick: () => startRename(li, conv.name) }, "✎");
  const remove = el("button", { type: "button", class: "act", "aria-label": `Delete ${conv.name}`,
    onclick: () => removeConversation(conv.name) }, "✕");
  li.append(open, rename, remove);
  return li;
}

function startRename(li, name) {
  const input = el("input", { type: "text", "aria-label": "New name" });
  input.value = name;
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const wanted = input.value.trim();
    if (save && wanted && wanted !== name) {
      try {
        await api.json(path(name), { method: "PATCH", body: { name: wanted } });
        if (state.current?.name === name) state.current.name = wanted;
        showHeader();
        setHash();
      } catch (e) { fail(e); }
    }
    await loadList();
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

async function removeConversation(name) {
  if (!confirm(`Delete the conversation "${name}"? This cannot be undone.`)) return;
  try {
    await api.json(path(name), { method: "DELETE" });
    if (state.current?.name === name) { state.current = null; state.messages = []; showConversation(); }
    await loadList();
  } catch (e) { fail(e); }
}

// -- the open conversation -------------------------------------------------------------

function setHash() {
  history.replaceState(null, "", state.current ? `#c=${encodeURIComponent(state.current.name)}` : "#");
}

async function openConversation(name) {
  try {
    const conv = await api.json(path(name));
    state.current = conv;
    state.messages = conv.messages;
    setHash();
    showConversation();
    await loadList();
    $("input").focus();
  } catch (e) { fail(e); }
}

async function refresh() {
  if (!state.current) return;
  const conv = await api.json(path(state.current.name));
  state.current = conv;
  state.messages = conv.messages;
  showConversation();
}

function showHeader() {
  const c = state.current;
  $("title").textContent = c ? c.name : "New chat";
  document.title = c ? `${c.name} · llmkit` : "llmkit chat";
  $("model").value = c?.model || state.models[0] || "";
  $("system").value = c?.system || "";
  const memory = $("memory");
  if (c && ![...memory.options].some((o) => o.value === c.memory)) {
    memory.append(el("option", { value: c.memory }, c.memory));
  }
  memory.value = c?.memory || "buffer";
  $("temperature").value = c?.temperature ?? "";
  $("max-tokens").value = c?.max_tokens ?? "";
}

function showConversation() {
  showHeader();
  const box = $("messages");
  box.replaceChildren(...state.messages.map((m, i) => messageView(m, i === state.messages.length - 1)));
  box.scrollTop = box.scrollHeight;
}

function messageView(m, last) {
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
    meta.append(el("button", { type: "button", onclick: () => startEdit(view, m) }, "Edit"));
  } else if (last && m.role === "assistant" && m.id != null) {
    meta.append(el("button", { type: "button", onclick: () => {
      const i = lastUserIndex();
      const again = { dropFrom: i, pendingUser: state.messages[i]?.content };
      reply(path(state.current.name, "/regenerate"), {}, again);
    } }, "Regenerate"));
    if (m.interrupted || m.finish_reason === "length") {
      meta.append(el("button", { type: "button", onclick: () => reply(path(state.current.name, "/continue"), {}, { continuing: m }) }, "Continue"));
    }
  }
  const view = el("article", { class: `msg ${m.role}` },
    el("div", { class: "who" }, m.role === "user" ? "You" : m.role === "assistant" ? "Assistant" : m.role),
    body, meta);
  view.dataset.id = m.id ?? "";
  if (m.role === "assistant") showThinking(view, m.reasoning, { thinking: !!m.thinking });
  return view;
}

function lastUserIndex() {
  for (let i = state.messages.length - 1; i >= 0; i--) if (state.messages[i].role === "user") return i;
  return state.messages.length;
}

function startEdit(view, m) {
  if (state.busy) return;
  const area = el("textarea", { rows: "3", "aria-label": "Edit the message" });
  area.value = m.content;
  const save = el("button", { type: "button", onclick: () => {
    const text = area.value.trim();
    if (!text) return;
    const index = state.messages.indexOf(m);
    const again = { dropFrom: index, pendingUser: text };
    reply(path(state.current.name, `/messages/${m.id}/resend`), { content: text }, again);
  } }, "Save & send");
  const cancel = el("button", { type: "button", onclick: () => showConversation() }, "Cancel");
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); save.click(); }
    if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); cancel.click(); }
  });
  view.querySelector(".body").replaceWith(area);
  view.querySelector(".meta").replaceChildren(save, cancel);
  area.focus();
}

// -- sending and streaming -------------------------------------------------------------

async function ensureConversation() {
  if (state.current) return state.current;
  const body = { model: $("model").value || undefined };
  state.current = await api.json("/conversations", { method: "POST", body });
  state.messages = [];
  setHash();
  showHeader();
  await loadList();
  return state.current;
}

async function send(text) {
  if (state.busy || !text.trim()) return;
  try {
    const conv = await ensureConversation();
    $("input").value = "";
    await reply(path(conv.name, "/messages"), { content: text }, { pendingUser: text });
  } catch (e) { fail(e); }
}

// Stream a reply; `dropFrom`: messages from this index go (regenerate, edit);
// `continuing`: the cut reply that grows; `pendingUser`: shown until the server stores it.
async function reply(url, body, { dropFrom, continuing, pendingUser } = {}) {
  if (state.busy) return;
  if (dropFrom !== undefined) state.messages = state.messages.slice(0, dropFrom);
  if (pendingUser !== undefined) state.messages.push({ role: "user", content: pendingUser });
  let target = continuing;
  if (!target) { target = { role: "assistant", content: "" }; }
  const base = continuing ? continuing.content : "";
  const baseThought = continuing ? continuing.reasoning || "" : "";
  let text = "", thought = "";
  showConversation();
  let view = null;
  const box = $("messages");
  let drawing = false;
  const draw = () => {
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(() => {
      drawing = false;
      if (!view) {
        if (!continuing) state.messages.push(target);
        view = messageView(target, false);
        if (continuing) box.lastElementChild.replaceWith(view); else box.append(view);
      }
      showThinking(view, target.reasoning, { thinking: target.thinking });
      renderMarkdown(view.querySelector(".body"), target.content);
      box.scrollTop = box.scrollHeight;
    });
  };
  const controller = new AbortController();
  state.abort = controller;
  setBusy(true);
  status("Generating…");
  try {
    await api.stream(url, body, (event, data) => {
      if (event === "user") {
        const i = state.messages.findLastIndex((m) => m.role === "user" && m.id == null);
        if (i >= 0) state.messages[i] = data;
      } else if (event === "reasoning") { // thinking, before the answer
        thought += data.text;
        target.reasoning = baseThought + thought;
        target.thinking = true;
        target.interrupted = false;
        draw();
      } else if (event === "delta") {
        text += data.text;
        target.content = base + text;
        target.thinking = false;
        target.interrupted = false;
        draw();
      } else if (event === "done") {
        Object.assign(target, data.message || {}, { usage: data.usage, finish_reason: data.finish_reason });
        target.thinking = false;
        status("");
      } else if (event === "error") {
        status(data.error?.message || "The reply failed.", true);
      }
    }, controller.signal);
  } catch (e) {
    if (e.name !== "AbortError") fail(e);
    else status("Stopped; what arrived is kept, marked interrupted.");
  } finally {
    state.abort = null;
    target.thinking = false; // however it ended, the thinking is over
    setBusy(false);
  }
  if (controller.signal.aborted) await settle();
  else showConversation();
  await loadList();
  $("input").focus();
}

// After Stop the server stores the cut reply as soon as it notices: show it as stored.
async function settle() {
  for (let i = 0; i < 25; i++) {
    const conv = await api.json(path(state.current.name));
    const last = conv.messages[conv.messages.length - 1];
    if (!conv.busy && (!last || last.role !== "user" || i > 10)) {
      state.current = conv;
      state.messages = conv.messages;
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  showConversation();
}

function stop() { if (state.abort) state.abort.abort(); }

// -- settings, export, import ----------------------------------------------------------

async function saveSettings(ev) {
  ev.preventDefault();
  const t = $("temperature").value, n = $("max-tokens").value;
  const body = { // read before a new conversation's header resets the form
    system: $("system").value.trim() || null,
    memory: $("memory").value,
    temperature: t === "" ? null : Number(t),
    max_tokens: n === "" ? null : Number(n),
  };
  try {
    const conv = await ensureConversation();
    Object.assign(state.current, await api.json(path(conv.name), { method: "PATCH", body }));
    showHeader();
    status("Settings saved.");
  } catch (e) { fail(e); }
}

async function changeModel() {
  if (!state.current) return;
  try {
    await api.json(path(state.current.name), { method: "PATCH", body: { model: $("model").value } });
    state.current.model = $("model").value;
  } catch (e) { fail(e); }
}

async function exportAs(format) {
  if (!state.current) return;
  try {
    const res = await api.fetch(path(state.current.name, `/export?format=${format}`));
    if (!res.ok) throw new ApiError(res.status, await res.text());
    const blob = await res.blob();
    const a = el("a", { href: URL.createObjectURL(blob),
      download: `${state.current.name}.${format === "json" ? "json" : "md"}` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (e) { fail(e); }
}

async function importFile() {
  const file = $("import-file").files[0];
  if (!file) return;
  try {
    const doc = JSON.parse(await file.text());
    const conv = await api.json("/conversations/import", { method: "POST", body: doc });
    await openConversation(conv.name);
    status(`Imported "${conv.name}".`);
  } catch (e) { fail(e); } finally { $("import-file").value = ""; }
}

// -- start -----------------------------------------------------------------------------

async function start() {
  $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); send($("input").value); });
  $("input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send($("input").value); }
  });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && state.busy) { ev.preventDefault(); stop(); } });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    state.current = null; state.messages = []; setHash(); showConversation(); loadList();
    $("sidebar").classList.remove("open"); $("input").focus();
  });
  let searching = null;
  $("search").addEventListener("input", () => { clearTimeout(searching); searching = setTimeout(() => loadList().catch(fail), 200); });
  $("settings-form").addEventListener("submit", saveSettings);
  $("model").addEventListener("change", changeModel);
  $("export-md").addEventListener("click", () => exportAs("markdown"));
  $("export-json").addEventListener("click", () => exportAs("json"));
  $("import-btn").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", importFile);
  $("open-side").addEventListener("click", () => { $("sidebar").classList.add("open"); $("new-chat").focus(); });
  $("close-side").addEventListener("click", () => { $("sidebar").classList.remove("open"); $("open-side").focus(); });
  try {
    const models = await api.json("/v1/models");
    state.models = models.data.map((m) => m.id);
    $("model").replaceChildren(...state.models.map((id) => el("option", { value: id }, id)));
    await loadList();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("c");
    if (wanted) await openConversation(wanted); else showConversation();
  } catch (e) { fail(e); }
  document.body.dataset.ready = "1"; // for tests: the first load is done
}

start();
