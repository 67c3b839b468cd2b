// Model availability on the scene page: say before Search that the models are not installed, and how to install them.
import { getJson } from "./api";
import { el } from "./dom";
import "./model-notice.css";

/** One configured model as GET /api/models/ describes it. */
export interface ModelState {
  setting: string;
  model: string;
  needed_for: string;
  installed: boolean;
  fetchable: boolean;
  hint: string;
}

/** GET /api/models/: which jobs can run on this server. */
export interface ModelStatus {
  ready: boolean;
  search_ready: boolean;
  refine_ready: boolean;
  backbone: ModelState;
  sam2: ModelState;
  message: string;
  fetch_command: string;
}

export async function loadModelStatus(): Promise<ModelStatus> {
  return getJson<ModelStatus>("/api/models/");
}

/** Fill the notice box (hidden when every model is installed) with what is missing and the install command. */
export function renderModelNotice(box: HTMLElement, status: ModelStatus): void {
  const missing = [status.backbone, status.sam2].filter((m) => !m.installed);
  box.hidden = missing.length === 0;
  box.dataset.searchReady = status.search_ready ? "1" : "0";
  box.dataset.refineReady = status.refine_ready ? "1" : "0";
  if (!missing.length) {
    box.replaceChildren();
    return;
  }
  const items = missing.map((m) => {
    const li = el("li");
    li.append(el("strong", "", m.needed_for === "search" ? "Search" : "Refinement"), ` needs ${m.model} (${m.setting}).`);
    return li;
  });
  const paragraphs: HTMLElement[] = [];
  if (missing.some((m) => m.fetchable)) {
    const install = el("p");
    install.append(
      `An administrator installs ${missing.length > 1 ? "them" : "it"} with `,
      el("code", "model-command", status.fetch_command),
      " on a machine with internet (then copies MODEL_DIR here if that was another machine).",
    );
    paragraphs.push(install);
  }
  for (const m of missing.filter((m) => !m.fetchable)) paragraphs.push(el("p", "", m.hint));
  const list = el("ul");
  list.append(...items);
  box.replaceChildren(el("p", "model-notice-title", "Models are not installed on this server"), list, ...paragraphs);
}

/** Why Search cannot run now (for the error box when the button is pressed anyway). */
export function searchBlockedText(status: ModelStatus): string {
  const m = status.backbone;
  const how = m.fetchable
    ? `an administrator installs it with "${status.fetch_command}" on a machine with internet (see the note under Search this scene).`
    : m.hint;
  return `Search needs the ${m.model} model, which is not installed on this server: ${how}`;
}
