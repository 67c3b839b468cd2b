// Follow one job (import or export) on the project page: poll it until it ends, and draw its progress row.
import { errorText, FINISHED_JOB_STATUSES, getJson, Job, postJson } from "../api";
import { el } from "../dom";

const POLL_MS = 700;

export function jobActive(job: Job): boolean {
  return !FINISHED_JOB_STATUSES.includes(job.status);
}

/** Poll `job` until it ends, calling `onUpdate` with each state (a failed poll is reported and retried). */
export async function followJob(job: Job, onUpdate: (job: Job, pollError: string) => void): Promise<Job> {
  onUpdate(job, "");
  let current = job;
  while (jobActive(current)) {
    await new Promise((r) => window.setTimeout(r, POLL_MS));
    try {
      current = await getJson<Job>(`/api/jobs/${current.id}/`);
      onUpdate(current, "");
    } catch (e) {
      onUpdate(current, `Could not read the job's progress: ${errorText(e)} Retrying…`);
    }
  }
  return current;
}

/** A job's status badge, progress bar, message and error, with a Cancel button while it runs. */
export function jobRow(job: Job, title: string, pollError = ""): HTMLElement {
  const status = job.stalled ? "stalled" : job.status;
  const box = el("div", `job-box job-${status}`);
  box.dataset.jobId = String(job.id);
  box.dataset.status = job.status;
  const head = el("div", "job-head");
  head.append(el("strong", "", title), el("span", `badge badge-${status}`, status));
  const bar = el("progress", "job-progress");
  bar.max = 1;
  bar.value = job.status === "succeeded" ? 1 : Math.max(0, Math.min(1, job.progress || 0));
  bar.setAttribute("aria-label", `Progress of ${title}`);
  const row = el("div", "job-progress-row");
  row.append(bar, el("span", "job-pct", `${Math.round(bar.value * 100)}%`));
  box.append(head, row);
  const message = job.stalled
    ? "The worker stopped reporting; run it again."
    : job.message || (job.status === "queued" ? "Waiting for a worker…" : "");
  if (message) box.append(el("p", "job-message", message));
  if (job.error) box.append(el("p", "job-error error", job.error));
  if (pollError) box.append(el("p", "job-error error", pollError));
  if (jobActive(job)) {
    const cancel = el("button", "btn btn-small job-cancel", job.cancel_requested ? "Cancelling…" : "Cancel");
    cancel.type = "button";
    cancel.disabled = job.cancel_requested;
    cancel.setAttribute("aria-label", `Cancel ${title}`);
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      postJson<Job>(`/api/jobs/${job.id}/cancel/`, {}).catch((e) => {
        box.append(el("p", "job-error error", errorText(e)));
        cancel.disabled = false;
      });
    });
    const buttons = el("div", "btn-row job-actions");
    buttons.append(cancel);
    box.append(buttons);
  }
  return box;
}
