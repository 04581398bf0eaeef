// The conversations API from the page: fetch with the tab's API key, replies read
// as server-sent events from a POST (EventSource can only GET).

const KEY = "llmkit-api-key";

export class ApiError extends Error {
  constructor(status, message, code = null) { super(message); this.status = status; this.code = code; }
}

export class Api {
  // askKey(reason) -> Promise<string>: the page's key prompt.
  constructor(askKey) { this.askKey = askKey; }

  headers(extra = {}) {
    const key = sessionStorage.getItem(KEY);
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  // fetch, asking for a key (once per refusal) while the server answers 401
  async fetch(path, init = {}) {
    for (;;) {
      const used = sessionStorage.getItem(KEY);
      const res = await fetch(path, { ...init, headers: this.headers(init.headers || {}) });
      if (res.status !== 401) return res;
      if (sessionStorage.getItem(KEY) !== used) continue; // a key came meanwhile: try it
      // requests refused at once share one prompt: the key it gives serves them all
      if (!this.asking) {
        const had = sessionStorage.getItem(KEY);
        this.asking = this.askKey(had ? "That key was refused." : "").then((key) => {
          sessionStorage.setItem(KEY, key);
          this.asking = null;
        });
      }
      await this.asking;
    }
  }

  async json(path, init = {}) {
    if (init.body !== undefined && typeof init.body !== "string") {
      init = { ...init, body: JSON.stringify(init.body),
        headers: { "Content-Type": "application/json" } };
    }
    const res = await this.fetch(path, init);
    if (!res.ok) throw await asError(res);
    return res.status === 204 ? null : res.json();
  }

  // POST and hand each event to onEvent(name, data); resolves when the stream ends
  async stream(path, body, onEvent, signal) {
    const res = await this.fetch(path, {
      method: "POST", signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body || {}),
    });
    if (!res.ok) throw await asError(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replaceAll("\r\n", "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trimStart();
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }
}

async function asError(res) {
  let message = `${res.status} ${res.statusText}`, code = null;
  try {
    const body = await res.json();
    message = body.error?.message || body.error || message;
    code = body.error?.code || null;
  } catch { /* not JSON */ }
  return new ApiError(res.status, message, code);
}

export const path = (name, rest = "") => `/conversations/${encodeURIComponent(name)}${rest}`;
