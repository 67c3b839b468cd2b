// Project page: a manager renames the project or edits its description (PATCH /api/projects/{id}/).
import { errorText, patchJson } from "../api";

/** Wire the settings form; on success the page reloads so the title, crumbs and header agree. */
export function setupProjectSettings(projectId: number, form: HTMLFormElement | null, error: HTMLElement | null): void {
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button[type=submit]") as HTMLButtonElement;
    button.disabled = true;
    if (error) error.hidden = true;
    try {
      await patchJson(`/api/projects/${projectId}/`, {
        name: String(data.get("name") ?? "").trim(),
        description: String(data.get("description") ?? "").trim(),
      });
      window.location.reload();
    } catch (err) {
      if (error) {
        error.textContent = `Not saved: ${errorText(err)}`;
        error.hidden = false;
      }
      button.disabled = false;
    }
  });
}
