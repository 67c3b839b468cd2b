// The project's members: everyone sees who is in it; managers add members by user name, change roles, remove them.
import { ApiError, deleteJson, errorText, getJson, patchJson, postJson } from "../api";
import type { components } from "../api-schema";
import { el } from "../dom";

type Member = components["schemas"]["Member"];
const ROLES = ["manager", "reviewer", "annotator", "viewer"] as const;

export class MemberAdmin {
  private members: Member[] = [];

  constructor(
    private readonly projectId: number,
    private readonly list: HTMLElement,
    private readonly error: HTMLElement,
    private readonly canManage: boolean,
    private readonly myId: number,
  ) {}

  private url(userId?: number): string {
    return `/api/projects/${this.projectId}/members/${userId === undefined ? "" : `${userId}/`}`;
  }

  async load(): Promise<void> {
    this.members = await getJson<Member[]>(this.url());
    this.render();
  }

  private say(text: string): void {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  private async change(work: () => Promise<unknown>, after?: (ok: boolean) => void): Promise<boolean> {
    let ok = true;
    try {
      await work();
      this.say("");
    } catch (e) {
      // A refusal's message says it all; only invalid input needs its fields listed.
      this.say(e instanceof ApiError && e.code !== "invalid" ? e.message : errorText(e));
      ok = false;
    }
    await this.load();
    after?.(ok);
    return ok;
  }

  private row(m: Member): HTMLElement {
    const row = el("li", "manage-row member-row");
    row.dataset.userId = String(m.user);
    row.dataset.username = m.username;
    row.append(el("span", "member-name", m.username + (m.user === this.myId ? " (you)" : "")));
    if (!this.canManage) {
      row.append(el("span", "badge member-role", m.role));
      return row;
    }
    const role = el("select", "member-role-select");
    role.setAttribute("aria-label", `Role of ${m.username}`);
    for (const r of ROLES) {
      const option = el("option", "", r);
      option.value = r;
      option.selected = r === m.role;
      role.append(option);
    }
    role.addEventListener("change", () => {
      const value = role.value;
      void this.change(() => patchJson(this.url(m.user), { role: value }), (ok) => {
        // Demoting yourself takes the management controls away: the page is redrawn for the new role.
        if (ok && m.user === this.myId && value !== "manager") window.location.reload();
        else this.list.querySelector<HTMLElement>(`[data-user-id="${m.user}"] select`)?.focus();
      });
    });
    const remove = el("button", "btn btn-small danger-outline member-remove", "Remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${m.username}`);
    remove.addEventListener("click", () => {
      void this.change(() => deleteJson(this.url(m.user)), (ok) => {
        if (ok && m.user === this.myId) window.location.href = "/"; // no longer a member: back to your projects
      });
    });
    row.append(role, remove);
    return row;
  }

  private render(): void {
    this.list.replaceChildren(...this.members.map((m) => this.row(m)));
  }

  setupAddForm(form: HTMLFormElement | null): void {
    if (!form) return;
    const name = form.querySelector<HTMLInputElement>("#member-add-name")!;
    const role = form.querySelector<HTMLSelectElement>("#member-add-role")!;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const username = name.value.trim();
      if (!username) return this.say("Type the user name of the person to add.");
      void this.change(async () => {
        await postJson(this.url(), { username, role: role.value });
        name.value = "";
      }, () => name.focus());
    });
  }
}
