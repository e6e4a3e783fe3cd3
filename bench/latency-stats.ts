// Order statistics over a handful of samples, and the fixed-width table the
// bench prints. Medians rather than means: one slow run (a page-cache miss, a
// scheduler hiccup) should not move the headline figure.

export interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile (p in 0..100) of already sorted samples. */
function percentile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

export function summarize(samples: number[]): Summary | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, median, p90: percentile(sorted, 90), min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export interface Row {
  label: string;
  samples: number[];
  /** Printed instead of figures when the row has no samples. */
  note?: string;
}

export function formatTable(rows: Row[]): string {
  const width = Math.max(...rows.map((r) => r.label.length), 10);
  const head = `${"".padEnd(width)}  ${["n", "median", "p90", "min", "max"].map((h, i) => h.padStart(i ? 9 : 3)).join("")}`;
  const lines = rows.map((r) => {
    const s = summarize(r.samples);
    if (!s) return `${r.label.padEnd(width)}  ${r.note ?? "no samples"}`;
    const ms = [s.median, s.p90, s.min, s.max].map((v) => `${v.toFixed(1)}`.padStart(9)).join("");
    return `${r.label.padEnd(width)}  ${String(s.n).padStart(3)}${ms}`;
  });
  return [head + "   (ms)", ...lines].join("\n");
}

/** "2.31x" of the two medians, or a dash when either side has no samples. */
export function medianRatio(over: number[], under: number[]): string {
  const a = summarize(over);
  const b = summarize(under);
  return a && b ? `${(a.median / b.median).toFixed(2)}x` : "-";
}
