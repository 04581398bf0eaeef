// Images on the page: attached in the composer (the file picker, paste, drag and
// drop), shown there as thumbnails until sent, sent as data URIs, and shown above
// the user's turn once stored (fetched with the tab's key where the server has one).

const $ = (id) => document.getElementById(id);
const TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]);
export const MAX_IMAGES = 16; // the server's default --max-images
const MAX_BYTES = 20e6; // and --max-image-mb: refused here before a slow upload

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function thumb(src, label) {
  const box = document.createElement("div");
  box.className = "thumb";
  const img = document.createElement("img");
  img.alt = label;
  img.src = src;
  box.append(img);
  return box;
}

// What the composer holds until the turn is sent. onError(text) for refused files.
export class Attachments {
  constructor(onError) {
    this.items = []; // {url: data URI, name}
    this.onError = onError;
    const composer = $("composer");
    $("attach").addEventListener("click", () => $("attach-file").click());
    $("attach-file").addEventListener("change", async () => {
      await this.add([...$("attach-file").files]);
      $("attach-file").value = "";
    });
    $("input").addEventListener("paste", (ev) => {
      const files = [...(ev.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
      if (files.length) { ev.preventDefault(); this.add(files); }
    });
    const hasFiles = (ev) => [...(ev.dataTransfer?.types || [])].includes("Files");
    composer.addEventListener("dragover", (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      composer.classList.add("dragging");
    });
    composer.addEventListener("dragleave", () => composer.classList.remove("dragging"));
    composer.addEventListener("drop", (ev) => {
      composer.classList.remove("dragging");
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      this.add([...ev.dataTransfer.files]);
    });
  }

  async add(files) {
    for (const file of files) {
      if (!TYPES.has(file.type)) { this.onError(`${file.name}: not a PNG, JPEG, WebP or GIF image.`); continue; }
      if (file.size > MAX_BYTES) { this.onError(`${file.name}: over 20 MB.`); continue; }
      if (this.items.length >= MAX_IMAGES) { this.onError(`At most ${MAX_IMAGES} images a turn.`); break; }
      this.items.push({ url: await readAsDataURL(file), name: file.name || "pasted image" });
    }
    this.show();
  }

  show() {
    const box = $("attachments");
    box.hidden = this.items.length === 0;
    box.replaceChildren(...this.items.map((item, i) => {
      const t = thumb(item.url, item.name);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "✕";
      remove.setAttribute("aria-label", `Remove ${item.name}`);
      remove.addEventListener("click", () => { this.items.splice(i, 1); this.show(); });
      t.append(remove);
      return t;
    }));
  }

  get count() { return this.items.length; }

  // put back what take() gave (the turn was refused)
  restore(urls) {
    this.items = urls.map((url, i) => ({ url, name: `image ${i + 1}` }));
    this.show();
  }

  // the data URIs to send; the composer is emptied
  take() {
    const urls = this.items.map((i) => i.url);
    this.items = [];
    this.show();
    return urls;
  }
}

// A stored message's images ({sha256, mime, url}, or {url: data URI} while pending).
// The image route is behind the API key, which an <img src> can't carry: fetched
// with it and shown from a blob URL, one per image for the page's life.
const blobs = new Map();

export function messageImages(images, api) {
  const row = document.createElement("div");
  row.className = "thumbs";
  images.forEach((image, i) => {
    const t = thumb("", `image ${i + 1}`);
    const img = t.querySelector("img");
    if (image.url.startsWith("data:")) img.src = image.url;
    else {
      const key = image.sha256 || image.url;
      if (!blobs.has(key)) {
        blobs.set(key, api.fetch(image.url).then(async (res) => {
          if (!res.ok) throw new Error(`${res.status}`);
          return URL.createObjectURL(await res.blob());
        }));
      }
      blobs.get(key).then((src) => { img.src = src; }, () => { blobs.delete(key); t.classList.add("missing"); });
    }
    if (image.width && image.height) img.title = `${image.width}×${image.height}`;
    row.append(t);
  });
  return row;
}
