// The review state of the scene's detections, keyed by id: what the keys change at once and roll back on failure.
import type { DetectionStatus } from "../api";

export interface ReviewState {
  id: number;
  version: number;
  status: DetectionStatus;
  object_class: number;
  score: number;
}

export class DetectionStore {
  private readonly items = new Map<number, ReviewState>();

  constructor(private readonly onChange: (state: ReviewState) => void) {}

  load(states: ReviewState[]): void {
    this.items.clear();
    for (const s of states) this.items.set(s.id, { ...s });
  }

  get(id: number): ReviewState | undefined {
    return this.items.get(id);
  }

  /** Change one detection and tell the map; answers the state before, for a rollback. */
  set(id: number, patch: Partial<ReviewState>): ReviewState | undefined {
    const before = this.items.get(id);
    if (!before) return undefined;
    const after = { ...before, ...patch };
    this.items.set(id, after);
    this.onChange(after);
    return before;
  }

  /** Proposed detections by score, highest first (ties by id, as the server's queue orders them). */
  proposedByScore(): ReviewState[] {
    return [...this.items.values()]
      .filter((s) => s.status === "proposed")
      .sort((a, b) => b.score - a.score || a.id - b.id);
  }

  /** The proposed detection after (or before) `id` in score order, wrapping; null when none is left. */
  neighbour(id: number | null, step: 1 | -1): ReviewState | null {
    const all = [...this.items.values()].sort((a, b) => b.score - a.score || a.id - b.id);
    const start = id === null ? -1 : all.findIndex((s) => s.id === id);
    for (let i = 1; i <= all.length; i++) {
      const index = start === -1 && step === -1 ? all.length - i : (start + step * i + all.length * all.length) % all.length;
      const s = all[index];
      if (s.status === "proposed" && s.id !== id) return s;
    }
    return null;
  }
}
