// "Export dataset": a dialog that chooses what to export and how, saved definitions to run again, recent exports.
import { deleteJson, errorText, getJson, Job, ObjectClass, Page, postJson, Scene } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";
import { followJob, jobActive, jobRow } from "./job-follow";

type Schemas = components["schemas"];
type Definition = Schemas["ExportDefinition"];
type ExportList = Schemas["ExportList"];
type ExportFormat = Schemas["ExportFormat"];
type ExportStarted = Schemas["ExportStarted"];

// The typecheck holds these to the API's choices; the formats themselves come from the server's list.
const STATUSES: Schemas["StatusesEnum"][] = ["accepted", "proposed", "rejected"];
const SOURCES: Schemas["SourcesEnum"][] = ["search", "refine", "yolo", "manual", "import"];
const DEFAULT_FORMAT = "geojson";

/** Chip option inputs: field, label, default, step, min, max. */
const CHIP_INPUTS: [string, string, number | null, number, number, number][] = [
  ["chip_size", "Chip size (px)", 640, 1, 32, 4096],
  ["overlap", "Overlap (0–0.9)", 0.2, 0.01, 0, 0.9],
  ["min_visible", "Min visible share of a cut object", 0.3, 0.01, 0, 1],
  ["negatives", "Empty chips (share of chips with objects)", 0.1, 0.01, 0, 10],
  ["val_fraction", "Validation fraction", 0.2, 0.01, 0, 0.9],
  ["test_fraction", "Test fraction", 0, 0.01, 0, 0.9],
  ["gsd_m", "Ground resolution (m/px; empty: each scene's own)", null, 0.01, 0.01, 1000],
];

function checkbox(name: string, value: string, text: string, checked = false): HTMLLabelElement {
  const input = el("input");
  input.type = "checkbox";
  input.name = name;
  input.value = value;
  input.checked = checked;
  const label = el("label", "check");
  label.append(input, ` ${text}`);
  return label;
}

function fieldset(legend: string, cls: string, hint = ""): HTMLFieldSetElement {
  const set = el("fieldset", cls);
  set.append(el("legend", "", legend));
  if (hint) set.append(el("p", "muted small", hint));
  return set;
}

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = el("label", "form-field");
  label.append(el("span", "", text), control);
  return label;
}

function num(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** A few lines from an export's manifest: objects selected and written, labels per class, chips per split. */
export function manifestSummary(manifest: Record<string, unknown>): HTMLElement {
  const box = el("div", "export-manifest small");
  const counts = (manifest.counts ?? manifest) as Record<string, unknown>;
  const selected = num(counts.objects_selected);
  const written = num(counts.objects_written);
  if (selected !== null) {
    const p = el("p", "export-objects", `Objects selected ${selected}, written ${written ?? "?"}`
      + (num(counts.labels_written) !== null ? `, labels ${counts.labels_written}` : ""));
    p.dataset.selected = String(selected);
    p.dataset.written = String(written);
    box.append(p);
  }
  const perClass = counts.per_class as Record<string, unknown> | undefined;
  if (perClass && typeof perClass === "object" && Object.keys(perClass).length) {
    const parts = Object.entries(perClass).map(([name, v]) => {
      if (typeof v === "number") return `${name} ${v}`;
      const splits = Object.entries((v ?? {}) as Record<string, number>).map(([s, c]) => `${s} ${c}`).join(", ");
      return `${name} (${splits})`;
    });
    box.append(el("p", "export-per-class", `Per class: ${parts.join("; ")}`));
  }
  const chips = counts.chips as Record<string, number> | undefined;
  if (chips && typeof chips === "object" && Object.keys(chips).length) {
    const negatives = (counts.negatives ?? {}) as Record<string, number>;
    const parts = Object.entries(chips).map(([s, c]) => `${s} ${c}` + (negatives[s] ? ` (${negatives[s]} empty)` : ""));
    box.append(el("p", "export-chips", `Chips: ${parts.join(", ")}`));
  }
  return box;
}

export class ExportPanel {
  private readonly dialog: HTMLDialogElement;
  private readonly form: HTMLFormElement;
  private readonly error: HTMLElement;
  private readonly definitionList: HTMLElement;
  private readonly exportList: HTMLElement;
  private readonly listError: HTMLElement;
  private followed = new Set<number>();
  private formats: ExportFormat[] = [];
  private showOptions: () => void = () => undefined;
  private scenesBox!: HTMLFieldSetElement;
  private classesBox!: HTMLFieldSetElement;

  constructor(private readonly projectId: number, section: HTMLElement) {
    const heading = el("h2", "", "Export dataset");
    heading.id = "exports-title";
    section.append(heading);
    section.append(el("p", "muted small",
      "Training sets (YOLO, COCO) cut into chips from the scenes, or map layers (GeoJSON, GeoPackage), downloaded as a zip with a manifest."));
    const open = el("button", "btn", "Export dataset…");
    open.type = "button";
    open.id = "export-open";
    open.addEventListener("click", () => void this.open());
    this.listError = el("p", "error");
    this.listError.setAttribute("role", "alert");
    this.listError.hidden = true;
    this.definitionList = el("ul", "manage-list export-definitions");
    this.definitionList.id = "export-definitions";
    this.exportList = el("div", "export-jobs");
    this.exportList.id = "export-jobs";
    this.exportList.setAttribute("aria-live", "polite");
    section.append(open, this.listError, el("h3", "", "Saved exports"), this.definitionList,
                   el("h3", "", "Recent exports"), this.exportList);

    this.dialog = el("dialog", "data-dialog");
    this.dialog.id = "export-dialog";
    this.dialog.setAttribute("aria-labelledby", "export-title");
    const title = el("h2", "", "Export dataset");
    title.id = "export-title";
    this.form = el("form", "manage-form export-form");
    this.error = el("p", "error");
    this.error.id = "export-error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.dialog.append(title, this.form);
    section.append(this.dialog);
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
    this.build();
  }

  private isChipFormat(key: string): boolean {
    return this.formats.some((f) => f.key === key && f.chips);
  }

  private formatName(key: string): string {
    return this.formats.find((f) => f.key === key)?.label ?? key;
  }

  /** The format choices, from the server's list (once; the dialog keeps the user's choice after that). */
  private setFormats(formats: ExportFormat[]): void {
    if (this.formats.length) return;
    this.formats = formats;
    const select = this.form.querySelector<HTMLSelectElement>("#export-format")!;
    select.replaceChildren(...formats.map((f) => {
      const o = el("option", "", f.label);
      o.value = f.key;
      o.selected = f.key === DEFAULT_FORMAT;
      return o;
    }));
    this.showOptions();
  }

  private say(target: HTMLElement, text: string): void {
    target.textContent = text;
    target.hidden = !text;
  }

  private build(): void {
    const format = el("select");
    format.id = "export-format";
    format.name = "format";
    this.scenesBox = fieldset("Scenes", "export-scenes", "None ticked: every ready scene.");
    this.classesBox = fieldset("Classes", "export-classes", "None ticked: every class.");
    const statuses = fieldset("Statuses", "export-statuses");
    statuses.append(...STATUSES.map((s) => checkbox("statuses", s, s, s === "accepted")));
    const sources = fieldset("Sources", "export-sources", "None ticked: every source.");
    sources.append(...SOURCES.map((s) => checkbox("sources", s, s)));
    sources.append(checkbox("include_examples", "1", "also the example polygons"));

    const chips = fieldset("Chips", "export-chip-options");
    chips.id = "export-chip-options";
    for (const [name, text, value, step, min, max] of CHIP_INPUTS) {
      const input = el("input");
      input.type = "number";
      input.name = name;
      input.id = `export-${name.replace(/_/g, "-")}`;
      input.step = String(step);
      input.min = String(min);
      input.max = String(max);
      input.value = value === null ? "" : String(value);
      chips.append(labelled(text, input));
    }
    const layout = el("select");
    layout.name = "gpkg_layout";
    layout.id = "export-gpkg-layout";
    for (const [value, text] of [["per_scene", "One layer per scene"], ["single", "One layer with a scene column"]]) {
      const o = el("option", "", text);
      o.value = value;
      layout.append(o);
    }
    const layoutField = labelled("GeoPackage layout", layout);
    layoutField.id = "export-gpkg-field";
    const name = el("input");
    name.name = "name";
    name.id = "export-name";
    name.maxLength = 200;
    name.autocomplete = "off";
    const save = checkbox("save", "1", "Save this export (to run it again)");
    save.id = "export-save-field";
    this.showOptions = () => {
      chips.hidden = !this.isChipFormat(format.value);
      layoutField.hidden = format.value !== "gpkg";
    };
    format.addEventListener("change", this.showOptions);
    this.showOptions();
    const buttons = el("div", "btn-row");
    const cancel = el("button", "btn", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => this.dialog.close());
    const go = el("button", "btn primary", "Export");
    go.type = "submit";
    go.id = "export-submit";
    buttons.append(cancel, go);
    this.form.append(labelled("Format", format), this.scenesBox, this.classesBox, statuses, sources, chips, layoutField,
                     labelled("Export name", name), save, this.error, buttons);
  }

  private async open(): Promise<void> {
    this.say(this.error, "");
    // A new export starts unnamed and unsaved: a name kept from the last one would overwrite that saved export.
    this.form.querySelector<HTMLInputElement>("#export-name")!.value = "";
    this.form.querySelector<HTMLInputElement>("input[name=save]")!.checked = false;
    this.dialog.showModal();
    this.form.querySelector<HTMLSelectElement>("#export-format")!.focus();
    if (!this.formats.length) await this.load();
    try {
      const [scenes, classes] = await Promise.all([
        getJson<Page<Scene>>(`/api/projects/${this.projectId}/scenes/?page_size=200`),
        getJson<ObjectClass[]>(`/api/projects/${this.projectId}/classes/`),
      ]);
      const keep = (box: HTMLFieldSetElement) => box.querySelectorAll("legend, p");
      const ticked = (box: HTMLFieldSetElement) =>
        new Set([...box.querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value));
      const sceneTicks = ticked(this.scenesBox);
      const classTicks = ticked(this.classesBox);
      this.scenesBox.replaceChildren(...keep(this.scenesBox), ...scenes.results.filter((s) => s.status === "ready")
        .map((s) => checkbox("scene_ids", String(s.id), s.name, sceneTicks.has(String(s.id)))));
      this.classesBox.replaceChildren(...keep(this.classesBox),
        ...classes.map((c) => checkbox("class_ids", String(c.id), c.name, classTicks.has(String(c.id)))));
    } catch (e) {
      this.say(this.error, `Could not list the scenes and classes: ${errorText(e)}`);
    }
  }

  /** The flat request body from the form (numbers as numbers; an empty ground resolution is null). */
  private body(): Record<string, unknown> {
    const f = this.form;
    const values = (name: string) => [...f.querySelectorAll<HTMLInputElement>(`input[name=${name}]:checked`)].map((i) => i.value);
    const format = f.querySelector<HTMLSelectElement>("#export-format")!.value;
    const body: Record<string, unknown> = {
      format,
      name: f.querySelector<HTMLInputElement>("#export-name")!.value.trim(),
      save: f.querySelector<HTMLInputElement>("input[name=save]")!.checked,
      scene_ids: values("scene_ids").map(Number),
      class_ids: values("class_ids").map(Number),
      statuses: values("statuses"),
      sources: values("sources"),
      include_examples: f.querySelector<HTMLInputElement>("input[name=include_examples]")!.checked,
    };
    if (this.isChipFormat(format)) {
      for (const [name] of CHIP_INPUTS) {
        const raw = f.querySelector<HTMLInputElement>(`input[name=${name}]`)!.value.trim();
        // An emptied box means the server's default; for the ground resolution that is each scene's own (null).
        if (raw !== "") body[name] = Number(raw);
        else if (name === "gsd_m") body[name] = null;
      }
    }
    if (format === "gpkg") body.gpkg_layout = f.querySelector<HTMLSelectElement>("#export-gpkg-layout")!.value;
    return body;
  }

  private async submit(): Promise<void> {
    const body = this.body();
    if (!(body.statuses as string[]).length) return this.say(this.error, "Tick at least one status to export.");
    if (body.save && !body.name) return this.say(this.error, "Give the export a name to save it, or untick “Save this export”.");
    const go = this.form.querySelector<HTMLButtonElement>("#export-submit")!;
    go.disabled = true;
    try {
      const answer = await postJson<ExportStarted>(`/api/projects/${this.projectId}/exports/`, body);
      this.say(this.error, "");
      this.dialog.close();
      await this.load();
      this.follow(answer.job);
      document.getElementById("export-jobs")?.querySelector<HTMLElement>(`[data-job-id="${answer.job.id}"]`)?.focus();
    } catch (e) {
      this.say(this.error, errorText(e));
    } finally {
      go.disabled = false;
    }
  }

  /** Read the saved definitions and the recent exports, and follow those still running. */
  async load(): Promise<void> {
    let list: ExportList;
    try {
      list = await getJson<ExportList>(`/api/projects/${this.projectId}/exports/`);
      this.say(this.listError, "");
    } catch (e) {
      return this.say(this.listError, `Could not read the exports: ${errorText(e)}`);
    }
    this.setFormats(list.formats);
    this.definitionList.replaceChildren(...list.definitions.map((d) => this.definitionRow(d)));
    if (!list.definitions.length) this.definitionList.append(el("li", "muted", "No saved exports yet."));
    this.exportList.replaceChildren(...list.exports.map((j) => this.exportRow(j)));
    if (!list.exports.length) this.exportList.append(el("p", "muted", "No exports yet."));
    list.exports.filter(jobActive).forEach((j) => this.follow(j));
  }

  private definitionRow(d: Definition): HTMLElement {
    const row = el("li", "manage-row export-definition");
    row.dataset.definitionId = String(d.id);
    row.dataset.name = d.name;
    const lastJob = d.last_job as Job | null; // the schema leaves it untyped: it is a Job
    const last = lastJob ? ` · last run ${lastJob.status}` : "";
    row.append(el("span", "export-definition-name", d.name),
               el("span", "muted small", `${this.formatName(d.format)}${last}`));
    const run = el("button", "btn btn-small export-run", "Run again");
    run.type = "button";
    run.setAttribute("aria-label", `Run ${d.name} again`);
    run.addEventListener("click", async () => {
      run.disabled = true;
      try {
        const answer = await postJson<ExportStarted>(`/api/export-definitions/${d.id}/run/`, {});
        await this.load();
        this.follow(answer.job);
      } catch (e) {
        this.say(this.listError, errorText(e));
        run.disabled = false;
      }
    });
    const remove = el("button", "btn btn-small danger-outline export-delete", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete ${d.name}`);
    remove.addEventListener("click", async () => {
      try {
        await deleteJson(`/api/export-definitions/${d.id}/`);
        await this.load();
      } catch (e) {
        this.say(this.listError, errorText(e));
      }
    });
    row.append(run, remove);
    return row;
  }

  private title(job: Job): string {
    const params = job.params as Record<string, unknown>;
    const fmt = String(params.format ?? "");
    const name = typeof params.name === "string" && params.name ? `${params.name} · ` : "";
    return `${name}${this.formatName(fmt)} export #${job.id}`;
  }

  private exportRow(job: Job, pollError = ""): HTMLElement {
    const row = jobRow(job, this.title(job), pollError);
    row.classList.add("export-job");
    row.tabIndex = -1;
    const result = job.result as Record<string, unknown>;
    if (job.status === "succeeded" && typeof result.download === "string") {
      const link = el("a", "btn btn-small export-download", "Download zip");
      link.href = result.download;
      link.setAttribute("download", String(result.file_name ?? ""));
      const size = num(result.size_bytes);
      const line = el("p", "small");
      line.append(link, ` ${String(result.file_name ?? "")}${size !== null ? ` · ${bytes(size)}` : ""}`);
      row.append(line);
      if (result.manifest && typeof result.manifest === "object") {
        row.append(manifestSummary(result.manifest as Record<string, unknown>));
      }
    }
    return row;
  }

  /** Poll a running export and redraw its row; the lists are re-read once it ends (definitions show the last run). */
  private follow(job: Job): void {
    if (this.followed.has(job.id) || !jobActive(job)) return;
    this.followed.add(job.id);
    void followJob(job, (j, pollError) => {
      const old = this.exportList.querySelector(`[data-job-id="${j.id}"]`);
      if (old) old.replaceWith(this.exportRow(j, pollError));
      else this.exportList.prepend(this.exportRow(j, pollError));
    }).then(() => {
      this.followed.delete(job.id);
      void this.load();
    });
  }
}
