// The page's one confirmation dialog (its keys do not reach the review keys while it is open).

/** Ask `text` in `dialog` (window.confirm when the page has none); true when the answer is yes. */
export function confirmInDialog(dialog: HTMLDialogElement | null, text: string): Promise<boolean> {
  if (!dialog) return Promise.resolve(window.confirm(text));
  dialog.querySelector(".confirm-text")!.textContent = text;
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    dialog.querySelector<HTMLButtonElement>("button[value=yes]")?.focus();
  });
}
