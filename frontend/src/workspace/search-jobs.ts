// The scene's jobs from the panel: Search, Refine proposals, Update proposals (re-query the cached embeddings with
// the decisions so far), and the job box that follows whichever runs.
import { errorText, getJson, Job, Page, postJson } from "../api";
import { byId } from "../dom";
import { isActive, JobBox } from "../job-box";
import { loadModelStatus, ModelStatus, renderModelNotice, searchBlockedText } from "../model-notice";

const SCENE_JOB_KINDS = new Set(["search", "refine", "embed", "requery", "probe", "predict"]);
/** Jobs whose success changes the proposals on the map. */
const PROPOSING_KINDS = ["search", "refine", "requery", "probe", "predict"];

export interface SearchJobsHost {
  searchClassIds(): number[];
  /** The proposer chosen beside prototype search (a probe, a YOLO version): its job request, or null for search. */
  proposerRequest?(threshold: number, classIds: number[]): { url: string; body: Record<string, unknown>; what: string } | null;
  /** A job that changes the proposals finished well: reload what shows them. */
  proposalsChanged(job: Job): void;
  failed(text: string): void;
  clearError(): void;
}

export class SearchJobs {
  private readonly jobBox: JobBox;
  private models: ModelStatus | null = null;
  private readonly threshold = byId<HTMLInputElement>("search-threshold");
  private readonly thresholdValue = byId<HTMLOutputElement>("search-threshold-value");
  private readonly scale = byId<HTMLSelectElement>("search-scale");
  private readonly searchButton = byId<HTMLButtonElement>("search-button");
  private readonly refineButton = byId<HTMLButtonElement>("refine-button");
  private readonly updateButton = byId<HTMLButtonElement>("update-proposals");
  private readonly modelNotice = byId("models-notice");

  constructor(private readonly sceneId: number, private readonly panel: HTMLElement, canControl: boolean, private readonly host: SearchJobsHost) {
    this.jobBox = new JobBox(byId("job-box")!, {
      canControl,
      onActiveChange: (active) => this.setRunning(active),
      onFinished: (job) => this.finished(job),
    });
    this.threshold?.addEventListener("input", () => {
      if (this.thresholdValue) this.thresholdValue.value = Number(this.threshold!.value).toFixed(2);
    });
    this.searchButton?.addEventListener("click", () => void this.start("search"));
    this.refineButton?.addEventListener("click", () => void this.start("refine"));
    this.updateButton?.addEventListener("click", () => void this.updateProposals());
  }

  async load(): Promise<void> {
    await Promise.all([this.loadLatest(), this.loadModels()]);
  }

  private async loadLatest(): Promise<void> {
    try {
      const page = await getJson<Page<Job>>(`/api/jobs/?scene=${this.sceneId}&page_size=5`);
      const latest = page.results.find((j) => SCENE_JOB_KINDS.has(j.kind));
      if (latest && isActive(latest)) this.jobBox.follow(latest); // a stalled job is running too
    } catch (e) {
      this.host.failed(`Jobs could not be loaded: ${errorText(e)}`);
    }
  }

  /** Warn before Search when the backbone (or SAM2) is not installed, instead of queueing a job that fails. */
  private async loadModels(): Promise<void> {
    if (!this.modelNotice) return; // only those who may run jobs see the search controls
    try {
      this.models = await loadModelStatus();
    } catch {
      return; // not knowing is no reason to block Search: a job without its model fails at once, saying why
    }
    renderModelNotice(this.modelNotice, this.models);
    this.searchButton?.classList.toggle("needs-models", !this.models.search_ready);
  }

  private async start(kind: "search" | "refine"): Promise<void> {
    this.host.clearError();
    const other = kind === "search"
      ? this.host.proposerRequest?.(Number(this.threshold?.value ?? 0.5), this.host.searchClassIds()) : null;
    if (other) return this.startOther(other);
    if (kind === "search" && this.models && !this.models.search_ready) {
      this.host.failed(searchBlockedText(this.models));
      return;
    }
    const body =
      kind === "search"
        ? { classes: this.host.searchClassIds(), default_threshold: Number(this.threshold?.value ?? 0.5), scale: Number(this.scale?.value ?? 1) }
        : {};
    this.setRunning(true);
    try {
      this.jobBox.follow(await postJson<Job>(`/api/scenes/${this.sceneId}/${kind}/`, body));
    } catch (e) {
      this.setRunning(false);
      this.host.failed(`${kind === "search" ? "Search" : "Refinement"} could not start: ${errorText(e)}`);
    }
  }

  /** Start the chosen proposer's job (probe, YOLO) and follow it as a search is followed. */
  private async startOther(request: { url: string; body: Record<string, unknown>; what: string }): Promise<void> {
    this.setRunning(true);
    try {
      this.jobBox.follow(await postJson<Job>(request.url, request.body));
    } catch (e) {
      this.setRunning(false);
      this.host.failed(`${request.what} could not start: ${errorText(e)}`);
    }
  }

  /** Re-rank from the decisions: no backbone, no GPU queue; the queue reorders when it is done (G). */
  async updateProposals(): Promise<void> {
    this.host.clearError();
    if (this.updateButton) this.updateButton.disabled = true;
    try {
      this.jobBox.follow(await postJson<Job>(`/api/scenes/${this.sceneId}/update-proposals/`, {}));
    } catch (e) {
      if (this.updateButton) this.updateButton.disabled = false;
      this.host.failed(`Update proposals could not start: ${errorText(e)}`);
    }
  }

  private setRunning(running: boolean): void {
    if (this.searchButton) this.searchButton.disabled = running;
    if (this.refineButton) this.refineButton.disabled = running;
    if (this.updateButton) this.updateButton.disabled = running;
    this.panel.dataset.jobRunning = running ? "1" : "0";
  }

  private finished(job: Job): void {
    if (job.status === "succeeded" && PROPOSING_KINDS.includes(job.kind)) this.host.proposalsChanged(job);
  }
}
