// Review progress of the scene: counts by status, the reviewer's own decisions and their rate this session.
import { errorText } from "../api";
import { el } from "../dom";
import { ProgressOut, reviewProgress } from "./api";

const DECISION_VERBS = ["accept", "reject", "relabel", "reshape", "create_manual"];

export class ProgressBox {
  private readonly started = Date.now();
  private mineAtStart: number | null = null;

  constructor(private readonly sceneId: number, private readonly box: HTMLElement) {}

  async load(): Promise<void> {
    try {
      this.render(await reviewProgress(this.sceneId));
    } catch (e) {
      this.box.replaceChildren(el("p", "error small", `Progress could not be loaded: ${errorText(e)}`));
    }
  }

  private render(p: ProgressOut): void {
    const mine = DECISION_VERBS.reduce((n, v) => n + (p.mine[v] ?? 0), 0);
    if (this.mineAtStart === null) this.mineAtStart = mine;
    const session = mine - this.mineAtStart;
    const minutes = (Date.now() - this.started) / 60000;
    const reviewed = p.by_status.accepted + p.by_status.rejected;
    const share = p.total ? Math.round((100 * reviewed) / p.total) : 0;
    const bar = el("div", "progress-bar");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(share));
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-label", "Reviewed");
    const fill = el("span");
    fill.style.width = `${share}%`;
    bar.append(fill);
    const counts = el("p", "progress-counts small");
    for (const s of ["proposed", "accepted", "rejected"] as const) {
      const c = el("span", `count-${s}`, `${p.by_status[s]} ${s}`);
      c.dataset.count = String(p.by_status[s]);
      counts.append(c, document.createTextNode(" · "));
    }
    counts.lastChild?.remove();
    const rate = minutes >= 1 ? ` · ${(session / minutes).toFixed(1)} per minute` : "";
    const me = el("p", "progress-mine small", `You: ${mine} decision${mine === 1 ? "" : "s"} on this scene, ${session} this session${rate}.`);
    me.dataset.mine = String(mine);
    this.box.replaceChildren(bar, counts, me);
    this.box.dataset.total = String(p.total);
  }
}
