// The class rows of the scene panel: the active class (remembered per user and project), which classes a search
// covers, and counts of examples and shown detections per class.
import { errorText, getJson, ObjectClass, Page, patchJson } from "../api";
import { el } from "../dom";

export interface ClassListHost {
  activeChanged(cls: ObjectClass): void;
  searchScopeChanged(): void;
  failed(text: string): void;
}

export class ClassList {
  classes: ObjectClass[] = [];
  activeClassId: number | null = null;
  readonly searchClassIds = new Set<number>();
  private exampleCounts = new Map<number, number>();
  private detectionCounts = new Map<number, number>();

  constructor(
    private readonly projectId: number,
    private readonly list: HTMLElement,
    private readonly opts: { canAnnotate: boolean; canRunJobs: boolean; rememberedClassId: number | null },
    private readonly host: ClassListHost,
  ) {}

  async load(): Promise<void> {
    const data = await getJson<ObjectClass[] | Page<ObjectClass>>(`/api/projects/${this.projectId}/classes/`);
    this.classes = (Array.isArray(data) ? data : data.results).slice().sort((a, b) => a.index - b.index);
    const remembered = this.classes.find((c) => c.id === this.opts.rememberedClassId);
    if (this.activeClassId === null && this.classes.length) this.activeClassId = (remembered ?? this.classes[0]).id;
    this.render();
  }

  active(): ObjectClass | undefined {
    return this.classes.find((c) => c.id === this.activeClassId);
  }

  byId(id: number): ObjectClass | undefined {
    return this.classes.find((c) => c.id === id);
  }

  colours(): Map<number, string> {
    return new Map(this.classes.map((c) => [c.id, c.color ?? "#ff3b30"]));
  }

  setActive(classId: number, remember = true): void {
    if (classId === this.activeClassId) return;
    this.activeClassId = classId;
    this.refresh();
    const cls = this.active();
    if (cls) this.host.activeChanged(cls);
    if (remember) void this.remember(classId);
  }

  /** Keep the choice for this user and project (the next visit, on any device, starts with it). */
  private async remember(classId: number): Promise<void> {
    try {
      await patchJson(`/api/projects/${this.projectId}/me/`, { last_class: classId });
    } catch (e) {
      this.host.failed(`Your class choice was not remembered: ${errorText(e)}`);
    }
  }

  setCounts(examples: Map<number, number> | null, detections: Map<number, number> | null): void {
    if (examples) this.exampleCounts = examples;
    if (detections) this.detectionCounts = detections;
    this.refresh();
  }

  private render(): void {
    const { canAnnotate, canRunJobs } = this.opts;
    this.list.setAttribute("role", canAnnotate ? "radiogroup" : "list");
    if (!this.classes.length) {
      this.list.replaceChildren(el("p", "muted small", "This project has no classes yet; a manager can add them."));
      return;
    }
    const rows = this.classes.map((c, i) => {
      const row = el("div", "class-row");
      row.dataset.classId = String(c.id);
      row.dataset.className = c.name;
      row.style.setProperty("--class-colour", c.color ?? "");
      if (canAnnotate) {
        row.setAttribute("role", "radio");
        row.setAttribute("aria-label", c.name);
        row.title = `Draw ${c.name}${i < 9 ? ` · key ${i + 1} sets a selected detection to it` : ""}`;
        row.addEventListener("click", () => this.setActive(c.id));
        row.addEventListener("keydown", (e) => this.keydown(e, c.id));
      } else {
        row.setAttribute("role", "listitem");
      }
      const check = el("span", "class-check");
      if (canRunJobs) {
        const box = el("input");
        box.type = "checkbox";
        box.checked = this.searchClassIds.has(c.id);
        box.title = `Search for ${c.name}`;
        box.setAttribute("aria-label", `Search for ${c.name}`);
        box.addEventListener("click", (e) => e.stopPropagation());
        box.addEventListener("keydown", (e) => e.stopPropagation());
        box.addEventListener("change", () => {
          if (box.checked) this.searchClassIds.add(c.id);
          else this.searchClassIds.delete(c.id);
          this.host.searchScopeChanged();
        });
        check.append(box);
      }
      const name = el("span", "class-name");
      const swatch = el("span", "swatch");
      swatch.style.background = c.color ?? "";
      name.append(swatch, el("span", "class-label", c.name));
      if (i < 9) name.append(el("kbd", "class-key", String(i + 1)));
      row.append(check, name, el("span", "class-count ex", "0"), el("span", "class-count det", "0"));
      return row;
    });
    this.list.replaceChildren(...rows);
    this.refresh();
  }

  /** Counts and the active class, in place. */
  private refresh(): void {
    for (const row of this.list.querySelectorAll<HTMLElement>(".class-row")) {
      const id = Number(row.dataset.classId);
      const active = this.opts.canAnnotate && id === this.activeClassId;
      row.classList.toggle("active", active);
      if (this.opts.canAnnotate) {
        row.setAttribute("aria-checked", String(active));
        row.tabIndex = active ? 0 : -1;
      }
      const setCount = (selector: string, key: string, value: number) => {
        const cell = row.querySelector<HTMLElement>(selector)!;
        cell.textContent = String(value);
        cell.dataset[key] = String(value);
        cell.classList.toggle("zero", value === 0);
      };
      setCount(".class-count.ex", "examples", this.exampleCounts.get(id) ?? 0);
      setCount(".class-count.det", "detections", this.detectionCounts.get(id) ?? 0);
    }
  }

  private keydown(e: KeyboardEvent, classId: number): void {
    const i = this.classes.findIndex((c) => c.id === classId);
    const step = e.key === "ArrowDown" || e.key === "ArrowRight" ? 1 : e.key === "ArrowUp" || e.key === "ArrowLeft" ? -1 : 0;
    if (step) {
      e.preventDefault();
      e.stopPropagation(); // arrows here move between classes, not through the review queue
      const next = this.classes[(i + step + this.classes.length) % this.classes.length];
      this.setActive(next.id);
      this.list.querySelector<HTMLElement>(`[data-class-id="${next.id}"]`)?.focus();
    } else if (e.key === " " || e.key === "Enter") {
      e.preventDefault();
      e.stopPropagation();
      this.setActive(classId);
    }
  }
}
