// "Import labels": upload a label file, read its inspection, map unknown class names, run the import, show the report.
import { errorText, getJson, Job, ObjectClass, Page, postForm, postJson, Scene } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";
import { followJob, jobRow } from "./job-follow";

type Upload = components["schemas"]["Import"];
type Inspection = Upload["inspection"];
type Skipped = Inspection["skipped"];

/** What a finished import job's result holds (datasets/import_services.py). */
interface ImportReport {
  imported: number;
  target: string;
  per_class: Record<string, number>;
  per_scene: { id: number; name: string; count: number }[];
  repaired: number;
  clipped: number;
  split: { objects: number; parts: number };
  skipped: Skipped;
}

/** What the caller may do here (the server checks again). */
export interface ImportRights {
  accepted: boolean;
  newClasses: boolean;
}

const FORMAT_NAMES: Record<string, string> = {
  geojson: "GeoJSON", gpkg: "GeoPackage", shapefile: "Shapefile", yolo: "YOLO", coco: "COCO",
};
const SKIP = "skip";
const NEW = "new";

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = el("label", "form-field");
  label.append(el("span", "", text), control);
  return label;
}

function option(value: string, text: string, selected = false): HTMLOptionElement {
  const o = el("option", "", text);
  o.value = value;
  o.selected = selected;
  return o;
}

/** Skipped objects by reason, with the first few items each: a list (empty when nothing was skipped). */
export function skippedList(skipped: Skipped): HTMLElement | null {
  if (!skipped.count) return null;
  const box = el("div", "import-skipped");
  box.append(el("p", "", `${skipped.count} skipped:`));
  const list = el("ul", "import-skip-reasons");
  for (const [reason, count] of Object.entries(skipped.by_reason)) {
    const items = skipped.items.filter((i) => i.reason === reason).slice(0, 5);
    // The items' messages are the reason in words; the key is the fallback when no item was kept.
    const li = el("li", "", `${items[0]?.message ?? reason.replace(/_/g, " ")}: ${count}`);
    li.dataset.reason = reason;
    if (items.length) {
      const sub = el("ul", "small muted");
      sub.append(...items.map((i) => el("li", "", i.item)));
      if (count > items.length) sub.append(el("li", "", `… and ${count - items.length} more`));
      li.append(sub);
    }
    list.append(li);
  }
  box.append(list);
  return box;
}

export class ImportDialog {
  private readonly dialog: HTMLDialogElement;
  private readonly body: HTMLElement;
  private readonly error: HTMLElement;
  private upload: Upload | null = null;
  private busy = false;

  constructor(
    private readonly projectId: number,
    section: HTMLElement,
    private readonly rights: ImportRights,
    private readonly onImported: () => void,
  ) {
    const heading = el("h2", "", "Import labels");
    heading.id = "imports-title";
    section.append(heading);
    section.append(el("p", "muted small",
      "Polygons from GeoJSON, GeoPackage or a zipped Shapefile (any CRS), a YOLO zip or COCO (json or zip), as examples" +
      (rights.accepted ? " or as accepted objects." : ".")));
    const open = el("button", "btn", "Import labels…");
    open.type = "button";
    open.id = "import-open";
    section.append(open);
    this.dialog = el("dialog", "data-dialog");
    this.dialog.id = "import-dialog";
    this.dialog.setAttribute("aria-labelledby", "import-title");
    const title = el("h2", "", "Import labels");
    title.id = "import-title";
    this.body = el("div", "import-body");
    this.error = el("p", "error");
    this.error.id = "import-error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    const close = el("button", "btn btn-small dialog-close", "Close");
    close.type = "button";
    close.addEventListener("click", () => this.dialog.close());
    this.dialog.append(title, this.body, this.error, close);
    section.append(this.dialog);
    open.addEventListener("click", () => void this.start());
    // Escape closes the dialog (the browser's cancel), unless an upload is on its way.
    this.dialog.addEventListener("cancel", (e) => this.busy && e.preventDefault());
  }

  private say(text: string): void {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  /** Open the dialog at its first step: choose a file and, optionally, a scene. */
  async start(): Promise<void> {
    this.upload = null;
    this.say("");
    const form = el("form", "manage-form import-choose");
    const file = el("input");
    file.type = "file";
    file.id = "import-file";
    file.name = "file";
    file.required = true;
    file.accept = ".geojson,.json,.gpkg,.zip";
    const scene = el("select");
    scene.id = "import-scene";
    scene.append(option("", "By scene name or location"));
    form.append(
      labelled("Label file", file),
      labelled("Scene (for objects or images no scene claims)", scene),
    );
    const progress = el("progress", "job-progress");
    progress.id = "import-upload-progress";
    progress.max = 1;
    progress.value = 0;
    progress.hidden = true;
    progress.setAttribute("aria-label", "Upload progress");
    const submit = el("button", "btn primary", "Upload and inspect");
    submit.type = "submit";
    submit.id = "import-upload";
    form.append(progress, submit);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.send(file, scene, progress, submit);
    });
    this.body.replaceChildren(form);
    if (!this.dialog.open) this.dialog.showModal();
    file.focus();
    try {
      const page = await getJson<Page<Scene>>(`/api/projects/${this.projectId}/scenes/?page_size=200`);
      scene.append(...page.results.filter((s) => s.status === "ready").map((s) => option(String(s.id), s.name)));
    } catch (e) {
      this.say(`Could not list the scenes: ${errorText(e)}`);
    }
  }

  private async send(file: HTMLInputElement, scene: HTMLSelectElement, progress: HTMLProgressElement,
                     submit: HTMLButtonElement): Promise<void> {
    const chosen = file.files?.[0];
    if (!chosen) return this.say("Choose a label file first.");
    const data = new FormData();
    data.append("file", chosen);
    if (scene.value) data.append("scene_id", scene.value);
    this.say("");
    this.busy = true;
    submit.disabled = true;
    progress.hidden = false;
    try {
      this.upload = await postForm<Upload>(`/api/projects/${this.projectId}/imports/`, data, (f) => (progress.value = f));
      await this.inspect(this.upload);
    } catch (e) {
      this.say(errorText(e));
      submit.disabled = false;
      progress.hidden = true;
    } finally {
      this.busy = false;
    }
  }

  /** The inspection, the class mapping (unknown names default to a new class for managers, else skipped), the target. */
  private async inspect(upload: Upload): Promise<void> {
    const classes = await getJson<ObjectClass[]>(`/api/projects/${this.projectId}/classes/`);
    const ins = upload.inspection;
    const form = el("form", "manage-form import-inspection");
    const facts = el("dl", "import-facts");
    const fact = (term: string, value: string, key: string) => {
      const dd = el("dd", "", value);
      dd.dataset.fact = key;
      facts.append(el("dt", "", term), dd);
    };
    fact("File", upload.file_name, "file");
    fact("Format", FORMAT_NAMES[ins.format] ?? ins.format, "format");
    fact("Objects", `${ins.objects} (from ${ins.feature_count} features)`, "objects");
    fact("CRS", ins.crs ?? "none given", "crs");
    if (ins.scenes.length) fact("Scenes", ins.scenes.map((s) => `${s.name} (${s.count})`).join(", "), "scenes");
    const fixes = [
      ins.repaired && `${ins.repaired} repaired`, ins.clipped && `${ins.clipped} clipped to a scene`,
      ins.split.objects && `${ins.split.objects} multipolygons split into ${ins.split.parts} parts`,
    ].filter(Boolean);
    if (fixes.length) fact("Fixed", fixes.join(", "), "fixed");
    form.append(facts);
    const skipped = skippedList(ins.skipped);
    if (skipped) form.append(skipped);

    const mapping = el("fieldset", "import-classes");
    mapping.append(el("legend", "", "Classes in the file"));
    const selects: [string, HTMLSelectElement][] = [];
    for (const c of ins.classes) {
      const select = el("select", "import-class-map");
      select.dataset.name = c.name;
      select.setAttribute("aria-label", `Class for ${c.name}`);
      for (const k of classes) select.append(option(String(k.id), k.name, k.id === c.class_id));
      if (c.class_id === null && this.rights.newClasses) select.append(option(NEW, `New class “${c.name}”`, true));
      select.append(option(SKIP, "Skip these objects", c.class_id === null && !this.rights.newClasses));
      const row = el("div", "manage-row import-class-row");
      row.dataset.name = c.name;
      row.append(el("span", "import-class-name", `${c.name} (${c.count})`), select,
                 el("span", c.class_id === null ? "badge import-unmatched" : "badge", c.class_id === null ? "unknown" : "matched"));
      mapping.append(row);
      selects.push([c.name, select]);
    }
    if (!ins.classes.length) mapping.append(el("p", "muted", "The file names no classes."));
    form.append(mapping);

    const target = el("fieldset", "import-target");
    target.append(el("legend", "", "Import as"));
    const targets: [string, string][] = [["examples", "Examples (to search with)"]];
    if (this.rights.accepted) targets.push(["accepted", "Accepted objects (reviewed detections)"]);
    for (const [value, text] of targets) {
      const radio = el("input");
      radio.type = "radio";
      radio.name = "target";
      radio.value = value;
      radio.checked = value === "examples";
      const label = el("label");
      label.append(radio, ` ${text}`);
      target.append(label);
    }
    form.append(target);
    const run = el("button", "btn primary", "Import");
    run.type = "submit";
    run.id = "import-run";
    run.disabled = ins.objects === 0;
    form.append(run);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const classMap: Record<string, number | string | null> = {};
      for (const [name, select] of selects) {
        classMap[name] = select.value === SKIP ? null : select.value === NEW ? NEW : Number(select.value);
      }
      const chosen = form.querySelector<HTMLInputElement>("input[name=target]:checked")?.value ?? "examples";
      void this.run(upload, chosen, classMap, run);
    });
    this.body.replaceChildren(form);
    (selects.find(([, s]) => s.value === NEW || s.value === SKIP)?.[1] ?? run).focus();
  }

  private async run(upload: Upload, target: string, classMap: Record<string, number | string | null>,
                    button: HTMLButtonElement): Promise<void> {
    this.say("");
    button.disabled = true;
    let job: Job;
    try {
      ({ job } = await postJson<{ job: Job }>(`/api/imports/${upload.id}/run/`, { target, class_map: classMap }));
    } catch (e) {
      button.disabled = false;
      return this.say(errorText(e));
    }
    const box = el("div", "import-job");
    box.id = "import-job";
    this.body.replaceChildren(box);
    const done = await followJob(job, (j, pollError) => box.replaceChildren(jobRow(j, `Import of ${upload.file_name}`, pollError)));
    if (done.status === "succeeded") {
      box.append(this.report(done.result as unknown as ImportReport));
      this.onImported();
    }
    const again = el("button", "btn import-again", "Import another file");
    again.type = "button";
    again.addEventListener("click", () => void this.start());
    box.append(again);
    again.focus();
  }

  private report(report: ImportReport): HTMLElement {
    const box = el("div", "import-report");
    box.id = "import-report";
    const what = report.target === "accepted" ? "accepted objects" : "examples";
    const head = el("p", "import-imported", `Imported ${report.imported} ${what}.`);
    head.dataset.imported = String(report.imported);
    box.append(head);
    const perClass = el("ul", "import-per-class");
    for (const [name, count] of Object.entries(report.per_class)) {
      const li = el("li", "", `${name}: ${count}`);
      li.dataset.name = name;
      li.dataset.count = String(count);
      perClass.append(li);
    }
    box.append(perClass);
    if (report.per_scene.length) {
      box.append(el("p", "muted small", `Per scene: ${report.per_scene.map((s) => `${s.name} ${s.count}`).join(", ")}`));
    }
    const skipped = skippedList(report.skipped);
    box.append(skipped ?? el("p", "muted small", "Nothing was skipped."));
    return box;
  }
}
