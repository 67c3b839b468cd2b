// Work cells on the scene page: the cells layer (outline, label, status colour, assignee and progress), its layer
// toggle, and a "Work cells" panel section: managers split the scene (or a drawn area), deal cells round-robin and
// assign or reopen them; reviewers see their cells and mark the current detection's cell done. A done cell's
// detections are read-only: the card's buttons are disabled there (the server refuses them too: 409 cell_done).
import { confirmInDialog } from "./confirm";
import Feature from "ol/Feature";
import type OlMap from "ol/Map";
import type { Coordinate } from "ol/coordinate";
import { getCenter } from "ol/extent";
import GeoJSON from "ol/format/GeoJSON";
import Draw from "ol/interaction/Draw";
import VectorLayer from "ol/layer/Vector";
import VectorSource from "ol/source/Vector";
import { Fill, Stroke, Style, Text } from "ol/style";
import type { components } from "../api-schema";
import { errorText, getJson, postJson } from "../api";
import { geometryToLonLat } from "../scene-layers";
import { getDetection } from "./api";

type CellCollection = components["schemas"]["CellCollection"];
type CellProps = components["schemas"]["CellProperties"];
interface Member {
  user: number;
  username: string;
  role: string;
}

const STATUS_COLOUR: Record<string, string> = { open: "#8e8e93", in_progress: "#ff9f0a", done: "#30d158" };
const MIN_GAP_MS = 2000;
const geojson = new GeoJSON({ dataProjection: "EPSG:4326", featureProjection: "EPSG:3857" });

/** An element with properties and children (text or nodes). */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

export interface CellsHost {
  projectId: number;
  /** The selected detection's id (null: none). */
  selected(): number | null;
  notice(text: string): void;
  failed(text: string): void;
  /** Cells changed hands or state: the queue's look-ahead is read again. */
  cellsChanged(): void;
  /** The scene's longer side in metres (0: unknown), for a first cell size that suits it. */
  sceneSizeM: number;
}

/** A round cell size giving about a 4 x 4 grid over a scene of `sideM` metres (500 m when unknown). */
export function suggestedCellSize(sideM: number): number {
  if (!(sideM > 0)) return 500;
  const rough = sideM / 4;
  const step = 10 ** Math.floor(Math.log10(rough));
  const nice = [1, 2, 5, 10].map((k) => k * step).find((v) => v >= rough * 0.75) ?? rough;
  return Number(nice.toPrecision(2));
}

/** Ask in the page's confirmation dialog. */
const ask = (text: string) => confirmInDialog(document.getElementById("confirm-dialog") as HTMLDialogElement | null, text);

/** "34/120": decided of all detections whose centre lies in the cell. */
export function progressText(p: CellProps): string {
  return `${p.decided}/${p.total}`;
}

export class WorkCells {
  readonly layer: VectorLayer<VectorSource>;
  private readonly source = new VectorSource();
  private data: CellCollection | null = null;
  private members: Member[] = [];
  private readonly section: HTMLElement;
  private draw: Draw | null = null;
  private picking = false;
  /** Each looked-up detection's cell (null: in none), forgotten whenever the cells change. */
  private readonly cellByDetection = new Map<number, Feature | null>();
  private readonly lookups = new Map<number, Promise<void>>();

  constructor(
    private readonly map: OlMap,
    private readonly sceneId: number,
    private readonly host: CellsHost,
    after: HTMLElement | null,
    private readonly card: HTMLElement | null,
  ) {
    this.sizeText = String(suggestedCellSize(host.sceneSizeM));
    this.layer = new VectorLayer({ source: this.source, style: (f) => this.style(f as Feature), zIndex: 5 });
    this.layer.set("name", "work-cells");
    map.addLayer(this.layer);
    this.section = h("div", { className: "panel-block", id: "cells-block" });
    this.section.setAttribute("aria-labelledby", "cells-title");
    after?.after(this.section);
    this.addLayerToggle();
    map.on("singleclick", (e) => {
      if (this.picking) void this.assignAt(e.coordinate);
    });
    // Live updates (review/live.ts) announce another page's split, assignment or done cell.
    window.addEventListener("cells-changed", (e) => {
      const detail = (e as CustomEvent<{ sceneId: number; revision: string }>).detail;
      if (detail?.sceneId === this.sceneId && detail.revision !== this.revision) void this.load();
    });
    // The card re-renders on every change: disable its decision buttons again whenever it does.
    if (card) new MutationObserver(() => this.guardCard()).observe(card, { childList: true, subtree: true });
  }

  async start(): Promise<void> {
    await this.load();
    if (this.data?.can_manage) {
      try {
        this.members = (await getJson<Member[]>(`/api/projects/${this.host.projectId}/members/`)).filter(
          (m) => m.role === "reviewer" || m.role === "manager",
        );
      } catch (e) {
        this.host.failed(`The project's reviewers could not be loaded: ${errorText(e)}`);
      }
    }
    this.render();
  }

  /** Read the cells again (after decisions, or when live updates say the cells' revision changed). Calls in a
   * burst share one request, at most one every MIN_GAP_MS: the progress counts cost the server a spatial join. */
  load(): Promise<void> {
    if (this.loading) return this.loading;
    const wait = Math.max(0, this.lastLoad + MIN_GAP_MS - Date.now());
    this.loading = new Promise<void>((r) => window.setTimeout(r, wait))
      .then(() => getJson<CellCollection>(`/api/scenes/${this.sceneId}/cells/`))
      .then((data) => this.apply(data))
      .catch((e) => this.host.failed(`The work cells could not be loaded: ${errorText(e)}`))
      .finally(() => {
        this.lastLoad = Date.now();
        this.loading = null;
      });
    return this.loading;
  }

  private loading: Promise<void> | null = null;
  private lastLoad = 0;

  get revision(): string | null {
    return this.data?.revision ?? null;
  }

  private apply(data: CellCollection): void {
    const before = this.data?.revision;
    this.data = data;
    this.source.clear();
    this.source.addFeatures(geojson.readFeatures(data) as Feature[]);
    this.cellByDetection.clear();
    document.body.dataset.cellsRevision = data.revision;
    this.render();
    void this.selectionChanged(this.host.selected());
    if (before !== undefined && before !== data.revision) this.host.cellsChanged();
  }

  private style(f: Feature): Style {
    const p = f.getProperties() as CellProps;
    const colour = STATUS_COLOUR[p.status] ?? "#8e8e93";
    const who = p.assignee_name ?? "unassigned";
    return new Style({
      stroke: new Stroke({ color: colour, width: p.status === "done" ? 3 : 2, lineDash: p.status === "open" ? [6, 4] : undefined }),
      fill: new Fill({ color: p.status === "done" ? "rgba(48, 209, 88, 0.10)" : "rgba(0, 0, 0, 0)" }),
      text: new Text({
        text: `${p.label} · ${who}\n${progressText(p)}${p.status === "done" ? " ✓" : ""}`,
        font: "600 12px system-ui, sans-serif",
        fill: new Fill({ color: "#fff" }),
        stroke: new Stroke({ color: colour, width: 4 }),
        overflow: false,
      }),
    });
  }

  private addLayerToggle(): void {
    const group = document.querySelector(".layer-toggles");
    if (!group) return;
    const box = h("input", { type: "checkbox", checked: true });
    box.dataset.cellsLayer = "1";
    box.addEventListener("change", () => this.layer.setVisible(box.checked));
    const key = h("span", { className: "key" });
    key.style.border = `2px dashed ${STATUS_COLOUR.open}`;
    key.style.borderRightColor = key.style.borderBottomColor = STATUS_COLOUR.done;
    group.append(h("label", {}, box, key, "work cells"));
  }

  // ------------------------------------------------------------------ the panel section
  private cellsOf(userId: number): CellProps[] {
    return (this.data?.features ?? []).map((f) => f.properties).filter((p) => p.assignee === userId);
  }

  private render(): void {
    const data = this.data;
    const title = h("div", { className: "block-head" }, h("h4", { id: "cells-title" }, "Work cells"));
    const parts: Node[] = [title];
    if (!data) {
      this.section.replaceChildren(...parts, h("p", { className: "muted small" }, "Loading cells…"));
      return;
    }
    const n = data.features.length;
    const done = data.features.filter((f) => f.properties.status === "done").length;
    parts.push(h("p", { className: "hint", id: "cells-summary" }, n ? `${n} cells, ${done} done.` : "This scene is not split into cells."));
    const mine = this.cellsOf(data.me);
    if (mine.length) {
      const text = mine.map((p) => `${p.label} (${p.status === "done" ? "done" : progressText(p)})`).join(", ");
      parts.push(h("p", { id: "my-cells" }, `Your cells: ${text}`));
    }
    const doneButton = h("button", { type: "button", className: "btn", id: "cell-done" }, "Mark my cell done");
    doneButton.title = "Mark the cell of the selected detection done: its detections become read-only";
    doneButton.addEventListener("click", () => void this.markDone());
    doneButton.disabled = !this.canMarkDone();
    if (n) parts.push(h("div", { className: "btn-row" }, doneButton));
    if (data.can_manage) parts.push(...this.managerControls());
    this.section.replaceChildren(...parts);
  }

  private managerControls(): Node[] {
    // The section is rebuilt whenever the cells are read again: what the manager typed or ticked is kept here.
    const size = h("input", { type: "number", id: "cell-size", min: "1", step: "any", value: this.sizeText });
    size.addEventListener("input", () => (this.sizeText = size.value));
    const sizeField = h("label", { className: "field" }, h("span", {}, "Cell size (m)"), size);
    const whole = h("button", { type: "button", className: "btn", id: "cells-split" }, "Split whole scene");
    whole.addEventListener("click", () => void this.split(Number(size.value), null));
    const area = h("button", { type: "button", className: "btn", id: "cells-split-area" }, this.draw ? "Drawing… (Esc stops)" : "Draw area and split");
    area.setAttribute("aria-pressed", String(this.draw !== null));
    area.addEventListener("click", () => this.toggleDraw(() => Number(size.value)));

    const checks = this.members.map((m) => {
      const box = h("input", { type: "checkbox", value: String(m.user), checked: !this.unticked.has(m.user) });
      box.dataset.reviewer = m.username;
      box.addEventListener("change", () => (box.checked ? this.unticked.delete(m.user) : this.unticked.add(m.user)));
      return h("label", { className: "check" }, box, ` ${m.username} (${m.role})`);
    });
    const list = h("fieldset", { className: "reviewer-picks", id: "cell-reviewers" }, h("legend", {}, "Reviewers"), ...checks);
    const rr = h("button", { type: "button", className: "btn", id: "cells-round-robin" }, "Assign round-robin");
    rr.addEventListener("click", () => {
      const ids = [...list.querySelectorAll<HTMLInputElement>("input:checked")].map((b) => Number(b.value));
      void this.roundRobin(ids);
    });

    const who = h("select", { id: "cell-assignee" }, h("option", { value: "" }, "nobody (unassign)"),
      ...this.members.map((m) => h("option", { value: String(m.user) }, m.username)));
    const whoField = h("label", { className: "field" }, h("span", {}, "Clicked cells go to"), who);
    const pick = h("button", { type: "button", className: "btn", id: "cells-pick" }, this.picking ? "Stop assigning" : "Assign by clicking cells");
    pick.setAttribute("aria-pressed", String(this.picking));
    pick.addEventListener("click", () => {
      this.picking = !this.picking;
      this.render();
    });
    who.addEventListener("change", () => (this.pickUser = who.value ? Number(who.value) : null));
    who.value = this.pickUser === null ? "" : String(this.pickUser);

    const doneCells = (this.data?.features ?? []).filter((f) => f.properties.status === "done");
    const reopen = doneCells.map((f) => {
      const b = h("button", { type: "button", className: "btn btn-small" }, `Reopen ${f.properties.label}`);
      b.addEventListener("click", () => void this.post(`/api/cells/${f.id}/reopen/`, `Cell ${f.properties.label} reopened.`));
      return b;
    });
    return [
      sizeField,
      h("div", { className: "btn-row" }, whole, area),
      list,
      h("div", { className: "btn-row" }, rr),
      whoField,
      h("div", { className: "btn-row" }, pick),
      ...(reopen.length ? [h("div", { className: "btn-row", id: "cells-reopen" }, ...reopen)] : []),
    ];
  }

  private pickUser: number | null = null;
  private sizeText: string;
  private readonly unticked = new Set<number>();

  // ------------------------------------------------------------------ actions
  private async post(url: string, ok: string, body: unknown = {}): Promise<void> {
    try {
      this.apply(await postJson<CellCollection>(url, body));
      this.host.notice(ok);
    } catch (e) {
      this.host.failed(errorText(e));
    }
  }

  private async split(size: number, area: unknown): Promise<void> {
    if (this.data?.features.length && !(await ask(`Replace this scene's ${this.data.features.length} cells by cells of ${size} m?`))) return;
    await this.post(`/api/scenes/${this.sceneId}/cells/split/`, `Split into cells of ${size} m.`, area ? { size_m: size, area } : { size_m: size });
    this.host.cellsChanged();
  }

  private toggleDraw(size: () => number): void {
    if (this.draw) {
      this.map.removeInteraction(this.draw);
      this.draw = null;
      this.render();
      return;
    }
    const draw = new Draw({ type: "Polygon" });
    draw.on("drawend", (e) => {
      this.map.removeInteraction(draw);
      this.draw = null;
      void this.split(size(), geometryToLonLat(e.feature as Feature));
    });
    const stop = (k: KeyboardEvent) => {
      if (k.key === "Escape" && this.draw === draw) {
        this.map.removeInteraction(draw);
        this.draw = null;
        this.render();
      }
    };
    document.addEventListener("keydown", stop, { once: false });
    this.draw = draw;
    this.map.addInteraction(draw);
    this.render();
  }

  private async roundRobin(users: number[]): Promise<void> {
    if (!users.length) return this.host.failed("Tick at least one reviewer to deal the cells to.");
    await this.post(`/api/scenes/${this.sceneId}/cells/assign-round-robin/`, "Cells dealt round-robin.", { users });
  }

  private async assignAt(at: Coordinate): Promise<void> {
    const cell = this.source.getFeaturesAtCoordinate(at)[0];
    if (!cell) return;
    const label = cell.get("label");
    const who = this.members.find((m) => m.user === this.pickUser)?.username ?? "nobody";
    await this.post(`/api/cells/${cell.getId()}/assign/`, `Cell ${label} assigned to ${who}.`, { user: this.pickUser });
  }

  private canMarkDone(): boolean {
    const p = this.selectedCell?.getProperties() as CellProps | undefined;
    if (!p || p.status === "done" || !this.data) return false;
    return this.data.can_manage || p.assignee === this.data.me;
  }

  private async markDone(): Promise<void> {
    const cell = this.selectedCell;
    if (!cell) return this.host.failed("Select a detection in your cell first: its cell is the one marked done.");
    const p = cell.getProperties() as CellProps;
    const left = p.counts.proposed ?? 0;
    const ok = await ask(
      `Mark cell ${p.label} done? ${left ? `${left} proposals there are still undecided. ` : ""}Its detections become read-only until a manager reopens it.`,
    );
    if (ok) await this.post(`/api/cells/${cell.getId()}/done/`, `Cell ${p.label} marked done.`);
  }

  // ------------------------------------------------------------------ the selected detection's cell
  /** The cell of the selected detection (null: none, or not known yet). */
  private get selectedCell(): Feature | null {
    const id = this.host.selected();
    return id === null ? null : this.cellByDetection.get(id) ?? null;
  }

  /** Find the cell of a newly selected detection (by its centre), for "Mark my cell done" and the card. */
  async selectionChanged(id: number | null): Promise<void> {
    if (id !== null && !this.cellByDetection.has(id)) await this.lookup(id);
    const btn = document.getElementById("cell-done") as HTMLButtonElement | null;
    if (btn) btn.disabled = !this.canMarkDone();
    this.guardCard();
  }

  private async lookup(id: number): Promise<void> {
    if (!this.source.getFeatures().length) return void this.cellByDetection.set(id, null);
    const pending = this.lookups.get(id) ?? (async () => {
      try {
        const f = geojson.readFeature(await getDetection(id)) as Feature;
        const centre = getCenter(f.getGeometry()!.getExtent());
        this.cellByDetection.set(id, this.source.getFeaturesAtCoordinate(centre)[0] ?? null);
      } catch {
        this.cellByDetection.set(id, null);
      } finally {
        this.lookups.delete(id);
      }
    })();
    this.lookups.set(id, pending);
    await pending;
  }

  /** In a done cell, the card (whichever detection it shows) says so and its decision buttons are disabled. */
  private guardCard(): void {
    const card = this.card;
    if (!card) return;
    const id = card.dataset.detectionId ? Number(card.dataset.detectionId) : null;
    const cell = id === null ? null : this.cellByDetection.get(id);
    if (id !== null && cell === undefined) void this.lookup(id).then(() => this.guardCard());
    const p = cell?.getProperties() as CellProps | undefined;
    const locked = p?.status === "done";
    const note = card.querySelector<HTMLElement>(".cell-done-note");
    if (!locked || !p) {
      note?.remove();
      for (const b of card.querySelectorAll<HTMLButtonElement>("button[data-cell-locked]")) {
        b.disabled = false;
        delete b.dataset.cellLocked;
      }
      return;
    }
    for (const b of card.querySelectorAll<HTMLButtonElement>("button[data-command]")) {
      if (b.disabled) continue;
      b.disabled = true;
      b.dataset.cellLocked = "1";
    }
    const at = p.done_at ? new Date(p.done_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false }) : "";
    const text = `Cell ${p.label} was marked done by ${p.done_by_name ?? "someone"}${at ? ` at ${at}` : ""}; ask a manager to reopen it.`;
    if (note?.textContent === text) return;
    note?.remove();
    card.append(h("p", { className: "cell-done-note hint", textContent: text }));
  }
}
