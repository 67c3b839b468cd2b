// "Detectors": train a YOLO model on the reviewed objects (managers and annotators), follow it epoch by epoch with
// a chart, list the project's model versions, make one current, rename or delete it (managers) and compare checked
// versions side by side.
import { ApiError, errorText, getJson, Job, patchJson, postJson } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";
import { EpochReport, epochCharts } from "./detector-chart";
import { comparison, relabelColumn } from "./detector-compare";
import { epochsText, facts, figure, METRICS, ModelVersion, when } from "./detector-facts";
import { VersionManager } from "./detector-manage";
import { followJob, jobActive, jobRow } from "./job-follow";

type ModelList = components["schemas"]["ModelList"];

export interface DetectorRights {
  /** May start trainings and cancel them (managers and annotators). */
  canTrain: boolean;
  /** May make a version current, rename and delete it (managers). */
  canManage: boolean;
}

/** Number inputs of the training form: field, label, default ("" = the server's), min, max, hint. */
const NUMBERS: [string, string, string, number, number, string][] = [
  ["epochs", "Epochs", "50", 1, 1000, ""],
  ["imgsz", "Image size (px)", "", 32, 2048, "empty: the chips' size"],
  ["batch", "Batch", "16", 1, 256, ""],
  ["patience", "Patience (epochs)", "20", 0, 1000, "stop after this many epochs without gain; 0: never"],
];

/** A labelled control; its hint is its description, not part of its name. */
function labelled(text: string, control: HTMLInputElement | HTMLSelectElement, hint = ""): HTMLElement {
  const field = el("div", "form-field");
  const label = el("label", "", text);
  label.htmlFor = control.id;
  field.append(label, control);
  if (hint) {
    const note = el("small", "muted", hint);
    note.id = `${control.id}-hint`;
    control.setAttribute("aria-describedby", note.id);
    field.append(note);
  }
  return field;
}

function trainingTitle(job: Job): string {
  const p = job.params as Record<string, unknown>;
  const name = typeof p.name === "string" && p.name ? `“${p.name}” · ` : "";
  return `Training ${name}${String(p.base_model ?? "")} · job ${job.id}`;
}

export class DetectorPanel {
  private readonly error = el("p", "error");
  private readonly form: HTMLFormElement | null = null;
  private readonly formError = el("p", "error");
  private readonly trainings = el("div", "detector-trainings");
  private readonly versionsBox = el("div", "detector-versions");
  private readonly compareButton = el("button", "btn", "Compare checked versions");
  private readonly comparisonBox = el("div", "detector-comparison");
  private readonly compareRow = el("div", "inline-form detector-compare-row");
  private list: ModelList | null = null;
  private readonly followed = new Set<number>();
  private readonly live = new Map<number, Job>();
  private readonly checked = new Set<number>();
  private readonly versionsStatus = el("p", "small detector-versions-status");
  private readonly manager: VersionManager | null = null;

  constructor(private readonly projectId: number, section: HTMLElement, private readonly rights: DetectorRights,
              private readonly versionsChanged: (versions: ModelVersion[]) => void = () => undefined) {
    for (const [box, id] of [[this.error, "detectors-error"], [this.formError, "train-error"]] as const) {
      box.id = id;
      box.setAttribute("role", "alert");
      box.hidden = true;
    }
    const title = el("h2", "", "Detectors");
    title.id = "detectors-title";
    section.append(title, el("p", "muted small",
      "A YOLO detector trained on the reviewed objects proposes on scenes (scene page, Proposer) beside the visual " +
      "search; each training becomes a version with its metrics. The current version is the one scenes use unless " +
      "another is chosen."), this.error);
    if (rights.canTrain) {
      this.form = this.buildForm();
      section.append(this.form);
    }
    this.trainings.id = "detector-trainings";
    this.trainings.setAttribute("aria-live", "polite");
    this.versionsBox.id = "detector-versions";
    this.versionsStatus.id = "detector-versions-status";
    this.versionsStatus.setAttribute("role", "status");
    this.versionsStatus.tabIndex = -1; // where the focus goes once a deleted row has gone
    this.versionsStatus.hidden = true;
    if (rights.canManage) {
      this.manager = new VersionManager({
        renamed: (v) => this.renamed(v),
        deleted: (v) => this.deleted(v),
        redraw: (id, focus) => this.redrawVersion(id, focus),
      });
    }
    this.compareButton.type = "button";
    this.compareButton.id = "detector-compare";
    this.compareButton.disabled = true;
    this.compareButton.addEventListener("click", () => void this.compare());
    this.comparisonBox.id = "detector-comparison";
    this.comparisonBox.setAttribute("aria-live", "polite");
    const compareRow = this.compareRow;
    compareRow.append(this.compareButton, el("span", "muted small", "Tick two or more versions to compare them."));
    section.append(el("h3", "", "Trainings"), this.trainings, el("h3", "", "Versions"), this.versionsStatus,
                   this.versionsBox, compareRow, this.comparisonBox);
  }

  private say(box: HTMLElement, text: string): void {
    box.textContent = text;
    box.hidden = !text;
  }

  private buildForm(): HTMLFormElement {
    const form = el("form", "manage-form detector-train-form");
    form.id = "detector-train";
    form.setAttribute("aria-labelledby", "detector-train-title");
    const heading = el("h3", "", "Train a model");
    heading.id = "detector-train-title";
    const dataset = el("select");
    dataset.id = "train-dataset";
    dataset.name = "definition_id";
    dataset.append(new Option("All accepted objects", ""));
    const base = el("select");
    base.id = "train-base-model";
    base.name = "base_model";
    const name = el("input");
    name.id = "train-name";
    name.name = "name";
    name.maxLength = 200;
    name.autocomplete = "off";
    name.placeholder = "optional, e.g. kilns spring";
    const what = el("div", "detector-train-grid detector-train-what");
    what.append(labelled("Dataset", dataset, "a saved export trains on its scenes, classes and chips"),
                labelled("Base model", base, "an architecture (untrained) or a local checkpoint"),
                labelled("Model name", name));
    const grid = el("div", "detector-train-grid detector-train-how");
    for (const [field, text, value, min, max, hint] of NUMBERS) {
      const input = el("input");
      input.type = "number";
      input.id = `train-${field}`;
      input.name = field;
      input.min = String(min);
      input.max = String(max);
      input.step = "1";
      input.value = value;
      if (field === "imgsz") input.placeholder = "chip size";
      grid.append(labelled(text, input, hint));
    }
    const go = el("button", "btn primary", "Train");
    go.type = "submit";
    go.id = "train-submit";
    const buttons = el("div", "btn-row detector-train-buttons");
    buttons.append(go);
    form.append(heading, what, grid, this.formError, buttons);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.train();
    });
    return form;
  }

  /** The choices the server offers: datasets (saved exports) and base models; what the user chose is kept. */
  private fillChoices(list: ModelList): void {
    if (!this.form) return;
    const dataset = this.form.querySelector<HTMLSelectElement>("#train-dataset")!;
    const keepDataset = dataset.value;
    dataset.replaceChildren(new Option("All accepted objects", ""),
                            ...list.definitions.map((d) => new Option(`Saved export: ${d.name} (${d.format})`,
                                                                      String(d.id))));
    dataset.value = [...dataset.options].some((o) => o.value === keepDataset) ? keepDataset : "";
    const base = this.form.querySelector<HTMLSelectElement>("#train-base-model")!;
    const keepBase = base.value || list.base_models[0];
    base.replaceChildren(...list.base_models.map((m) => new Option(m, m)));
    if (list.base_models.includes(keepBase)) base.value = keepBase;
  }

  private body(): Record<string, unknown> {
    const f = this.form!;
    const value = (name: string) =>
      f.querySelector<HTMLInputElement | HTMLSelectElement>(`[name=${name}]`)!.value.trim();
    const body: Record<string, unknown> = {
      definition_id: value("definition_id") ? Number(value("definition_id")) : null,
      name: value("name"),
      base_model: value("base_model"),
      imgsz: value("imgsz") ? Number(value("imgsz")) : null,
    };
    // An emptied box leaves the server's default.
    for (const field of ["epochs", "batch", "patience"]) if (value(field) !== "") body[field] = Number(value(field));
    return body;
  }

  private async train(): Promise<void> {
    const form = this.form!;
    if (!form.reportValidity()) return;
    const go = form.querySelector<HTMLButtonElement>("#train-submit")!;
    go.disabled = true;
    go.textContent = "Starting…";
    this.say(this.formError, "");
    try {
      const job = await postJson<Job>(`/api/projects/${this.projectId}/models/`, this.body());
      this.live.set(job.id, job);
      this.follow(job);
      if (!jobActive(job)) await this.load(); // a worker that ran it at once: its version is there now
      this.trainings.querySelector<HTMLElement>(`[data-job-id="${job.id}"]`)?.focus();
    } catch (e) {
      this.say(this.formError, `Training could not start: ${errorText(e)}`);
    } finally {
      go.disabled = false;
      go.textContent = "Train";
    }
  }

  /** Read the versions and the recent trainings; follow those still running. */
  async load(): Promise<void> {
    try {
      this.list = await getJson<ModelList>(`/api/projects/${this.projectId}/models/`);
      this.say(this.error, "");
    } catch (e) {
      return this.say(this.error, `Could not read the detectors: ${errorText(e)}`);
    }
    this.fillChoices(this.list);
    for (const j of this.list.trainings) if (this.live.has(j.id) || jobActive(j)) this.live.set(j.id, j);
    this.renderTrainings();
    this.renderVersions();
    this.list.trainings.filter(jobActive).forEach((j) => this.follow(j));
    this.versionsChanged(this.list.versions);
  }

  /** The running trainings and the newest one, each with its epoch chart. */
  private renderTrainings(): void {
    const recent = this.list?.trainings ?? [];
    const shown = new Map<number, Job>();
    for (const j of recent.filter(jobActive)) shown.set(j.id, this.live.get(j.id) ?? j);
    if (recent[0] && !shown.has(recent[0].id)) shown.set(recent[0].id, this.live.get(recent[0].id) ?? recent[0]);
    for (const [id, j] of this.live) if (jobActive(j)) shown.set(id, j);
    const rows = [...shown.values()].sort((a, b) => b.id - a.id).map((j) => this.trainingRow(j));
    this.trainings.replaceChildren(...(rows.length ? rows : [el("p", "muted small", "No training yet.")]));
  }

  private trainingRow(job: Job, pollError = ""): HTMLElement {
    const title = trainingTitle(job);
    const row = jobRow(job, title, pollError);
    row.classList.add("training-job");
    row.tabIndex = -1;
    if (!this.rights.canTrain) row.querySelector(".job-actions")?.remove(); // cancelling is for who may train
    const result = job.result as Record<string, unknown>;
    const history = Array.isArray(result.history) ? (result.history as EpochReport[]) : [];
    const epochs = Number(result.epochs ?? (job.params as Record<string, unknown>).epochs ?? history.length) || 1;
    if (history.length || jobActive(job)) {
      const charts = epochCharts(history, epochs, title);
      const actions = row.querySelector(".job-actions");
      if (actions) actions.before(charts); // the chart beside the figures it draws, Cancel last
      else row.append(charts);
    }
    if (typeof result.label === "string" && typeof result.model_version === "number") {
      const metrics = (result.metrics ?? {}) as Record<string, unknown>;
      const made = el("p", "small training-made", `Made ${result.label}: mAP50 ${figure(metrics.map50)}, ` +
        `mAP50-95 ${figure(metrics.map50_95)}.`);
      made.dataset.modelVersion = String(result.model_version);
      row.append(made);
    }
    return row;
  }

  /** Poll a running training, redrawing its row and chart; when it ends the versions are read again. */
  private follow(job: Job): void {
    if (this.followed.has(job.id)) return;
    if (!jobActive(job)) {
      this.renderTrainings();
      return;
    }
    this.followed.add(job.id);
    void followJob(job, (j, pollError) => {
      this.live.set(j.id, j);
      const old = this.trainings.querySelector(`[data-job-id="${j.id}"]`);
      const fresh = this.trainingRow(j, pollError);
      if (old) old.replaceWith(fresh);
      else {
        this.trainings.querySelector(":scope > p.muted")?.remove();
        this.trainings.prepend(fresh);
      }
    }).then(() => {
      this.followed.delete(job.id);
      void this.load();
    });
  }

  private renderVersions(): void {
    const versions = this.list?.versions ?? [];
    for (const id of [...this.checked]) if (!versions.some((v) => v.id === id)) this.checked.delete(id);
    this.manager?.keepOnly(versions.map((v) => v.id));
    const focused = this.focusKey();
    this.updateCompareButton();
    this.compareRow.hidden = versions.length < 2;
    if (!versions.length) {
      this.versionsBox.replaceChildren(el("p", "muted small", this.rights.canTrain
        ? "No model yet: train one above on the accepted objects."
        : "No model yet: a manager or annotator trains one here."));
      return;
    }
    const table = el("table", "data-table detector-table");
    table.id = "detector-versions-table";
    const head = el("tr");
    for (const h of this.columns()) {
      const th = el("th", "", h);
      th.scope = "col";
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    table.append(thead, body);
    for (const v of versions) body.append(...this.versionRows(v));
    const wrap = el("div", "table-scroll");
    wrap.append(table);
    this.versionsBox.replaceChildren(wrap);
    this.focus(focused);
  }

  private columns(): string[] {
    const columns = ["Compare", "Version", "Created", "Dataset", "Epochs", ...METRICS.map(([, t]) => t), "Current"];
    return this.manager ? [...columns, "Manage"] : columns;
  }

  /** The data-focus key of the focused control in the versions table, to focus its successor after a redraw. */
  private focusKey(): string {
    const active = document.activeElement;
    return active instanceof HTMLElement && this.versionsBox.contains(active) ? active.dataset.focus ?? "" : "";
  }

  private focus(key: string): void {
    if (key) this.versionsBox.querySelector<HTMLElement>(`[data-focus="${key}"]`)?.focus();
  }

  /** A version's row and, while its deletion is being confirmed, the confirmation under it. */
  private versionRows(v: ModelVersion): HTMLElement[] {
    const confirm = this.manager?.confirmRow(v, this.columns().length);
    return confirm ? [this.versionRow(v), confirm] : [this.versionRow(v)];
  }

  /** Draw one version's rows again (its rename form or confirmation opened or closed) and focus `focus`. */
  private redrawVersion(id: number, focus: string): void {
    const v = this.list?.versions.find((x) => x.id === id);
    const row = this.versionsBox.querySelector(`tr[data-version-id="${id}"]`);
    if (!v || !row) return;
    const keep = focus || this.focusKey();
    this.versionsBox.querySelector(`tr[data-confirm-for="${id}"]`)?.remove();
    row.replaceWith(...this.versionRows(v));
    this.focus(keep);
  }

  private renamed(v: ModelVersion): void {
    if (!this.list) return;
    const before = this.list.versions.find((x) => x.id === v.id)?.label ?? `v${v.number}`;
    this.list.versions = this.list.versions.map((x) => (x.id === v.id ? v : x));
    this.say(this.versionsStatus,
             before === v.label ? `${v.label} kept its name.` : `Renamed ${before} to ${v.label}.`);
    relabelColumn(this.comparisonBox, v);
    this.versionsChanged(this.list.versions);
  }

  private deleted(v: ModelVersion): void {
    if (!this.list) return;
    this.list.versions = this.list.versions.filter((x) => x.id !== v.id);
    if (this.comparisonBox.querySelector(`th[data-version-id="${v.id}"]`)) this.comparisonBox.replaceChildren();
    this.renderVersions();
    this.say(this.versionsStatus, `Deleted ${v.label} and its unreviewed proposals.`);
    this.versionsStatus.focus();
    this.versionsChanged(this.list.versions);
  }

  private versionRow(v: ModelVersion): HTMLElement {
    const f = facts(v);
    const tr = el("tr", v.is_current ? "is-current" : "");
    tr.dataset.versionId = String(v.id);
    tr.dataset.label = v.label;
    const td = (content: string | HTMLElement, cls = "") => {
      const cell = el("td", cls);
      cell.append(content);
      tr.append(cell);
      return cell;
    };
    const tick = el("input");
    tick.type = "checkbox";
    tick.className = "detector-compare-tick";
    tick.checked = this.checked.has(v.id);
    tick.setAttribute("aria-label", `Compare ${v.label}`);
    tick.dataset.focus = `compare-${v.id}`;
    tick.addEventListener("change", () => {
      if (tick.checked) this.checked.add(v.id);
      else this.checked.delete(v.id);
      this.updateCompareButton();
    });
    td(tick);
    td(this.manager ? this.manager.label(v) : el("strong", "detector-label", v.label), "detector-version-cell");
    td(`${v.created_by ?? "–"}, ${when(v.created_at)}`, "small");
    const dataset = td(`${f.objects ?? "?"} objects`);
    dataset.title = f.datasetName;
    td(epochsText(v), "small");
    for (const [key] of METRICS) td(figure(f.metrics[key]), "num");
    const current = td("");
    if (v.is_current) {
      const badge = el("span", "badge badge-current", "current");
      badge.tabIndex = -1; // where the focus goes once "Make current" has done its work
      current.append(badge);
    } else if (this.rights.canManage) {
      const make = el("button", "btn btn-small detector-make-current", "Make current");
      make.type = "button";
      make.setAttribute("aria-label", `Make ${v.label} current`);
      make.dataset.focus = `make-current-${v.id}`;
      make.addEventListener("click", () => void this.makeCurrent(v, make));
      current.append(make);
    }
    if (this.manager) td(this.manager.buttons(v));
    return tr;
  }

  private updateCompareButton(): void {
    this.compareButton.disabled = this.checked.size < 2;
    this.compareButton.textContent = this.checked.size >= 2
      ? `Compare ${this.checked.size} versions`
      : "Compare checked versions";
  }

  private async makeCurrent(v: ModelVersion, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await patchJson<ModelVersion>(`/api/model-versions/${v.id}/`, { is_current: true });
      this.say(this.error, "");
      await this.load();
      this.versionsBox.querySelector<HTMLElement>(`tr[data-version-id="${v.id}"] .badge-current`)?.focus();
    } catch (e) {
      this.say(this.error, e instanceof ApiError && e.code !== "invalid" ? e.message : errorText(e));
      button.disabled = false;
    }
  }

  private async compare(): Promise<void> {
    const versions = (this.list?.versions ?? []).filter((v) => this.checked.has(v.id))
      .sort((a, b) => a.number - b.number);
    if (versions.length < 2) return;
    this.compareButton.disabled = true;
    this.comparisonBox.replaceChildren(el("p", "muted small", "Measuring the versions in the accuracy areas…"));
    try {
      this.comparisonBox.replaceChildren(await comparison(this.projectId, versions));
      this.comparisonBox.querySelector<HTMLElement>("table")?.focus();
    } catch (e) {
      this.comparisonBox.replaceChildren();
      this.say(this.error, `Could not compare: ${errorText(e)}`);
    } finally {
      this.updateCompareButton();
    }
  }
}
