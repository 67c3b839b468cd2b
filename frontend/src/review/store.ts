// The review state of the detections this page has touched, keyed by id and version: what a key changes at once
// (optimistic), what the server answered, and what a rollback puts back. The map's tiles read it as overrides.
import type { DetectionStatus } from "../api";
import type { DetectionFeature } from "./api";

export interface ReviewState {
  id: number;
  version: number;
  status: DetectionStatus;
  object_class: number;
  score: number | null;
  source: string;
  /** What proposed it (search, probe, yolo; blank when drawn), its YOLO model version and what each stage scored. */
  proposer?: string;
  model_version?: number | null;
  proposer_scores?: Record<string, unknown>;
  /** Set when the detection was deleted (a drawn one); its tiles may still hold it until they reload. */
  deleted?: boolean;
}

export function stateOf(f: DetectionFeature): ReviewState {
  const p = f.properties;
  const scores = p.proposer_scores && typeof p.proposer_scores === "object" ? (p.proposer_scores as Record<string, unknown>) : {};
  return {
    id: Number(f.id), version: p.version, status: p.status, object_class: p.object_class, score: p.score, source: p.source,
    proposer: p.proposer, model_version: p.model_version, proposer_scores: scores,
  };
}

export class DetectionStore {
  private readonly items = new Map<number, ReviewState>();
  private readonly listeners: ((state: ReviewState) => void)[] = [];

  onChange(listener: (state: ReviewState) => void): void {
    this.listeners.push(listener);
  }

  get(id: number): ReviewState | undefined {
    return this.items.get(id);
  }

  /** What the server says now; an older version never replaces a newer one (answers can arrive out of order). */
  put(state: ReviewState): void {
    const known = this.items.get(state.id);
    if (known && known.version > state.version) return;
    this.items.set(state.id, { ...state });
    this.emit(this.items.get(state.id)!);
  }

  /** Change one detection at once and tell the map; answers the state before, for a rollback. */
  set(id: number, patch: Partial<ReviewState>): ReviewState | undefined {
    const before = this.items.get(id);
    if (!before) return undefined;
    const after = { ...before, ...patch };
    this.items.set(id, after);
    this.emit(after);
    return before;
  }

  /** Put back a state exactly as it was (a rollback). */
  restore(state: ReviewState): void {
    this.items.set(state.id, { ...state });
    this.emit(state);
  }

  private emit(state: ReviewState): void {
    for (const l of this.listeners) l(state);
  }
}
