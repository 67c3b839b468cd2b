// Keyboard-first review of the selected detection: keys and card buttons run the same commands (one keymap).
import type { DetectionStatus, ObjectClass } from "../api";
import { el } from "../dom";
import { ReviewCommands } from "./commands";
import { commandFor, KEYMAP, keyLabel, ReviewCommand } from "./keymap";
import { DetectionStore, ReviewState } from "./store";
import "./review.css";

/** What the review keys need from the scene page. */
export interface ReviewHost {
  selectedId(): number | null;
  /** Select a detection (null: none) and bring it into view. */
  select(id: number | null): void;
  classes(): ObjectClass[];
  /** A detection's review state changed (at once, by the server's answer, or by a rollback). */
  changed(state: ReviewState): void;
  saved(text: string): void;
  failed(text: string): void;
}

export class ReviewKeys {
  readonly store: DetectionStore;
  private readonly commands: ReviewCommands;

  constructor(sceneId: number, private readonly host: ReviewHost, private readonly help: HTMLElement | null) {
    this.store = new DetectionStore((s) => host.changed(s));
    this.commands = new ReviewCommands(sceneId, this.store, { saved: host.saved, failed: host.failed });
    this.fillHelp();
  }

  load(states: { id: number; version: number; status: DetectionStatus; object_class: number; score: number }[]): void {
    this.store.load(states);
  }

  /** Run the key's command; true when the key was one of ours. */
  handle(e: KeyboardEvent): boolean {
    const command = commandFor(e);
    if (!command) return false;
    const onSelected = command.kind === "accept" || command.kind === "reject" || command.kind === "relabel";
    if (onSelected && this.host.selectedId() === null) return false;
    e.preventDefault();
    this.run(command);
    return true;
  }

  run(command: ReviewCommand): void {
    const id = this.host.selectedId();
    switch (command.kind) {
      case "help":
        if (this.help) this.help.hidden = !this.help.hidden;
        return;
      case "next":
      case "previous":
        this.host.select(this.store.neighbour(id, command.kind === "next" ? 1 : -1)?.id ?? id);
        return;
      case "undo":
        void this.commands.undo();
        return;
    }
    if (id === null) return;
    if (command.kind === "relabel") {
      const cls = this.host.classes()[command.classIndex];
      if (!cls) return this.host.failed(`There is no class ${command.classIndex + 1} in this project.`);
      if (cls.id !== this.store.get(id)?.object_class) void this.commands.relabel(id, cls.id, cls.name);
      return;
    }
    // The next proposal is shown at once; the decision saves behind it.
    const next = this.store.neighbour(id, 1);
    void this.commands.review(id, command.kind);
    this.host.select(next?.id ?? id);
  }

  /** The card's buttons: one per command of the keymap, each showing its key. */
  buttons(): HTMLElement {
    const row = el("div", "review-actions");
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Review");
    const classes = this.host.classes();
    for (const binding of KEYMAP) {
      const { command } = binding;
      let label = binding.label;
      if (command.kind === "relabel") {
        const cls = classes[command.classIndex];
        if (!cls) continue;
        label = cls.name;
      }
      const button = el("button", `btn btn-small review-cmd review-cmd-${command.kind}`);
      button.type = "button";
      button.dataset.command = command.kind === "relabel" ? `class-${command.classIndex + 1}` : command.kind;
      button.title = `${binding.label} (${binding.keys.map(keyLabel).join(" / ")})`;
      button.append(el("kbd", "", keyLabel(binding.keys[0])), document.createTextNode(label));
      button.addEventListener("click", () => this.run(command));
      row.append(button);
    }
    return row;
  }

  private fillHelp(): void {
    const list = this.help?.querySelector("dl");
    if (!this.help || !list) return;
    list.replaceChildren(
      ...KEYMAP.flatMap((b) => {
        const keys = el("dt");
        keys.append(...b.keys.map((k) => el("kbd", "", keyLabel(k))));
        return [keys, el("dd", "", b.label)];
      }),
    );
    this.help.querySelector("button")?.addEventListener("click", () => (this.help!.hidden = true));
  }
}
