// The scene page's proposer choice beside prototype search: a probe (logistic or kNN) on the cached embeddings, or a
// YOLO model version (the current one first). Search's button starts whichever is chosen; the job box follows it.
import { errorText, getJson } from "./api";
import type { components } from "./api-schema";
import { byId, el } from "./dom";
import "./scene-proposers.css";

type ModelList = components["schemas"]["ModelList"];
type ModelVersion = components["schemas"]["ModelVersion"];

/** A proposer job to start instead of the search: where to POST, what, and what to call it in messages. */
export interface ProposerRequest {
  url: string;
  body: Record<string, unknown>;
  what: string;
}

const HINTS: Record<string, string> = {
  search: "Cosine similarity to the examples, over the scene's DINOv2 patch embeddings.",
  probe: "A small classifier learnt in seconds from the project's reviewed objects (accepted, rejected, accuracy " +
    "areas), scoring the scene's cached embeddings. Search the scene once first.",
  yolo: "The trained detector, tiled over the scene at its training resolution; each box is checked against the " +
    "examples' embeddings.",
};

export class ProposerChoice {
  private readonly select = byId<HTMLSelectElement>("proposer-choice");
  private readonly hint = byId("proposer-hint");
  private readonly conf = byId<HTMLInputElement>("yolo-conf");
  private readonly confValue = byId<HTMLOutputElement>("yolo-conf-value");
  private readonly verify = byId<HTMLInputElement>("yolo-verify");
  private readonly button = byId<HTMLButtonElement>("search-button");
  private versions: ModelVersion[] = [];

  constructor(private readonly sceneId: number, private readonly projectId: number,
              private readonly failed: (text: string) => void) {
    this.select?.addEventListener("change", () => this.render());
    this.conf?.addEventListener("input", () => {
      if (this.confValue) this.confValue.value = Number(this.conf!.value).toFixed(2);
    });
  }

  /** Read the project's model versions (everyone: the review card names them); those who run jobs get options. */
  async load(): Promise<void> {
    try {
      this.versions = (await getJson<ModelList>(`/api/projects/${this.projectId}/models/`)).versions;
    } catch (e) {
      if (this.select) this.failed(`The YOLO models could not be listed: ${errorText(e)}`);
      return;
    }
    if (!this.select) return;
    const keep = this.select.value;
    this.select.querySelector("optgroup")?.remove();
    const group = el("optgroup");
    group.label = "YOLO models";
    const ordered = [...this.versions].sort((a, b) => Number(b.is_current) - Number(a.is_current) || b.number - a.number);
    for (const v of ordered) group.append(new Option(`YOLO ${v.label}${v.is_current ? " (current)" : ""}`, `yolo:${v.id}`));
    if (!ordered.length) {
      const none = new Option("YOLO: no model yet (train one on the project page)", "");
      none.disabled = true;
      group.append(none);
    }
    this.select.append(group);
    if ([...this.select.options].some((o) => o.value === keep && !o.disabled)) this.select.value = keep;
    this.render();
  }

  /** "YOLO v2 name" for a detection's model version id (undefined until the list is read). */
  modelLabel(id: number): string | undefined {
    const v = this.versions.find((m) => m.id === id);
    return v ? v.label : undefined;
  }

  private chosen(): { kind: "search" | "probe" | "yolo"; arg: string } {
    const [kind, arg = ""] = (this.select?.value || "search").split(":");
    return { kind: kind === "probe" || kind === "yolo" ? kind : "search", arg };
  }

  /** Show the controls of the chosen proposer and name the button after it. */
  private render(): void {
    const { kind, arg } = this.chosen();
    const show = (id: string, shown: boolean) => {
      const node = byId(id);
      if (node) node.hidden = !shown;
    };
    show("search-threshold-field", kind !== "yolo");
    show("search-scale-field", kind === "search");
    show("yolo-conf-field", kind === "yolo");
    show("yolo-verify-field", kind === "yolo");
    show("search-scope", kind !== "yolo"); // a YOLO model proposes every class it learnt
    if (this.hint) this.hint.textContent = HINTS[kind];
    const version = this.versions.find((v) => String(v.id) === arg);
    if (this.button) {
      this.button.textContent = kind === "search" ? "Search" : kind === "probe" ? "Run probe" : `Run YOLO v${version?.number ?? ""}`;
    }
    this.select?.closest<HTMLElement>("#search-panel")?.setAttribute("data-proposer", kind);
  }

  /** The job to start for the chosen proposer; null for prototype search (the search's own request). */
  request(threshold: number, classIds: number[]): ProposerRequest | null {
    const { kind, arg } = this.chosen();
    if (kind === "probe") {
      return {
        url: `/api/scenes/${this.sceneId}/probe/`,
        body: { kind: arg || "logistic", threshold, classes: classIds },
        what: `The ${arg === "knn" ? "kNN" : "logistic"} probe`,
      };
    }
    if (kind === "yolo") {
      const version = this.versions.find((v) => String(v.id) === arg);
      return {
        url: `/api/scenes/${this.sceneId}/yolo-proposals/`,
        body: { model_version: version ? version.id : null, conf: Number(this.conf?.value ?? 0.25),
                verify: this.verify?.checked ?? true },
        what: `YOLO ${version?.label ?? ""}`.trim(),
      };
    }
    return null;
  }
}
