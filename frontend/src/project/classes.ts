// The project's classes: managers add, rename, recolour, reorder (buttons, or Alt+Up/Down) and delete them.
import { ApiError, deleteJson, errorText, getJson, ObjectClass, patchJson, postJson } from "../api";
import { el } from "../dom";

export class ClassAdmin {
  private classes: ObjectClass[] = [];

  constructor(
    private readonly projectId: number,
    private readonly list: HTMLElement,
    private readonly error: HTMLElement,
    private readonly canEdit: boolean,
  ) {}

  async load(): Promise<void> {
    this.classes = await getJson<ObjectClass[]>(`/api/projects/${this.projectId}/classes/`);
    this.render();
  }

  private say(text: string): void {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  /** Run a change, show its error if it fails, and re-read the list either way (another manager may have moved). */
  private async change(work: () => Promise<unknown>, focus?: () => void): Promise<void> {
    try {
      await work();
      this.say("");
    } catch (e) {
      // A refusal's message says it all; only invalid input needs its fields listed.
      this.say(e instanceof ApiError && e.code !== "invalid" ? e.message : errorText(e));
    }
    await this.load();
    focus?.();
  }

  private focusIn(classId: number, selector: string): void {
    this.list.querySelector<HTMLElement>(`[data-class-id="${classId}"] ${selector}`)?.focus();
  }

  private move(c: ObjectClass, by: number, selector: string): void {
    const position = this.classes.findIndex((x) => x.id === c.id) + by;
    if (position < 0 || position >= this.classes.length) return;
    void this.change(
      () => patchJson(`/api/classes/${c.id}/`, { position }),
      () => this.focusIn(c.id, selector),
    );
  }

  private row(c: ObjectClass, i: number): HTMLElement {
    const row = el("li", "manage-row class-admin-row");
    row.dataset.classId = String(c.id);
    row.dataset.className = c.name;
    if (!this.canEdit) {
      const swatch = el("span", "swatch");
      swatch.style.background = c.color;
      row.append(swatch, el("span", "class-admin-name", c.name));
      return row;
    }
    const colour = el("input", "class-colour");
    colour.type = "color";
    colour.value = c.color;
    colour.setAttribute("aria-label", `Colour of ${c.name}`);
    colour.addEventListener("change", () =>
      void this.change(() => patchJson(`/api/classes/${c.id}/`, { color: colour.value }), () => this.focusIn(c.id, ".class-colour")),
    );
    const name = el("input", "class-name-input");
    name.value = c.name;
    name.maxLength = 100;
    name.setAttribute("aria-label", `Name of ${c.name}`);
    name.addEventListener("change", () => {
      const value = name.value.trim();
      if (!value || value === c.name) return void (name.value = c.name);
      void this.change(() => patchJson(`/api/classes/${c.id}/`, { name: value }), () => this.focusIn(c.id, ".class-name-input"));
    });
    name.addEventListener("keydown", (e) => {
      if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
        e.preventDefault();
        this.move(c, e.key === "ArrowUp" ? -1 : 1, ".class-name-input");
      } else if (e.key === "Escape") {
        name.value = c.name;
      }
    });
    const up = el("button", "btn btn-small icon-btn class-up", "↑");
    up.type = "button";
    up.disabled = i === 0;
    up.setAttribute("aria-label", `Move ${c.name} up`);
    up.title = "Move up (Alt+↑)";
    up.addEventListener("click", () => this.move(c, -1, i === 1 ? ".class-down" : ".class-up"));
    const down = el("button", "btn btn-small icon-btn class-down", "↓");
    down.type = "button";
    down.disabled = i === this.classes.length - 1;
    down.setAttribute("aria-label", `Move ${c.name} down`);
    down.title = "Move down (Alt+↓)";
    down.addEventListener("click", () => this.move(c, 1, i === this.classes.length - 2 ? ".class-up" : ".class-down"));
    const remove = el("button", "btn btn-small danger-outline class-delete", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete ${c.name}`);
    remove.addEventListener("click", () => void this.change(() => deleteJson(`/api/classes/${c.id}/`)));
    row.append(colour, name, up, down, remove);
    return row;
  }

  private render(): void {
    const rows = this.classes.map((c, i) => this.row(c, i));
    this.list.replaceChildren(...(rows.length ? rows : [el("li", "muted", "No classes yet.")]));
  }

  setupAddForm(form: HTMLFormElement | null): void {
    if (!form) return;
    const name = form.querySelector<HTMLInputElement>("#class-add-name")!;
    const colour = form.querySelector<HTMLInputElement>("#class-add-color")!;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = name.value.trim();
      if (!value) return this.say("Give the new class a name.");
      void this.change(
        async () => {
          await postJson(`/api/projects/${this.projectId}/classes/`, { name: value, color: colour.value });
          name.value = "";
        },
        () => name.focus(),
      );
    });
  }
}
