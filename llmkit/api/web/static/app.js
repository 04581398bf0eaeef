// The chat page: the conversation list, the open conversation and its settings,
// and the composer; everything kept by the server's store. The browser keeps only
// the API key (this tab), the theme, and which MCP servers each conversation may use.
import { Api, ApiError, path } from "/ui/api.js";
import { autoGrow, closeSettings, closeSide, openSettings, wireChrome } from "/ui/chrome.js";
import { Attachments, messageImages } from "/ui/images.js";
import { ModelPicker, loadModels } from "/ui/models.js";
import { renderMarkdown, showThinking } from "/ui/render.js";
import { ToolServers, askApproval, setResult, toolBox } from "/ui/tools.js";

const $ = (id) => document.getElementById(id);
const state = { current: null, messages: [], busy: false, abort: null };
const api = new Api(askKey);
const picker = new ModelPicker(changeModel);
const tools = new ToolServers(api);
const attachments = new Attachments((text) => status(text, true));

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
  for (const b of document.querySelectorAll(".msg .meta button, .approval button")) b.disabled = busy;
}

// -- titles ------------------------------------------------------------------------------

// A new conversation is named after its first message (as llama-server's page does),
// unless it was given a name: the store's name is the title the list shows.
const AUTO_NAME = /^chat-\d{8}-\d{6}/;

export function titleFrom(text) {
  const line = text.split("\n").map((l) => l.trim()).find(Boolean) || "";
  const plain = line.replace(/^[#>*\-\s]+/, "").replace(/[`*_]/g, "").replace(/\s+/g, " ")
    .replaceAll("/", "∕") // a "/" would read as a path under /conversations/
    .trim();
  if (!plain) return "Image chat";
  if (plain.length <= 48) return plain;
  const cut = plain.slice(0, 48);
  return `${(cut.slice(0, cut.lastIndexOf(" ")) || cut).replace(/[\s,.;:]+$/, "")}…`;
}

// try `title`, then "title (2)", ... while the name is taken
async function titled(attempt, title) {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n === 1 ? title : `${title} (${n})`);
    } catch (e) {
      if (!(e instanceof ApiError && e.code === "conversation_exists") || n >= 20) throw e;
    }
  }
}

// -- the conversation list -------------------------------------------------------------

async function loadList() {
  const q = $("search").value.trim();
  const { data } = await api.json("/conversations" + (q ? `?q=${encodeURIComponent(q)}` : ""));
  $("conversations").replaceChildren(...data.map(listItem));
}

function listItem(conv) {
  const li = el("li", { class: conv.name === state.current?.name ? "current" : "" });
  li.dataset.name = conv.name;
  const open = el("button", { type: "button", class: "open", title: conv.name,
    onclick: () => { openConversation(conv.name); closeSide(); } }, conv.name);
  const rename = el("button", { type: "button", class: "act", "aria-label": `Rename ${conv.name}`,
    onclick: () => startRename(li, conv.name) }, "✎");
  const remove = el("button", { type: "button", class: "act", "aria-label": `Delete ${conv.name}`,
    onclick: () => removeConversation(conv.name) }, "✕");
  li.append(open, rename, remove);
  return li;
}

async function rename(name, wanted) {
  const conv = await api.json(path(name), { method: "PATCH", body: { name: wanted } });
  tools.move(name, wanted);
  if (state.current?.name === name) { state.current.name = wanted; showHeader(); setHash(); }
  return conv;
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
      try { await rename(name, wanted); } catch (e) { fail(e); }
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
    tools.forget(name);
    if (state.current?.name === name) { state.current = null; state.messages = []; showConversation(); }
    await loadList();
  } catch (e) { fail(e); }
}

// -- the open conversation -------------------------------------------------------------

function setHash() {
  history.replaceState(null, "", state.current ? `#c=${encodeURIComponent(state.current.name)}` : "#");
}

function use(conv) {
  state.current = conv;
  state.messages = conv?.messages || [];
  tools.open(conv?.name || "");
}

async function openConversation(name) {
  try {
    use(await api.json(path(name)));
    setHash();
    showConversation();
    await loadList();
    $("input").focus();
  } catch (e) { fail(e); }
}

async function refresh() {
  if (!state.current) return;
  use(await api.json(path(state.current.name)));
  showConversation();
}

function showHeader() {
  const c = state.current;
  $("title").textContent = c ? c.name : "New chat";
  document.title = c ? `${c.name} · llmkit` : "llmkit chat";
  picker.set(c?.model || picker.value);
  $("welcome-model").textContent = picker.value;
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
  // a tool's result is shown inside the call it answers, not as a message of its own
  const results = new Map(state.messages.filter((m) => m.role === "tool").map((m) => [m.tool_call_id, m]));
  const shown = state.messages.filter((m) => m.role !== "tool");
  const views = shown.map((m, i) => messageView(m, {
    last: i === shown.length - 1, results, after: shown[i - 1]?.role,
  }));
  const welcome = $("welcome");
  welcome.hidden = views.length > 0;
  box.replaceChildren(welcome, ...views);
  box.scrollTop = box.scrollHeight;
}

function messageView(m, { last = false, results = new Map(), after = null } = {}) {
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
  } else if (last && m.role === "assistant" && m.id != null && !m.tool_calls?.length) {
    meta.append(el("button", { type: "button", onclick: () => {
      const i = lastUserIndex();
      const again = { dropFrom: i, pendingUser: state.messages[i] };
      reply(path(state.current.name, "/regenerate"), {}, again);
    } }, "Regenerate"));
    if (m.interrupted || m.finish_reason === "length") {
      meta.append(el("button", { type: "button", onclick: () => reply(path(state.current.name, "/continue"), {}, { continuing: m }) }, "Continue"));
    }
  }
  const cont = m.role === "assistant" && after === "assistant"; // the same turn, after a tool
  const view = el("article", { class: `msg ${m.role}${cont ? " cont" : ""}` },
    el("div", { class: "who" }, m.role === "user" ? "You" : m.role === "assistant" ? "Assistant" : m.role));
  if (m.images?.length) view.append(messageImages(m.images, api));
  view.append(body, el("div", { class: "calls" }), meta);
  view.dataset.id = m.id ?? "";
  for (const call of m.tool_calls || []) {
    const r = results.get(call.id);
    const b = toolBox(call, r ? { output: r.content, error: !!r.tool_error } : null);
    // a call with no result is waiting for the user's yes/no (the server stopped there)
    if (!r && last) askApproval(b, call, (yes) => approve(call, yes));
    view.querySelector(".calls").append(b);
  }
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
    const again = { dropFrom: index, pendingUser: { ...m, id: undefined, content: text } };
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

// The open conversation, created if there is none; `first`: the text of the turn
// about to be sent, which names a conversation still under its made-up name.
async function ensureConversation(first) {
  if (state.current) {
    const name = state.current.name;
    if (first !== undefined && !state.messages.length && AUTO_NAME.test(name)) {
      await titled((n) => rename(name, n), titleFrom(first)).catch(() => {}); // a name is no must
      await loadList();
    }
    return state.current;
  }
  const body = { model: picker.value || undefined };
  const create = (name) => api.json("/conversations", { method: "POST", body: { ...body, name } });
  const conv = first === undefined ? await create(undefined) : await titled(create, titleFrom(first));
  tools.move("", conv.name);
  use({ ...conv, messages: [] });
  setHash();
  showHeader();
  await loadList();
  return state.current;
}

async function send(text) {
  if (state.busy || (!text.trim() && !attachments.count)) return;
  try {
    const conv = await ensureConversation(text);
    const body = { content: text };
    const images = attachments.take();
    if (images.length) body.images = images;
    Object.assign(body, tools.turn());
    $("input").value = "";
    autoGrow($("input"));
    const pendingUser = { role: "user", content: text, images: images.map((url) => ({ url })) };
    const stored = await reply(path(conv.name, "/messages"), body, { pendingUser });
    if (!stored) { // refused before it was kept (a 400): the turn goes back to the composer
      state.messages = state.messages.filter((m) => m !== pendingUser);
      showConversation();
      $("input").value = text;
      attachments.restore(images);
    }
  } catch (e) { fail(e); }
}

function approve(call, yes) {
  reply(path(state.current.name, "/approve"), { id: call.id, approve: yes });
}

// Stream a reply; `dropFrom`: messages from this index go (regenerate, edit);
// `continuing`: the cut reply that grows; `pendingUser`: shown until the server stores it.
// True once the server answered with a stream (the turn is kept).
async function reply(url, body, { dropFrom, continuing, pendingUser } = {}) {
  if (state.busy) return false;
  let started = false;
  if (dropFrom !== undefined) state.messages = state.messages.slice(0, dropFrom);
  if (pendingUser !== undefined) state.messages.push(pendingUser);
  showConversation();
  const box = $("messages");
  // The assistant message the next pieces go to: after a tool's result the model
  // starts a new one (the store keeps the call and what follows apart).
  let target = null, view = null, base = "", baseThought = "", text = "", thought = "";
  let toolsUsed = false;
  const begin = () => {
    if (target) return;
    target = { role: "assistant", content: "" };
    state.messages.push(target);
    const prev = box.lastElementChild?.classList.contains("assistant") ? "assistant" : null;
    view = messageView(target, { after: prev });
    box.append(view);
  };
  if (continuing) {
    target = continuing;
    base = continuing.content;
    baseThought = continuing.reasoning || "";
    view = messageView(target);
    box.lastElementChild.replaceWith(view);
  }
  const dirty = new Map(); // view -> message, drawn once a frame
  const draw = () => {
    if (!dirty.size) requestAnimationFrame(() => {
      for (const [v, m] of dirty) {
        showThinking(v, m.reasoning, { thinking: m.thinking });
        renderMarkdown(v.querySelector(".body"), m.content);
      }
      dirty.clear();
      box.scrollTop = box.scrollHeight;
    });
    dirty.set(view, target);
  };
  const callBox = (id) => [...box.querySelectorAll("details.tool")].find((b) => b.dataset.call === id);
  const controller = new AbortController();
  state.abort = controller;
  setBusy(true);
  status("Generating…");
  try {
    await api.stream(url, body, (event, data) => {
      started = true;
      if (event === "user") {
        const i = state.messages.findLastIndex((m) => m.role === "user" && m.id == null);
        if (i >= 0) state.messages[i] = data;
      } else if (event === "reasoning") { // thinking, before the answer
        begin();
        thought += data.text;
        Object.assign(target, { reasoning: baseThought + thought, thinking: true, interrupted: false });
        draw();
      } else if (event === "delta") {
        begin();
        text += data.text;
        Object.assign(target, { content: base + text, thinking: false, interrupted: false });
        draw();
      } else if (event === "tool_call") {
        begin();
        toolsUsed = true;
        target.tool_calls = [...(target.tool_calls || []), data];
        target.thinking = false;
        draw();
        view.querySelector(".calls").append(toolBox(data));
        status(`Calling ${data.name}…`);
      } else if (event === "approval") {
        const b = callBox(data.id);
        if (b) askApproval(b, data, (yes) => approve(data, yes));
      } else if (event === "tool_result") {
        toolsUsed = true;
        const b = callBox(data.id);
        if (b) setResult(b, data);
        target = null; // what the model says next is a message of its own
        base = baseThought = text = thought = "";
        status("Generating…");
      } else if (event === "done") {
        if (target) Object.assign(target, data.message || {}, { usage: data.usage, finish_reason: data.finish_reason });
        status(data.finish_reason === "approval_required" ? "Waiting for your approval."
          : data.finish_reason === "max_tool_steps" ? "Stopped: the tool step limit was reached." : "");
      } else if (event === "error") {
        status(data.error?.message || "The reply failed.", true);
      }
    }, controller.signal);
  } catch (e) {
    if (e.name !== "AbortError") fail(e);
    else status("Stopped; what arrived is kept, marked interrupted.");
  } finally {
    state.abort = null;
    if (target) target.thinking = false; // however it ended, the thinking is over
    setBusy(false);
  }
  if (controller.signal.aborted) await settle();
  else if (toolsUsed) await refresh().catch(fail); // calls and results as the store keeps them
  else showConversation();
  await loadList();
  $("input").focus();
  return started || controller.signal.aborted;
}

// After Stop the server stores the cut reply as soon as it notices: show it as stored.
async function settle() {
  for (let i = 0; i < 25; i++) {
    const conv = await api.json(path(state.current.name));
    const last = conv.messages[conv.messages.length - 1];
    if (!conv.busy && (!last || last.role !== "user" || i > 10)) { use(conv); break; }
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
    closeSettings();
    status("Settings saved.");
  } catch (e) { fail(e); }
}

async function changeModel(id) {
  $("welcome-model").textContent = id;
  if (!state.current) return;
  try {
    await api.json(path(state.current.name), { method: "PATCH", body: { model: id } });
    state.current.model = id;
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
  wireChrome();
  $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); send($("input").value); });
  $("input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send($("input").value); }
  });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && state.busy) { ev.preventDefault(); stop(); } });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    use(null); setHash(); showConversation(); loadList();
    closeSide(); $("input").focus();
  });
  let searching = null;
  $("search").addEventListener("input", () => { clearTimeout(searching); searching = setTimeout(() => loadList().catch(fail), 200); });
  $("settings-form").addEventListener("submit", saveSettings);
  $("tools-chip").addEventListener("click", () => openSettings("tools"));
  $("export-md").addEventListener("click", () => exportAs("markdown"));
  $("export-json").addEventListener("click", () => exportAs("json"));
  $("import-btn").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", importFile);
  try {
    const [models] = await Promise.all([loadModels(api), tools.load()]);
    picker.fill(models);
    await loadList();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("c");
    if (wanted) await openConversation(wanted); else showConversation();
  } catch (e) { fail(e); }
  document.body.dataset.ready = "1"; // for tests: the first load is done
}

start();
