// The project's scenes: cards with status and thumbnail, drag-and-drop upload with upload and ingest progress.
import { ApiError, getJson, Job, Page, postForm, Scene } from "../api";
import { el } from "../dom";

export class SceneList {
  constructor(
    private readonly projectId: number,
    private readonly grid: HTMLElement,
    private readonly uploads: HTMLElement,
    private readonly onDelete: ((scene: Scene) => void) | null,
  ) {}

  private card(scene: Scene): HTMLElement {
    const card = el("div", `card scene-card status-${scene.status}`);
    card.dataset.sceneId = String(scene.id);
    const link = el("a", "scene-link");
    link.href = `/scenes/${scene.id}/`;
    const thumb = el("div", "thumb");
    if (scene.thumbnail_url) {
      const img = el("img");
      img.src = scene.thumbnail_url;
      img.alt = `Preview of ${scene.name}`;
      img.loading = "lazy";
      thumb.append(img);
    }
    link.append(thumb, el("strong", "", scene.name));
    const meta =
      scene.status === "ready"
        ? `${scene.width} × ${scene.height} px · ${scene.gsd_m?.toFixed(2)} m`
        : scene.status === "failed"
          ? scene.error
          : "Processing…";
    card.append(link, el("span", "badge", scene.status), el("span", scene.status === "failed" ? "error" : "muted", meta));
    if (this.onDelete) {
      const remove = el("button", "btn btn-small danger-outline scene-delete", "Delete…");
      remove.type = "button";
      remove.setAttribute("aria-label", `Delete scene ${scene.name}`);
      remove.addEventListener("click", () => this.onDelete?.(scene));
      card.append(remove);
    }
    return card;
  }

  async load(): Promise<Scene[]> {
    const page = await getJson<Page<Scene>>(`/api/projects/${this.projectId}/scenes/?page_size=200`);
    this.grid.replaceChildren(
      ...(page.results.length ? page.results.map((s) => this.card(s)) : [el("p", "muted", "No scenes yet.")]),
    );
    return page.results;
  }

  /** Reload until no scene is still being ingested (uploaded elsewhere, or by the CLI). */
  async follow(): Promise<void> {
    let scenes = await this.load();
    const busy = (list: Scene[]) => list.some((s) => s.status === "uploaded" || s.status === "processing");
    while (busy(scenes)) {
      await new Promise((r) => setTimeout(r, 3000));
      scenes = await this.load();
    }
  }

  private async followJob(job: Job, bar: HTMLProgressElement, label: HTMLElement): Promise<void> {
    for (;;) {
      const current = await getJson<Job>(`/api/jobs/${job.id}/`);
      bar.value = current.progress;
      label.textContent = current.status === "failed" ? current.error : current.message;
      if (current.status === "failed") label.className = "error";
      if (["succeeded", "failed", "cancelled"].includes(current.status)) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  private async upload(file: File): Promise<void> {
    const row = el("div", "upload-row");
    const bar = el("progress");
    bar.max = 1;
    bar.value = 0;
    const label = el("span", "muted", "Uploading…");
    row.append(el("strong", "", file.name), bar, label);
    this.uploads.prepend(row);
    const form = new FormData();
    form.append("file", file);
    try {
      const url = `/api/projects/${this.projectId}/scenes/upload/`;
      const res = await postForm<{ scene: Scene; job: Job }>(url, form, (f) => {
        bar.value = f;
        label.textContent = `Uploading… ${Math.round(f * 100)}%`;
      });
      bar.value = 0;
      label.textContent = "Queued for ingest";
      await this.load();
      await this.followJob(res.job, bar, label);
    } catch (e) {
      label.className = "error";
      label.textContent = e instanceof ApiError ? e.message : String(e);
    }
    await this.load();
  }

  setupDropzone(zone: HTMLElement | null, input: HTMLInputElement | null): void {
    if (!zone || !input) return;
    const send = (files: FileList | null) => files && Array.from(files).forEach((f) => void this.upload(f));
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
}
