// Scene display: the scene's warnings (fill values, unmasked collars) for everyone, and for managers the fill
// value (nodata) and per-channel stretch, saved through PATCH /api/scenes/{id}/display/ without a re-upload.
import type XYZ from "ol/source/XYZ";
import { ApiError, csrfToken, errorText, getJson, Scene } from "./api";
import { el } from "./dom";
import "./scene-display.css";

/** GET/PATCH /api/scenes/{id}/display/. */
export interface SceneDisplay {
  id: number;
  dtype: string;
  band_count: number;
  rgb_bands: number[];
  nodata: number | null;
  stretch: number[][];
  stretch_auto: number[][] | null;
  stretch_is_custom: boolean;
  warnings: { code: string; message: string }[];
  /** [west, south, east, north] in degrees; east > 180 for a scene across the antimeridian. */
  extent: number[] | null;
  updated_at: string;
}

type Footprint = { type: string; coordinates: unknown } | null;

/**
 * The footprint's real lon/lat extent. A MultiPolygon split at 180 degrees (a scene across the antimeridian)
 * would otherwise span the whole world; its parts west of -180 + epsilon continue the eastern ones past 180.
 */
export function footprintExtentLonLat(footprint: Footprint): number[] | null {
  if (!footprint) return null;
  const polygons = (footprint.type === "MultiPolygon" ? footprint.coordinates : [footprint.coordinates]) as number[][][][];
  const boxes = polygons.map((rings) => {
    const lons = rings[0].map((p) => p[0]);
    const lats = rings[0].map((p) => p[1]);
    return [Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)];
  });
  const touchesWest = boxes.some((b) => b[0] <= -180 + 1e-9);
  const touchesEast = boxes.some((b) => b[2] >= 180 - 1e-9);
  const shifted = touchesWest && touchesEast ? boxes.map((b) => (b[0] <= -180 + 1e-9 ? [b[0] + 360, b[1], b[2] + 360, b[3]] : b)) : boxes;
  return [
    Math.min(...shifted.map((b) => b[0])),
    Math.min(...shifted.map((b) => b[1])),
    Math.max(...shifted.map((b) => b[2])),
    Math.max(...shifted.map((b) => b[3])),
  ];
}

async function patchDisplay(sceneId: number, body: unknown): Promise<SceneDisplay> {
  const response = await fetch(`/api/scenes/${sceneId}/display/`, {
    method: "PATCH",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const err = data?.error;
    throw new ApiError(response.status, err?.code ?? "http_error", err?.message ?? `HTTP ${response.status}`, err?.detail);
  }
  return data as SceneDisplay;
}

function renderWarnings(box: HTMLElement, display: SceneDisplay): void {
  box.hidden = display.warnings.length === 0;
  box.replaceChildren(
    ...display.warnings.map((w) => {
      const p = el("p");
      p.dataset.code = w.code;
      // Commands are written between backticks; show them as code, the rest as text (never as HTML).
      w.message.split("`").forEach((part, i) => p.append(i % 2 ? el("code", "", part) : document.createTextNode(part)));
      return p;
    }),
  );
}

const CHANNELS = ["Red", "Green", "Blue"];

function numberInput(name: string, value: number | null, label: string): HTMLInputElement {
  const input = el("input");
  input.type = "number";
  input.step = "any";
  input.name = name;
  input.setAttribute("aria-label", label);
  input.value = value == null ? "" : String(value);
  return input;
}

/** Put the warnings and (for managers) the display form into the sidebar; new settings reload the tiles. */
export async function setupSceneDisplay(scene: Scene, imagery: XYZ | null, sidebar: HTMLElement, isManager: boolean) {
  const warnings = el("div", "scene-warnings");
  warnings.id = "scene-warnings";
  warnings.setAttribute("role", "status");
  warnings.hidden = true;
  const anchor = sidebar.querySelector(".scene-facts") ?? sidebar.firstElementChild;
  anchor?.after(warnings);
  let display: SceneDisplay;
  try {
    display = await getJson<SceneDisplay>(`/api/scenes/${scene.id}/display/`);
  } catch {
    return; // the page works without it; the tiles use the stored settings
  }
  renderWarnings(warnings, display);
  if (!isManager || !scene.tile_url) return;

  const details = el("details", "scene-display");
  details.id = "scene-display";
  const form = el("form");
  const nodata = numberInput("nodata", display.nodata, "No-data value");
  const nodataRow = el("label", "display-row");
  nodataRow.append(el("span", "", "No data"), nodata, el("span", "hint", "shown transparent"));
  form.append(nodataRow);
  const ranges: [HTMLInputElement, HTMLInputElement][] = [];
  const fill = (d: SceneDisplay) => {
    nodata.value = d.nodata == null ? "" : String(d.nodata);
    // Six significant digits: enough for any display range, short enough to read and edit.
    d.rgb_bands.forEach((band, i) => {
      ranges[i][0].value = String(Number(d.stretch[band - 1][0].toPrecision(6)));
      ranges[i][1].value = String(Number(d.stretch[band - 1][1].toPrecision(6)));
    });
  };
  display.rgb_bands.forEach((band, i) => {
    const row = el("div", "display-row");
    const low = numberInput(`low-${i}`, null, `${CHANNELS[i]} (band ${band}) low`);
    const high = numberInput(`high-${i}`, null, `${CHANNELS[i]} (band ${band}) high`);
    ranges.push([low, high]);
    row.append(el("span", "", `${CHANNELS[i]} (b${band})`), low, high);
    form.append(row);
  });
  fill(display);
  const error = el("p", "alert");
  error.hidden = true;
  const save = el("button", "btn primary", "Apply");
  save.type = "submit";
  const reset = el("button", "btn", "Automatic stretch");
  reset.type = "button";
  const buttons = el("div", "btn-row");
  buttons.append(save, reset);
  form.append(buttons, error);
  details.append(el("summary", "", "Display: no data and stretch"), form);
  warnings.after(details);

  const apply = async (body: Record<string, unknown>) => {
    error.hidden = true;
    save.disabled = reset.disabled = true;
    try {
      display = await patchDisplay(scene.id, body);
      fill(display);
      renderWarnings(warnings, display);
      // The tiles' ETags changed; a new URL also skips what the browser cached for TILE_CACHE_SECONDS.
      imagery?.setUrl(`${scene.tile_url}?v=${encodeURIComponent(display.updated_at)}`);
      details.dataset.saved = display.updated_at;
    } catch (e) {
      // The API's message already names the field and what to do.
      error.textContent = e instanceof ApiError ? e.message : errorText(e);
      error.hidden = false;
    } finally {
      save.disabled = reset.disabled = false;
    }
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const stretch = display.stretch.map((pair) => [...pair]);
    display.rgb_bands.forEach((band, i) => {
      stretch[band - 1] = [Number(ranges[i][0].value), Number(ranges[i][1].value)];
    });
    const body: Record<string, unknown> = { nodata: nodata.value.trim() === "" ? null : Number(nodata.value) };
    const shown = (v: number) => Number(v.toPrecision(6));
    const changed = display.rgb_bands.some((band) => {
      const [now, was] = [stretch[band - 1], display.stretch[band - 1]];
      return now[0] !== shown(was[0]) || now[1] !== shown(was[1]);
    });
    if (changed) body.stretch = stretch;
    void apply(body);
  });
  reset.addEventListener("click", () => void apply({ stretch: null }));
}
