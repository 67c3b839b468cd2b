// What the Detectors panel reads from a model version (its JSON fields are untyped in the schema) and how it writes it.
import type { components } from "../api-schema";
import type { EpochReport } from "./detector-chart";

export type ModelVersion = components["schemas"]["ModelVersion"];

export interface VersionFacts {
  metrics: Record<string, number | null | undefined>;
  params: { base_model?: string; epochs?: number; imgsz?: number; batch?: number; patience?: number };
  history: EpochReport[];
  objects: number | null;
  datasetName: string;
}

function record(value: unknown): Record<string, unknown> {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

export function facts(v: ModelVersion): VersionFacts {
  const dataset = record(v.dataset);
  const counts = record(dataset.counts);
  const parameters = record(dataset.parameters);
  return {
    metrics: record(v.metrics) as VersionFacts["metrics"],
    params: record(v.params) as VersionFacts["params"],
    history: Array.isArray(v.history) ? (v.history as EpochReport[]) : [],
    objects: typeof counts.objects_written === "number" ? counts.objects_written : null,
    datasetName: typeof parameters.name === "string" && parameters.name ? parameters.name : "accepted set",
  };
}

export function figure(value: unknown, digits = 3): string {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** "7 of 50" with why it ended before its last epoch: cancelled (the best weights kept) or no gain (patience). */
export function epochsText(v: ModelVersion): string {
  const f = facts(v);
  const run = f.history.length;
  const planned = f.params.epochs ?? run;
  if (v.stopped_early) return `${run} of ${planned} · stopped early`;
  if (run < planned) return `${run} of ${planned} · no gain for ${f.params.patience ?? "?"}`;
  return `${run} of ${planned}`;
}

export function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** The metrics a version is judged by, with the column titles the table and the comparison share. */
export const METRICS: [string, string][] = [
  ["map50", "mAP50"], ["map50_95", "mAP50-95"], ["precision", "Precision"], ["recall", "Recall"],
];
