// Model output to DOM, safely: markdown-it with raw HTML off (every tag the model
// writes is shown as text) and only http(s)/mailto links; code highlighted by
// highlight.js (which escapes); math by KaTeX (trust off: no \href, no HTML).
import hljs from "/ui/vendor/highlight/core.min.js";
import bash from "/ui/vendor/highlight/languages/bash.min.js";
import c from "/ui/vendor/highlight/languages/c.min.js";
import cpp from "/ui/vendor/highlight/languages/cpp.min.js";
import css from "/ui/vendor/highlight/languages/css.min.js";
import go from "/ui/vendor/highlight/languages/go.min.js";
import javascript from "/ui/vendor/highlight/languages/javascript.min.js";
import json from "/ui/vendor/highlight/languages/json.min.js";
import python from "/ui/vendor/highlight/languages/python.min.js";
import rust from "/ui/vendor/highlight/languages/rust.min.js";
import sql from "/ui/vendor/highlight/languages/sql.min.js";
import typescript from "/ui/vendor/highlight/languages/typescript.min.js";
import xml from "/ui/vendor/highlight/languages/xml.min.js";
import yaml from "/ui/vendor/highlight/languages/yaml.min.js";

const languages = { bash, c, cpp, css, go, javascript, json, python, rust, sql, typescript, xml, yaml };
for (const [name, lang] of Object.entries(languages)) hljs.registerLanguage(name, lang);
for (const [alias, name] of [["sh", "bash"], ["shell", "bash"], ["js", "javascript"],
  ["ts", "typescript"], ["py", "python"], ["html", "xml"], ["yml", "yaml"]]) {
  hljs.registerAliases(alias, { languageName: name });
}

let md = null;
function markdown() {
  if (md) return md;
  md = window.markdownit({
    html: false, // raw HTML in a reply stays text
    linkify: false,
    breaks: true,
    highlight(code, lang) {
      if (lang && hljs.getLanguage(lang)) {
        return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
      }
      return ""; // markdown-it escapes it
    },
  });
  md.validateLink = (url) => /^(https?:|mailto:|#)/i.test(url.trim());
  return md;
}

// Math is lifted out before Markdown sees it (so `_` and `*` in TeX stay TeX), and
// never out of code: ```fences``` and `spans` are passed by.
const CODE = /(```[\s\S]*?(?:```|$)|`[^`\n]*`)/g;
const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|\$([^\s$](?:[^$\n]*?[^\s$])?)\$/g;

function liftMath(text) {
  const found = [];
  const lifted = text.split(CODE).map((part, i) => {
    if (i % 2 === 1) return part;
    return part.replace(MATH, (_, d1, d2, i1, i2) => {
      found.push({ tex: d1 ?? d2 ?? i1 ?? i2, display: d1 !== undefined || d2 !== undefined });
      return `MATHSLOT${found.length - 1}X`;
    });
  }).join("");
  return { lifted, found };
}

function dropMath(root, found) {
  if (!found.length) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) if (/MATHSLOT\d+X/.test(walker.currentNode.data)) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const frag = document.createDocumentFragment();
    node.data.split(/(MATHSLOT\d+X)/).forEach((piece) => {
      const m = /^MATHSLOT(\d+)X$/.exec(piece);
      if (!m) { if (piece) frag.append(document.createTextNode(piece)); return; }
      const { tex, display } = found[Number(m[1])];
      const span = document.createElement(display ? "div" : "span");
      try {
        window.katex.render(tex, span, { displayMode: display, throwOnError: false, trust: false });
      } catch { span.textContent = tex; }
      frag.append(span);
    });
    node.replaceWith(frag);
  }
}

function addCopyButtons(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy the code");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        button.textContent = "Copied";
      } catch { button.textContent = "Copy failed"; }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
    pre.append(button);
  }
}

// Render `text` (a model's Markdown) into `el`, replacing what was there.
export function renderMarkdown(el, text) {
  if (!window.markdownit) { el.textContent = text; return; }
  const { lifted, found } = liftMath(text);
  const html = markdown().render(lifted);
  // markdown-it escaped everything it did not produce itself; parse it inertly
  // (a template runs no script and loads nothing) before it joins the page.
  const template = document.createElement("template");
  template.innerHTML = html;
  dropMath(template.content, found);
  addCopyButtons(template.content);
  el.replaceChildren(template.content);
}

// A reasoning model's thinking, in a folded block above the answer (as Open WebUI and
// llama-server's page show it): open while it streams in, folded once the answer
// starts, folded when a stored turn is shown. Plain text: thinking is a draft, and
// markdown that never closes would swallow the rest of it.
export function showThinking(view, text, { thinking = false } = {}) {
  let box = view.querySelector("details.thinking");
  if (!text) { box?.remove(); return; }
  if (!box) {
    box = document.createElement("details");
    box.className = "thinking";
    box.append(document.createElement("summary"), document.createElement("div"));
    box.lastElementChild.className = "thought";
    box.open = thinking;
    view.querySelector(".body").before(box);
  }
  if (box.dataset.thinking === "1" && !thinking) box.open = false; // the answer started
  box.dataset.thinking = thinking ? "1" : "";
  box.firstElementChild.textContent = thinking ? "Thinking…" : "Thought";
  box.lastElementChild.textContent = text;
}
