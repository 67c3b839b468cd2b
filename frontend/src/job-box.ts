// The job box of the scene page: one search / refine / embed / probe / YOLO job with progress, cancel and run again.
import { errorText, FINISHED_JOB_STATUSES, getJson, Job, postJson } from "./api";
import { el } from "./dom";

const KIND_LABELS: Record<string, string> = {
  search: "Visual search",
  refine: "Refine proposals (SAM2)",
  embed: "Scene embedding",
  ingest: "Scene ingest",
  requery: "Update proposals",
  probe: "Probe proposals",
  predict: "YOLO proposals",
};
const POLL_MS = 1000;
/** Update proposals takes about a second: ask often, so the queue reorders as soon as it is done. */
const FAST_POLL_MS = 200;

/** What the box calls a job: a refine of one chosen detection says so. */
function jobLabel(job: Job): string {
  const ids = job.params?.detection_ids;
  if (job.kind === "refine" && Array.isArray(ids) && ids.length === 1) return "Refine one detection (SAM2)";
  if (job.kind === "probe") return `Probe proposals (${job.params?.kind === "knn" ? "kNN" : "logistic"})`;
  if (job.kind === "predict" && typeof job.result?.label === "string") return `YOLO ${job.result.label} proposals`;
  return KIND_LABELS[job.kind] ?? job.kind;
}

export function isActive(job: Job): boolean {
  return !FINISHED_JOB_STATUSES.includes(job.status);
}

export interface JobBoxOptions {
  /** Whether the user may cancel and run jobs again (the RUN_JOBS permission). */
  canControl: boolean;
  /** Called once when a followed job ends, before the box shows its final state. */
  onFinished: (job: Job) => Promise<void> | void;
  /** Called whenever a job starts or stops being active (to disable the start buttons meanwhile). */
  onActiveChange: (active: boolean) => void;
}

export class JobBox {
  private job: Job | null = null;
  private timer: number | null = null;
  private generation = 0;
  private actionError = "";

  constructor(private root: HTMLElement, private options: JobBoxOptions) {}

  get current(): Job | null {
    return this.job;
  }

  /** Show a job and poll it every second until it finishes. */
  follow(job: Job): void {
    this.stop();
    this.generation += 1;
    this.actionError = "";
    this.job = job;
    this.render();
    this.options.onActiveChange(isActive(job));
    if (isActive(job)) this.schedule(this.generation);
    else void this.finish(job, this.generation);
  }

  private stop(): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(generation: number): void {
    this.timer = window.setTimeout(() => void this.poll(generation), this.job?.kind === "requery" ? FAST_POLL_MS : POLL_MS);
  }

  private async poll(generation: number): Promise<void> {
    if (!this.job || generation !== this.generation) return;
    try {
      const job = await getJson<Job>(`/api/jobs/${this.job.id}/`);
      if (generation !== this.generation) return;
      this.job = job;
      if (isActive(job)) {
        this.render();
        this.schedule(generation);
      } else {
        await this.finish(job, generation);
      }
    } catch (e) {
      if (generation !== this.generation) return;
      // A failed poll (server restarting, network blip) is shown and retried; the job keeps running.
      this.actionError = `Could not read the job's progress: ${errorText(e)} Retrying…`;
      this.render();
      this.schedule(generation);
    }
  }

  private async finish(job: Job, generation: number): Promise<void> {
    try {
      await this.options.onFinished(job);
    } finally {
      if (generation === this.generation) {
        this.job = job;
        this.actionError = "";
        this.render();
        this.options.onActiveChange(false);
      }
    }
  }

  private async act(action: "cancel" | "retry"): Promise<void> {
    if (!this.job) return;
    const id = this.job.id;
    try {
      const job = await postJson<Job>(`/api/jobs/${id}/${action}/`, {});
      this.follow(job);
    } catch (e) {
      this.actionError = errorText(e);
      this.render();
    }
  }

  private render(): void {
    const job = this.job;
    this.root.hidden = !job;
    if (!job) return;
    const status = job.stalled ? "stalled" : job.status;
    this.root.dataset.jobId = String(job.id);
    this.root.dataset.status = job.status;
    this.root.dataset.kind = job.kind;
    this.root.dataset.attempts = String(job.attempts ?? 0);
    this.root.className = `job-box job-${status}`;

    const head = el("div", "job-head");
    const title = el("strong", "", jobLabel(job));
    if ((job.attempts ?? 0) > 1) title.append(el("span", "job-attempt", ` · attempt ${job.attempts}`));
    head.append(title, el("span", `badge badge-${status}`, status));

    const bar = el("progress", "job-progress");
    bar.max = 1;
    bar.value = job.status === "succeeded" ? 1 : Math.max(0, Math.min(1, job.progress || 0));
    const pct = el("span", "job-pct", `${Math.round(bar.value * 100)}%`);
    const progress = el("div", "job-progress-row");
    progress.append(bar, pct);

    const parts: HTMLElement[] = [head, progress];
    const message = job.stalled
      ? "The worker stopped reporting; run the job again to finish it."
      : job.message || (job.status === "queued" ? "Waiting for a worker…" : "");
    if (message) parts.push(el("p", "job-message", message));
    if (job.error) parts.push(el("p", "job-error", job.error));
    if (this.actionError) parts.push(el("p", "job-error", this.actionError));

    if (this.options.canControl) {
      const buttons = el("div", "btn-row");
      if (isActive(job)) {
        const cancel = el("button", "btn btn-small", job.cancel_requested ? "Cancelling…" : "Cancel");
        cancel.type = "button";
        cancel.id = "job-cancel";
        cancel.disabled = Boolean(job.cancel_requested);
        cancel.addEventListener("click", () => void this.act("cancel"));
        buttons.append(cancel);
      }
      if (job.status === "failed" || job.status === "cancelled" || job.stalled) {
        const retry = el("button", "btn btn-small", "Run again");
        retry.type = "button";
        retry.id = "job-retry";
        retry.addEventListener("click", () => void this.act("retry"));
        buttons.append(retry);
      }
      if (buttons.childElementCount) parts.push(buttons);
    }
    this.root.replaceChildren(...parts);
  }
}
