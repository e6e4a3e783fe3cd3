// Timed GETs over a daemon's Unix socket, for the benches of the read paths an
// orchestrator polls (scale, api-tails).
import http from "node:http";

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function pct(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1]!;
}

/** One GET, timed to its last byte; `agent` false: a fresh connection, as vmctl makes; an agent: keep-alive. */
export function timedGet(socket: string, urlPath: string, agent: http.Agent | false): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: "GET", path: urlPath, agent }, (res) => {
      res.on("data", () => {});
      res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${urlPath}: ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** `n` timed GETs one after another, after up to 20 untimed ones: the first requests compile the route's code paths. */
export async function sampleGets(socket: string, paths: () => string, n: number, agent: http.Agent | false): Promise<number[]> {
  for (let i = 0; i < Math.min(20, n); i++) await timedGet(socket, paths(), agent);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await timedGet(socket, paths(), agent));
  return out;
}
