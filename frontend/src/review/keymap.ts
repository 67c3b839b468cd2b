// The one table of review keys: each key's command and its label (the help overlay and the card buttons read it).

export type ReviewCommand =
  | { kind: "accept" }
  | { kind: "reject" }
  | { kind: "relabel"; classIndex: number }
  | { kind: "undo" }
  | { kind: "next" }
  | { kind: "previous" }
  | { kind: "help" };

export interface KeyBinding {
  keys: string[];
  label: string;
  command: ReviewCommand;
}

export const KEYMAP: readonly KeyBinding[] = [
  { keys: ["a"], label: "Accept", command: { kind: "accept" } },
  { keys: ["r"], label: "Reject", command: { kind: "reject" } },
  ...Array.from({ length: 9 }, (_, i) => ({
    keys: [String(i + 1)],
    label: `Set class ${i + 1}`,
    command: { kind: "relabel", classIndex: i } as ReviewCommand,
  })),
  { keys: ["u"], label: "Undo my last decision", command: { kind: "undo" } },
  { keys: ["n", "ArrowRight"], label: "Next proposed", command: { kind: "next" } },
  { keys: ["p", "ArrowLeft"], label: "Previous proposed", command: { kind: "previous" } },
  { keys: ["?"], label: "Show / hide these keys", command: { kind: "help" } },
];

/** The command bound to a key press, or null (keys typed into a field never count). */
export function commandFor(e: KeyboardEvent): ReviewCommand | null {
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  const target = e.target as HTMLElement | null;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return null;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  return KEYMAP.find((b) => b.keys.includes(key))?.command ?? null;
}

/** How a key is written on a button or in the help ("ArrowRight" as an arrow). */
export function keyLabel(key: string): string {
  return { ArrowRight: "→", ArrowLeft: "←" }[key] ?? key.toUpperCase();
}
