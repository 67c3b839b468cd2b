// Small typed client for the REST API: session cookie + CSRF header, one error shape.
import type { components } from "./api-schema";

export interface ApiErrorBody {
  error: { code: string; message: string; detail: unknown };
}

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string, public detail: unknown) {
    super(message);
  }
}

// Response types come from the OpenAPI schema (src/api-schema.d.ts, written by `npm run api-types`;
// tests/test_api_types.py fails when it is stale), so a server change that breaks the page fails the typecheck.
type Schemas = components["schemas"];

export type JobStatus = Schemas["JobStatusEnum"];
/** A job; `stalled` is a running job whose worker stopped reporting. */
export type Job = Schemas["Job"];

export const FINISHED_JOB_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

// One schema component serves the POST body too, where `color` may be left out; an answer always has it.
export type ObjectClass = Required<Schemas["ObjectClass"]>;

/** A GeoJSON Feature as the API writes it (geometry in EPSG:4326). */
export interface ApiFeature<P> {
  type: "Feature";
  id: number;
  geometry: { type: string; coordinates: unknown };
  properties: P;
}

/** A page of GeoJSON features (annotations, detections). */
export interface FeaturePage<P> {
  type: "FeatureCollection";
  count: number;
  next: string | null;
  previous: string | null;
  features: ApiFeature<P>[];
}

export type AnnotationFeature = Schemas["Annotation"];
export type AnnotationProps = AnnotationFeature["properties"];

export type DetectionStatus = Schemas["DetectionStatusEnum"];
export type DetectionFeature = Schemas["Detection"];
export type DetectionProps = DetectionFeature["properties"];
export type DetectionPage = Schemas["PaginatedDetectionList"];

export type Scene = Schemas["Scene"];

/** A review event (one change of a detection), as decisions, undo and the event lists answer it. */
export type ReviewEvent = Schemas["ReviewEvent"];
/** What a decision answers: its events and the detection now (null once deleted). */
export type DecisionOutput = Schemas["DecisionOutput"];
export type UndoOutput = Schemas["UndoOutput"];
export type BulkOutput = Schemas["BulkOutput"];
/** The review queue's answer: `detections` is a FeatureCollection. */
export type QueueOutput = Schemas["QueueOutput"];
export type EventsPage = Schemas["EventsPage"];
export type ProgressOutput = Schemas["ProgressOutput"];
export type ScoreHistogram = Schemas["ScoreHistogram"];

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export function csrfToken(): string {
  const input = document.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function parse<T>(response: Response): Promise<T> {
  if (response.status === 204) return null as T;
  if (response.ok) return (await response.json()) as T;
  let body: ApiErrorBody | null = null;
  try {
    body = (await response.json()) as ApiErrorBody;
  } catch {
    /* not JSON: fall through to a generic message */
  }
  const err = body?.error;
  throw new ApiError(response.status, err?.code ?? "http_error", err?.message ?? `HTTP ${response.status}`, err?.detail);
}

export async function getJson<T>(url: string): Promise<T> {
  return parse<T>(await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
}

/** A write with a JSON body (session cookie + CSRF header); the answer's JSON (null for 204), or an ApiError. */
async function sendJson<T>(method: "POST" | "PATCH" | "DELETE", url: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached; check the connection and try again.", null);
  }
  return parse<T>(response);
}

export function postJson<T>(url: string, body: unknown = {}): Promise<T> {
  return sendJson<T>("POST", url, body);
}

export function patchJson<T>(url: string, body: unknown): Promise<T> {
  return sendJson<T>("PATCH", url, body);
}

export function deleteJson<T>(url: string): Promise<T> {
  return sendJson<T>("DELETE", url);
}

/** A readable one-liner for an error from the API (message plus field details, when there are any). */
export function errorText(error: unknown): string {
  if (!(error instanceof ApiError)) return error instanceof Error ? error.message : String(error);
  const detail = flattenDetail(error.detail);
  // Validation messages often carry their field details already: say them once.
  return detail && !error.message.includes(detail) ? `${error.message} ${detail}` : error.message;
}

function flattenDetail(detail: unknown, prefix = ""): string {
  if (detail == null || detail === "") return "";
  if (typeof detail === "string" || typeof detail === "number") return prefix ? `${prefix}: ${detail}` : String(detail);
  if (Array.isArray(detail)) return detail.map((d) => flattenDetail(d, prefix)).filter(Boolean).join("; ");
  if (typeof detail === "object") {
    return Object.entries(detail as Record<string, unknown>)
      .map(([key, value]) => flattenDetail(value, key === "non_field_errors" ? prefix : key))
      .filter(Boolean)
      .join("; ");
  }
  return "";
}

/** POST a multipart form with upload progress (fetch cannot report upload progress). */
export function postForm<T>(url: string, form: FormData, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      const response = new Response(xhr.responseText, { status: xhr.status });
      parse<T>(response).then(resolve, reject);
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was interrupted; check the connection and try again.", null));
    xhr.send(form);
  });
}
