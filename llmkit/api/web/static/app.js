// The chat page: the conversation list, the open conversation and its settings,
// and the composer; everything kept by the server's store. The browser keeps only
// the API key (this tab), the theme, and which MCP servers each conversation may use.
import { Api, ApiError, path } from "/ui/api.js";
import { autoGrow, closeSettings, closeSide, openSettings, wireChrome } from "/ui/chrome.js";
import { Attachments } from "/ui/images.js";
import { ConversationList } from "/ui/list.js";
import { editForm, el, messageView } from "/ui/messages.js";
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

const list = new ConversationList(api, {
  current: () => state.current?.name,
  open: (name) => { openConversation(name); closeSide(); },
  rename: (name, wanted) => rename(name, wanted),
  removed: (name) => {
    tools.forget(name);
    if (state.current?.name === name) { use(null); showConversation(); }
  },
  fail,
});
const loadList = () => list.load();

async function rename(name, wanted) {
  const conv = await api.json(path(name), { method: "PATCH", body: { name: wanted } });
  tools.move(name, wanted);
  if (state.current?.name === name) { state.current.name = wanted; showHeader(); setHash(); }
  return conv;
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
  }, act));
  const welcome = $("welcome");
  welcome.hidden = views.length > 0;
  box.replaceChildren(welcome, ...views);
  box.scrollTop = box.scrollHeight;
}

function lastUserIndex() {
  for (let i = state.messages.length - 1; i >= 0; i--) if (state.messages[i].role === "user") return i;
  return state.messages.length;
}

// what a message's buttons do
const act = {
  api,
  edit(view, m) {
    if (state.busy) return;
    editForm(view, m, {
      onSave: (text) => {
        const again = { dropFrom: state.messages.indexOf(m), pendingUser: { ...m, id: undefined, content: text } };
        reply(path(state.current.name, `/messages/${m.id}/resend`), { content: text }, again);
      },
      onCancel: () => showConversation(),
    });
  },
  regenerate() {
    const i = lastUserIndex();
    reply(path(state.current.name, "/regenerate"), {}, { dropFrom: i, pendingUser: state.messages[i] });
  },
  goOn: (m) => reply(path(state.current.name, "/continue"), {}, { continuing: m }),
  approve: (call, yes) => approve(call, yes),
};

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
    view = messageView(target, { after: prev }, act);
    box.append(view);
  };
  if (continuing) {
    target = continuing;
    base = continuing.content;
    baseThought = continuing.reasoning || "";
    view = messageView(target, {}, act);
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
        if (!target && data.message?.role === "assistant") begin(); // a reply with no text
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
