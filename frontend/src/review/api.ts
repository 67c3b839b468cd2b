// The review endpoints the workspace calls, with the shapes they answer (see review/serializers.py).
import { ApiError, ApiFeature, csrfToken, DetectionProps, DetectionStatus, getJson } from "../api";

export type DetectionFeature = ApiFeature<DetectionProps & { reviewer?: number | null; reviewed_at?: string | null }>;

export interface ReviewEventOut {
  id: number;
  detection: number | null;
  verb: string;
  actor_name: string | null;
  created_at: string;
  status_before: DetectionStatus | null;
  status_after: DetectionStatus | null;
  class_before: number | null;
  class_after: number | null;
  version_after: number;
  comment: string;
  batch_id: string | null;
}

export interface DecisionOut {
  events: ReviewEventOut[];
  detection: DetectionFeature | null;
}

export interface ClassProgress {
  object_class: number;
  class_name: string;
  proposed: number;
  accepted: number;
  rejected: number;
}

export interface ProgressOut {
  scene: number;
  total: number;
  by_status: Record<DetectionStatus, number>;
  by_class: ClassProgress[];
  mine: Record<string, number>;
}

export interface HistogramOut {
  bins: number;
  classes: { object_class: number; class_name: string; proposed: number[]; accepted: number; rejected: number }[];
}

export type QueueOrder = "score" | "uncertainty" | "spatial";

/** A fresh id for one user intent: a retried request with it creates no second event. */
export function clientId(): string {
  return crypto.randomUUID();
}

/** The features of a queue or list answer (a FeatureCollection or a plain list of features). */
export function featuresOf(data: unknown): DetectionFeature[] {
  if (Array.isArray(data)) return data as DetectionFeature[];
  const fc = data as { features?: DetectionFeature[] } | null;
  return fc?.features ?? [];
}

export function getDetection(id: number): Promise<DetectionFeature> {
  return getJson<DetectionFeature>(`/api/detections/${id}/`);
}

export async function queuePage(
  sceneId: number, order: QueueOrder, after: number | null, direction: "next" | "previous", limit: number,
): Promise<DetectionFeature[]> {
  const q = new URLSearchParams({ order, direction, limit: String(limit) });
  if (after !== null) q.set("after", String(after));
  const out = await getJson<{ detections: unknown }>(`/api/scenes/${sceneId}/review-queue/?${q}`);
  return featuresOf(out.detections);
}

export function detectionEvents(id: number): Promise<{ events: ReviewEventOut[] }> {
  return getJson(`/api/detections/${id}/events/?limit=100`);
}

export function reviewProgress(sceneId: number): Promise<ProgressOut> {
  return getJson(`/api/scenes/${sceneId}/review-progress/`);
}

export function scoreHistogram(sceneId: number): Promise<HistogramOut> {
  return getJson(`/api/scenes/${sceneId}/score-histogram/`);
}

/** DELETE with a JSON answer (the manual-detection delete takes its version and client id as query parameters). */
export async function deleteJson<T>(url: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached; check the connection and try again.", null);
  }
  if (response.status === 204) return null as T;
  const body = await response.json().catch(() => null);
  if (response.ok) return body as T;
  const err = body?.error;
  throw new ApiError(response.status, err?.code ?? "http_error", err?.message ?? `HTTP ${response.status}`, err?.detail);
}

/** PATCH a JSON body; the answer's JSON, or an ApiError. */
export async function patchJson<T>(url: string, body: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached; check the connection and try again.", null);
  }
  const data = await response.json().catch(() => null);
  if (response.ok) return data as T;
  const err = data?.error;
  throw new ApiError(response.status, err?.code ?? "http_error", err?.message ?? `HTTP ${response.status}`, err?.detail);
}
