// The per-VM families written straight as Prometheus text (format 0.0.4), built
// afresh at each scrape. With 200 VMs a scrape has thousands of per-VM series;
// setting each through a client library's labelled metric (a label hash, a map
// entry, an object per series, all reset and refilled every time) cost more CPU and
// garbage than the scrape's reading did. The daemon's own figures, few and long-lived,
// stay in prom-client's registry (metric-hooks.ts).

export type MetricType = "gauge" | "counter";

/** One family: its name, help and type, and its samples as label sets with values. */
export class MetricFamily {
  private readonly lines: string[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
  ) {}

  add(labels: Record<string, string>, value: number): void {
    let set = "";
    for (const key in labels) set += `${set ? "," : ""}${key}="${escapeLabelValue(labels[key]!)}"`;
    this.lines.push(`${this.name}{${set}} ${formatValue(value)}`);
  }

  /** HELP and TYPE even without samples, as a scraper expects of a family it knows. */
  text(): string {
    const head = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    return this.lines.length === 0 ? head : `${head}${this.lines.join("\n")}\n`;
  }
}

/** A label value: backslash, double quote and line feed escaped, as the text format requires. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
