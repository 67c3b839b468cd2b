// Project page: list scenes with status and thumbnail; drag-and-drop upload with upload and ingest progress.
import "./style.css";
import { ApiError, getJson, Job, Page, postForm, Scene } from "./api";

const root = document.getElementById("project-page") as HTMLElement;
const projectId = Number(root.dataset.projectId);
const scenesEl = document.getElementById("scenes") as HTMLElement;
const uploadsEl = document.getElementById("uploads") as HTMLElement;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls = "", text = ""): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text) node.textContent = text;
  return node;
}

function sceneCard(scene: Scene): HTMLElement {
  const card = el("a", `card scene-card status-${scene.status}`);
  card.href = `/scenes/${scene.id}/`;
  card.dataset.sceneId = String(scene.id);
  const thumb = el("div", "thumb");
  if (scene.thumbnail_url) {
    const img = el("img");
    img.src = scene.thumbnail_url;
    img.alt = `Preview of ${scene.name}`;
    img.loading = "lazy";
    thumb.append(img);
  }
  card.append(thumb, el("strong", "", scene.name));
  const meta =
    scene.status === "ready"
      ? `${scene.width} × ${scene.height} px · ${scene.gsd_m?.toFixed(2)} m`
      : scene.status === "failed"
        ? scene.error
        : "Processing…";
  card.append(el("span", "badge", scene.status), el("span", scene.status === "failed" ? "error" : "muted", meta));
  return card;
}

async function loadScenes(): Promise<Scene[]> {
  const page = await getJson<Page<Scene>>(`/api/projects/${projectId}/scenes/?page_size=200`);
  scenesEl.replaceChildren(...(page.results.length ? page.results.map(sceneCard) : [el("p", "muted", "No scenes yet.")]));
  return page.results;
}

async function followJob(job: Job, bar: HTMLProgressElement, label: HTMLElement): Promise<void> {
  for (;;) {
    const current = await getJson<Job>(`/api/jobs/${job.id}/`);
    bar.value = current.progress;
    label.textContent = current.status === "failed" ? current.error : current.message;
    if (current.status === "failed") label.className = "error";
    if (["succeeded", "failed", "cancelled"].includes(current.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function upload(file: File): Promise<void> {
  const row = el("div", "upload-row");
  const name = el("strong", "", file.name);
  const bar = el("progress");
  bar.max = 1;
  bar.value = 0;
  const label = el("span", "muted", "Uploading…");
  row.append(name, bar, label);
  uploadsEl.prepend(row);
  const form = new FormData();
  form.append("file", file);
  try {
    const res = await postForm<{ scene: Scene; job: Job }>(`/api/projects/${projectId}/scenes/upload/`, form, (f) => {
      bar.value = f;
      label.textContent = `Uploading… ${Math.round(f * 100)}%`;
    });
    bar.value = 0;
    label.textContent = "Queued for ingest";
    await loadScenes();
    await followJob(res.job, bar, label);
  } catch (e) {
    label.className = "error";
    label.textContent = e instanceof ApiError ? e.message : String(e);
  }
  await loadScenes();
}

function setupDropzone(): void {
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input") as HTMLInputElement | null;
  if (!zone || !input) return;
  const send = (files: FileList | null) => files && Array.from(files).forEach((f) => void upload(f));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    send(e.dataTransfer?.files ?? null);
  });
  input.addEventListener("change", () => send(input.files));
}

setupDropzone();
loadScenes().then(async (scenes) => {
  // Scenes still processing (uploaded elsewhere, or by the CLI) refresh until they settle.
  let pending = scenes.some((s) => s.status === "uploaded" || s.status === "processing");
  while (pending) {
    await new Promise((r) => setTimeout(r, 3000));
    pending = (await loadScenes()).some((s) => s.status === "uploaded" || s.status === "processing");
  }
});
