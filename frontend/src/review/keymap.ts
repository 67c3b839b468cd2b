// The one table of review keys: each key's command and its label (the help overlay and the card buttons read it).

export type ReviewCommand =
  | { kind: "accept" }
  | { kind: "reject" }
  | { kind: "rejectWithComment" }
  | { kind: "relabel"; classIndex: number }
  | { kind: "edit" }
  | { kind: "refine" }
  | { kind: "drawMissed" }
  | { kind: "deleteManual" }
  | { kind: "undo" }
  | { kind: "next" }
  | { kind: "previous" }
  | { kind: "zoomScene" }
  | { kind: "updateProposals" }
  | { kind: "help" };

export interface KeyBinding {
  /** Key values as KeyboardEvent.key gives them, lower-cased letters; "R" (capital) means Shift+R. */
  keys: string[];
  label: string;
  command: ReviewCommand;
  /** Acts on the selected detection (shown on its card). */
  onSelected?: boolean;
}

export const CLASS_KEYS = 9;

export const KEYMAP: readonly KeyBinding[] = [
  { keys: ["a"], label: "Accept", command: { kind: "accept" }, onSelected: true },
  { keys: ["r"], label: "Reject", command: { kind: "reject" }, onSelected: true },
  { keys: ["R"], label: "Reject with a comment", command: { kind: "rejectWithComment" }, onSelected: true },
  ...Array.from({ length: CLASS_KEYS }, (_, i) => ({
    keys: [String(i + 1)],
    label: `Set class ${i + 1}`,
    command: { kind: "relabel", classIndex: i } as ReviewCommand,
    onSelected: true,
  })),
  { keys: ["e"], label: "Edit shape (Enter saves, Esc cancels)", command: { kind: "edit" }, onSelected: true },
  { keys: ["s"], label: "Refine this box with SAM2", command: { kind: "refine" }, onSelected: true },
  { keys: ["x"], label: "Delete (drawn detections and examples)", command: { kind: "deleteManual" }, onSelected: true },
  { keys: ["d"], label: "Draw a missed object", command: { kind: "drawMissed" } },
  { keys: ["u"], label: "Undo my last decision", command: { kind: "undo" } },
  { keys: ["n", "ArrowRight"], label: "Next proposed", command: { kind: "next" } },
  { keys: ["p", "ArrowLeft"], label: "Previous proposed", command: { kind: "previous" } },
  { keys: ["z"], label: "Zoom to the scene", command: { kind: "zoomScene" } },
  { keys: ["g"], label: "Update proposals from the decisions", command: { kind: "updateProposals" } },
  { keys: ["?"], label: "Show / hide these keys", command: { kind: "help" } },
];

/** Whether a key press was typed into a field (such keys are never commands). */
export function inField(e: KeyboardEvent): boolean {
  const target = e.target as HTMLElement | null;
  return Boolean(target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)));
}

/** The binding of a key press, or null. */
export function bindingFor(e: KeyboardEvent): KeyBinding | null {
  if (e.ctrlKey || e.metaKey || e.altKey || inField(e)) return null;
  let key = e.key;
  if (key.length === 1 && key !== "?") key = e.shiftKey && /[a-z]/i.test(key) ? key.toUpperCase() : key.toLowerCase();
  return KEYMAP.find((b) => b.keys.includes(key)) ?? null;
}

/** How a key is written on a button or in the help ("ArrowRight" as an arrow, "R" as Shift+R). */
export function keyLabel(key: string): string {
  if (/^[A-Z]$/.test(key)) return `⇧${key}`;
  return { ArrowRight: "→", ArrowLeft: "←" }[key] ?? key.toUpperCase();
}
