// Renaming and deleting a model version from its row in the Detectors panel (managers): an inline name editor and an
// in-page confirmation. The state lives here, not in the DOM, so a reload of the list (a training ending) keeps an
// edit that is under way; controls carry data-focus keys so the panel can put the focus back after a redraw.
import { deleteJson, errorText, patchJson } from "../api";
import { el } from "../dom";
import type { ModelVersion } from "./detector-facts";

export interface ManageHooks {
  /** The server's version after a rename. */
  renamed(v: ModelVersion): void;
  /** The version is gone from the server. */
  deleted(v: ModelVersion): void;
  /** Draw the version's rows again, then focus the control with this data-focus key. */
  redraw(versionId: number, focus: string): void;
}

interface Edit {
  id: number;
  draft: string;
  error: string;
  busy: boolean;
}

function button(text: string, cls: string, name: string, focus: string): HTMLButtonElement {
  const b = el("button", `btn btn-small ${cls}`, text);
  b.type = "button";
  if (name) b.setAttribute("aria-label", name);
  b.dataset.focus = focus;
  return b;
}

function errorLine(text: string, id: string): HTMLElement {
  const p = el("p", "error small detector-manage-error", text);
  p.id = id;
  p.setAttribute("role", "alert");
  p.hidden = !text;
  return p;
}

export class VersionManager {
  private renaming: Edit | null = null;
  private deleting: Edit | null = null;

  constructor(private readonly hooks: ManageHooks) {}

  /** Forget edits of versions no longer listed. */
  keepOnly(ids: number[]): void {
    if (this.renaming && !ids.includes(this.renaming.id)) this.renaming = null;
    if (this.deleting && !ids.includes(this.deleting.id)) this.deleting = null;
  }

  /** What the version cell shows: the label, or the rename form while the version is being renamed. */
  label(v: ModelVersion): HTMLElement {
    const edit = this.renaming?.id === v.id ? this.renaming : null;
    return edit ? this.renameForm(v, edit) : el("strong", "detector-label", v.label);
  }

  /** The row's Rename and Delete buttons (Rename is hidden, its place kept, while its form is open). */
  buttons(v: ModelVersion): HTMLElement {
    const box = el("div", "detector-manage");
    const rename = button("Rename", "detector-rename", `Rename ${v.label}`, `rename-${v.id}`);
    rename.classList.toggle("is-editing", this.renaming?.id === v.id);
    rename.addEventListener("click", () => {
      const previous = this.renaming?.id;
      this.renaming = { id: v.id, draft: v.name, error: "", busy: false };
      if (previous !== undefined && previous !== v.id) this.hooks.redraw(previous, "");
      this.hooks.redraw(v.id, `rename-input-${v.id}`);
    });
    const remove = button("Delete", "danger-outline detector-delete", `Delete ${v.label}`, `delete-${v.id}`);
    remove.setAttribute("aria-expanded", String(this.deleting?.id === v.id));
    remove.addEventListener("click", () => {
      const previous = this.deleting?.id;
      this.deleting = { id: v.id, draft: "", error: "", busy: false };
      if (previous !== undefined && previous !== v.id) this.hooks.redraw(previous, "");
      this.hooks.redraw(v.id, `delete-keep-${v.id}`); // the harmless choice first
    });
    box.append(rename, remove);
    return box;
  }

  private renameForm(v: ModelVersion, edit: Edit): HTMLFormElement {
    const form = el("form", "detector-rename-form");
    form.dataset.versionId = String(v.id);
    const input = el("input");
    input.type = "text";
    input.id = `rename-input-${v.id}`;
    input.className = "detector-rename-input";
    input.maxLength = 200;
    input.autocomplete = "off";
    input.value = edit.draft;
    input.placeholder = `v${v.number} (no name)`;
    input.setAttribute("aria-label", `New name of v${v.number}`);
    input.dataset.focus = input.id;
    input.disabled = edit.busy;
    input.addEventListener("input", () => { edit.draft = input.value; });
    const error = errorLine(edit.error, `rename-error-${v.id}`);
    if (edit.error) input.setAttribute("aria-describedby", error.id);
    const save = button(edit.busy ? "Saving…" : "Save", "primary", `Save the name of v${v.number}`,
                        `rename-save-${v.id}`);
    save.type = "submit";
    save.disabled = edit.busy;
    const cancel = button("Cancel", "", `Cancel renaming v${v.number}`, `rename-cancel-${v.id}`);
    cancel.disabled = edit.busy;
    const close = () => {
      this.renaming = null;
      this.hooks.redraw(v.id, `rename-${v.id}`);
    };
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || edit.busy) return;
      e.preventDefault();
      e.stopPropagation(); // Escape closes this editor, nothing else on the page
      close();
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.rename(v, edit);
    });
    const row = el("div", "detector-rename-row");
    row.append(input, save, cancel);
    form.append(row, error);
    return form;
  }

  private async rename(v: ModelVersion, edit: Edit): Promise<void> {
    if (edit.busy) return;
    edit.busy = true;
    edit.error = "";
    this.hooks.redraw(v.id, "");
    try {
      const fresh = await patchJson<ModelVersion>(`/api/model-versions/${v.id}/`, { name: edit.draft.trim() });
      if (this.renaming === edit) this.renaming = null;
      this.hooks.renamed(fresh);
      this.hooks.redraw(v.id, `rename-${v.id}`);
    } catch (e) {
      edit.busy = false;
      edit.error = `Could not rename ${v.label}: ${errorText(e)}`;
      this.hooks.redraw(v.id, `rename-input-${v.id}`);
    }
  }

  /** The confirmation under a version being deleted (a row across the table), or null. */
  confirmRow(v: ModelVersion, columns: number): HTMLTableRowElement | null {
    const edit = this.deleting?.id === v.id ? this.deleting : null;
    if (!edit) return null;
    const tr = el("tr", "detector-confirm");
    tr.dataset.confirmFor = String(v.id);
    const td = el("td");
    td.colSpan = columns;
    const box = el("div", "detector-confirm-box");
    box.setAttribute("role", "group");
    const question = el("span", "detector-confirm-text", `Delete ${v.label} and its unreviewed proposals?`);
    question.id = `delete-question-${v.id}`;
    box.setAttribute("aria-labelledby", question.id);
    const note = el("span", "muted small", v.is_current
      ? " Reviewed objects stay. It is the current model: scenes have none until another is made current."
      : " Reviewed objects stay. Its weights are deleted.");
    note.id = `delete-note-${v.id}`;
    const yes = button(edit.busy ? "Deleting…" : "Delete", "danger", `Delete ${v.label} now`, `delete-confirm-${v.id}`);
    yes.setAttribute("aria-describedby", note.id);
    yes.disabled = edit.busy;
    const keep = button("Keep", "", `Keep ${v.label}`, `delete-keep-${v.id}`);
    keep.disabled = edit.busy;
    const close = () => {
      this.deleting = null;
      this.hooks.redraw(v.id, `delete-${v.id}`);
    };
    keep.addEventListener("click", close);
    yes.addEventListener("click", () => void this.remove(v, edit));
    box.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || edit.busy) return;
      e.preventDefault();
      e.stopPropagation();
      close();
    });
    const buttons = el("span", "btn-row detector-confirm-buttons");
    buttons.append(yes, keep);
    box.append(question, note, buttons, errorLine(edit.error, `delete-error-${v.id}`));
    td.append(box);
    tr.append(td);
    return tr;
  }

  private async remove(v: ModelVersion, edit: Edit): Promise<void> {
    if (edit.busy) return;
    edit.busy = true;
    edit.error = "";
    this.hooks.redraw(v.id, "");
    try {
      await deleteJson(`/api/model-versions/${v.id}/`);
      if (this.deleting === edit) this.deleting = null;
      if (this.renaming?.id === v.id) this.renaming = null;
      this.hooks.deleted(v);
    } catch (e) {
      edit.busy = false;
      edit.error = `Could not delete ${v.label}: ${errorText(e)}`;
      this.hooks.redraw(v.id, `delete-confirm-${v.id}`);
    }
  }
}
