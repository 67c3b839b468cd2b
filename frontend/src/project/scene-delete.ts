// Deleting a scene: a <dialog> that names it and says what goes with it; the scene list reloads after.
import { deleteJson, errorText, Scene } from "../api";

export function sceneDeleter(dialog: HTMLDialogElement, deleted: () => void): (scene: Scene) => void {
  const text = dialog.querySelector<HTMLElement>("#scene-delete-text")!;
  const error = dialog.querySelector<HTMLElement>("#scene-delete-error")!;
  const confirm = dialog.querySelector<HTMLButtonElement>("#scene-delete-confirm")!;
  let current: Scene | null = null;
  confirm.addEventListener("click", async (e) => {
    e.preventDefault(); // the dialog stays open until the server has answered
    if (!current) return;
    confirm.disabled = true;
    try {
      await deleteJson(`/api/scenes/${current.id}/`);
      dialog.close("deleted");
      deleted();
    } catch (err) {
      error.textContent = errorText(err);
      error.hidden = false;
    } finally {
      confirm.disabled = false;
    }
  });
  return (scene: Scene) => {
    current = scene;
    text.textContent = `Delete “${scene.name}” from this project?`;
    error.hidden = true;
    dialog.showModal();
  };
}
