// Small typed client for the REST API: session cookie + CSRF header, one error shape.

export interface ApiErrorBody {
  error: { code: string; message: string; detail: unknown };
}

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string, public detail: unknown) {
    super(message);
  }
}

export interface Job {
  id: number;
  kind: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  message: string;
  error: string;
  scene: number | null;
}

export interface Scene {
  id: number;
  name: string;
  original_name: string;
  status: "uploaded" | "processing" | "ready" | "failed";
  error: string;
  footprint: { type: "Polygon"; coordinates: number[][][] } | null;
  width: number | null;
  height: number | null;
  band_count: number | null;
  dtype: string;
  gsd_m: number | null;
  min_zoom: number | null;
  max_zoom: number | null;
  tile_url: string | null;
  thumbnail_url: string | null;
  created_at: string;
}

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
