// Home page: create a project (name, description, starting classes) and open it.
import { errorText, postJson } from "../api";
import type { components } from "../api-schema";

type ProjectCreate = Pick<
  components["schemas"]["ProjectCreateInput"], "name" | "description" | "starting_classes" | "copy_from"
>;
type Project = components["schemas"]["Project"];

export function setupProjectCreate(form: HTMLFormElement): void {
  const error = form.querySelector<HTMLElement>("#project-create-error")!;
  const copyFrom = form.querySelector<HTMLSelectElement>("#copy-from");
  // Choosing a project to copy from means copying: the radio follows the select.
  copyFrom?.addEventListener("change", () => {
    form.querySelector<HTMLInputElement>("input[name=starting_classes][value=copy]")!.checked = true;
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const name = String(data.get("name") ?? "").trim();
    if (!name) {
      error.textContent = "Give the project a name.";
      error.hidden = false;
      form.querySelector<HTMLInputElement>("#project-name")!.focus();
      return;
    }
    const starting = String(data.get("starting_classes")) as ProjectCreate["starting_classes"];
    const body: ProjectCreate = { name, description: String(data.get("description") ?? ""), starting_classes: starting };
    if (starting === "copy" && copyFrom) body.copy_from = Number(copyFrom.value);
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]")!;
    button.disabled = true;
    try {
      const project = await postJson<Project>("/api/projects/", body);
      window.location.href = `/projects/${project.id}/`;
    } catch (err) {
      error.textContent = errorText(err);
      error.hidden = false;
      button.disabled = false;
    }
  });
}
