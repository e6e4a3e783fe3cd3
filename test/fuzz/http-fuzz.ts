// Property-based fuzzing of the HTTP API: fast-check generates malformed
// requests for every endpoint the daemon's own OpenAPI document lists (so a new
// endpoint is covered without edits), sends them as raw bytes over the Unix
// socket and over TCP (right token, wrong token, none), and checks that nothing
// is ever a 5xx, that the daemon keeps answering, and that its state directory
// does not change. Every request is malformed on purpose: a wrong type, an
// unknown field, a path outside the pools, a bad name, bad bytes, so none may
// legitimately change anything.
import fc from "fast-check";
import net from "node:net";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../../src/net/free-port.js";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { stateDigest } from "../helpers/state-digest.js";

export const FUZZ_TOKEN = "fuzz-token-0123456789abcdef";
/** The VM every request may aim at: defined, stopped, with a disk. */
export const FUZZ_VM = "fz";

type Transport = "unix" | "tcp-token" | "tcp-wrong-token" | "tcp-no-token";

export interface FuzzRequest {
  category: string;
  transport: Transport;
  /** The request line and headers, without Host/Content-Length/Connection (added when sent). */
  method: string;
  path: string;
  headers: [string, string][];
  body: Buffer;
  /** Body sent in this many chunks with a pause between (a slow client). */
  slowChunks?: number;
}

export interface FuzzFigures {
  requests: number;
  byCategory: Record<string, number>;
  byStatus: Record<string, number>;
  fiveHundreds: number;
  latenciesMs: number[];
  rssBeforeKiB: number;
  rssAfterKiB: number;
  durationMs: number;
}

interface Operation {
  method: string;
  template: string;
  bodyFields: string[];
}

const traversal = [
  "..",
  "../..",
  "../../etc/passwd",
  "/etc/passwd",
  "%2e%2e",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%2f..%2f",
  "%00",
  "a%00b",
  "fz/../..",
  "....//....//",
  "%252e%252e",
  "\\..\\..\\windows",
  "~root",
  "images/../../../etc/shadow",
];

const oddMethods = ["PROPFIND", "TRACE", "PATCH", "OPTIONS", "get", "Post", "MKCOL", "X".repeat(40), "GET\u0000"];

/** A path parameter: usually wrong (traversal, too long, bad characters), sometimes the real VM or a missing one. */
const paramArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...traversal) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }).map((s) => encodeURIComponent(s)) },
  { weight: 1, arbitrary: fc.constantFrom("x".repeat(300), "A-Z", "-lead", "ünïcode", "%ff%fe", "") },
  { weight: 2, arbitrary: fc.constantFrom(FUZZ_VM, "nosuchvm", "root", "0") },
);

/** A JSON value of a type a field is unlikely to take. */
const wrongValueArb = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 40 }),
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
  fc.constantFrom(...traversal),
  fc.constant(-1),
  fc.constant(2 ** 53),
  fc.constant("x".repeat(100_000)),
);

function jsonHeaders(): [string, string][] {
  return [["Content-Type", "application/json"]];
}

function fill(template: string, params: string[]): string {
  let i = 0;
  return template.replace(/\{[^}]+\}/g, () => params[i++] ?? "x");
}

/** Malformed requests of every kind, for the endpoints in `ops`. */
export function requestArb(ops: Operation[]): fc.Arbitrary<FuzzRequest> {
  const opArb = fc.constantFrom(...ops);
  const transportArb = fc.constantFrom<Transport>("unix", "unix", "tcp-token", "tcp-wrong-token", "tcp-no-token");
  const pathFor = (op: Operation): fc.Arbitrary<string> =>
    fc.array(paramArb, { minLength: 4, maxLength: 4 }).map((ps) => fill(op.template, ps));
  const queryArb = fc.oneof(
    fc.constant(""),
    fc.constantFrom("?wait=maybe", "?timeoutSec=-1", "?offset=-5", "?vm=../..", "?since=abc", "?mode=xx", "?uuid=nope", "?a=%ff"),
  );

  const withOp = <T>(f: (op: Operation) => fc.Arbitrary<T>): fc.Arbitrary<[Operation, T]> => opArb.chain((op) => f(op).map((v) => [op, v] as [Operation, T]));

  // Each body carries a field no schema has, so strict schemas refuse it whatever else it holds.
  const unknownFields = withOp((op) =>
    fc.tuple(pathFor(op), queryArb, fc.dictionary(fc.constantFrom(...op.bodyFields, "name", "image"), wrongValueArb, { maxKeys: 4 }), wrongValueArb),
  ).map(([op, [p, q, fields, extra]]) => ({
    category: "unknown-field",
    method: op.method,
    path: p + q,
    headers: jsonHeaders(),
    body: Buffer.from(JSON.stringify({ ...fields, vmhFuzzUnknown: extra })),
  }));

  // Only known fields, each of a wrong type.
  const wrongTypes = withOp((op) =>
    fc.tuple(pathFor(op), fc.constantFrom(...(op.bodyFields.length ? op.bodyFields : ["name"])), wrongValueArb),
  ).map(([op, [p, field, value]]) => ({
    category: "wrong-type",
    method: op.method,
    path: p,
    headers: jsonHeaders(),
    // An object where a field wants one, so that the value cannot coincide with a valid one.
    body: Buffer.from(JSON.stringify({ [field]: typeof value === "object" && value !== null ? value : { wrong: value } })),
  }));

  // Otherwise plausible requests whose names and paths point outside the pools.
  const traversalFields = fc
    .tuple(fc.constantFrom(...traversal), fc.integer({ min: 0, max: 7 }))
    .map(([bad, which]): Omit<FuzzRequest, "transport"> => {
      const bodies: [string, string, unknown][] = [
        ["POST", "/v1/vms", { name: "fz2", memoryMiB: 64, boot: { kernel: bad } }],
        ["POST", "/v1/vms", { name: "fz2", memoryMiB: 64, disks: [{ name: "d", image: bad }] }],
        ["POST", "/v1/vms", { name: "fz2", memoryMiB: 64, disks: [{ name: "d", backingImage: bad, sizeGiB: 1 }] }],
        ["POST", "/v1/vms", { name: "fz2", memoryMiB: 64, cdrom: { image: bad } }],
        ["POST", "/v1/vms", { name: bad, memoryMiB: 64 }],
        ["POST", `/v1/vms/${FUZZ_VM}/cdrom`, { image: bad }],
        ["POST", `/v1/vms/${FUZZ_VM}/disks`, { name: "d2", image: bad }],
        ["POST", `/v1/vms/${FUZZ_VM}/disks/root/backup`, { target: bad }],
      ];
      const [method, p, body] = bodies[which]!;
      return { category: "traversal-field", method, path: p, headers: jsonHeaders(), body: Buffer.from(JSON.stringify(body)) };
    });

  const huge = withOp((op) => fc.tuple(pathFor(op), fc.integer({ min: 0, max: 2 }))).map(([op, [p, kind]]) => ({
    category: "huge-body",
    method: op.method,
    path: p,
    headers: jsonHeaders(),
    body:
      kind === 0
        ? Buffer.from(JSON.stringify({ vmhFuzzUnknown: "y".repeat(1_100_000) }))
        : kind === 1
          ? Buffer.from(JSON.stringify({ name: "z".repeat(500_000), vmhFuzzUnknown: 1 }))
          : Buffer.from(JSON.stringify({ vmhFuzzUnknown: Array.from({ length: 50_000 }, (_, i) => i) })),
  }));

  const deep = withOp((op) => fc.tuple(pathFor(op), fc.integer({ min: 1_000, max: 200_000 }), fc.boolean())).map(([op, [p, depth, arrays]]) => ({
    category: "deep-nesting",
    method: op.method,
    path: p,
    headers: jsonHeaders(),
    body: Buffer.from(arrays ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth)),
  }));

  const invalidUtf8 = withOp((op) => fc.tuple(pathFor(op), fc.uint8Array({ minLength: 1, maxLength: 200 }))).map(([op, [p, bytes]]) => ({
    category: "invalid-utf8",
    method: op.method,
    path: p,
    headers: jsonHeaders(),
    // A lone continuation byte makes it invalid UTF-8 whatever the rest is.
    body: Buffer.concat([Buffer.from('{"name":"'), Buffer.from(bytes), Buffer.from([0x80, 0xff]), Buffer.from('"}')]),
  }));

  // Anything that JSON.parse accepts is out: `null` would read as "no body".
  const badJson = withOp((op) =>
    fc.tuple(
      pathFor(op),
      fc.oneof(
        fc.string({ maxLength: 60 }),
        fc.constantFrom("{", "{\"name\":", "[1,2", "{'a':1}", "{\"a\":1,}", "nul", "tru", "{\"a\" 1}", "\u0000", "{\"a\":\"\\x\"}", "1e999999x"),
      ),
    ),
  )
    .filter(([, [, text]]) => {
      try {
        JSON.parse(text);
        return false;
      } catch {
        return true;
      }
    })
    .map(([op, [p, text]]) => ({ category: "bad-json", method: op.method, path: p, headers: jsonHeaders(), body: Buffer.from(text) }));

  const wrongContentType = withOp((op) =>
    fc.tuple(pathFor(op), fc.constantFrom("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/json; charset=latin1x", "", "*/*")),
  ).map(([op, [p, type]]) => ({
    category: "content-type",
    method: op.method,
    path: p,
    headers: type ? ([["Content-Type", type]] as [string, string][]) : [],
    body: Buffer.from('{"vmhFuzzUnknown":1}'),
  }));

  // Methods the API does not use, on any path (safe methods only: no body needed to make it wrong).
  const oddMethod = withOp((op) => fc.tuple(pathFor(op), fc.constantFrom(...oddMethods))).map(([, [p, m]]) => ({
    category: "odd-method",
    method: m,
    path: p,
    headers: [] as [string, string][],
    body: Buffer.alloc(0),
  }));

  const oddPath = fc
    .tuple(
      fc.constantFrom("GET", "HEAD"),
      fc.oneof(
        fc.constantFrom(
          "//v1//vms",
          "/v1/vms/%2F..%2F..",
          `/v1/vms/${FUZZ_VM}/../../../etc/passwd`,
          "/v1/../../etc/passwd",
          "/v1/vms/fz%00/console/log",
          "/v1/vms/" + "a".repeat(5000),
          "/" + "v1/".repeat(500),
          "*",
          "http://evil.example/v1/vms",
          "/v1/vms?" + "a=b&".repeat(2000),
          "/v1/vms/fz/console/log?offset=99999999999999999999",
          "/v1/events?vm=../../x&since=-1",
          "/%",
          "/v1/vms/%zz",
        ),
        fc.webPath().map((p) => (p.startsWith("/") ? p : `/${p}`)),
      ),
    )
    .map(([m, p]) => ({ category: "odd-path", method: m, path: p, headers: [] as [string, string][], body: Buffer.alloc(0) }));

  const slow = withOp((op) => fc.tuple(pathFor(op), fc.integer({ min: 2, max: 4 }))).map(([op, [p, n]]) => ({
    category: "slow-client",
    method: op.method,
    path: p,
    headers: jsonHeaders(),
    body: Buffer.from(JSON.stringify({ vmhFuzzUnknown: "slow", name: "../x" })),
    slowChunks: n,
  }));

  return fc
    .tuple(
      fc.oneof(
        { weight: 4, arbitrary: unknownFields },
        { weight: 3, arbitrary: wrongTypes },
        { weight: 3, arbitrary: traversalFields },
        { weight: 1, arbitrary: huge },
        { weight: 1, arbitrary: deep },
        { weight: 2, arbitrary: invalidUtf8 },
        { weight: 2, arbitrary: badJson },
        { weight: 2, arbitrary: wrongContentType },
        { weight: 2, arbitrary: oddMethod },
        { weight: 2, arbitrary: oddPath },
        { weight: 1, arbitrary: slow },
      ),
      transportArb,
    )
    .map(([r, transport]) => ({ ...r, transport }));
}

interface Reply {
  status: number;
  /** The connection closed without a status line (the parser refused the request). */
  closed: boolean;
  ms: number;
}

function sendRaw(d: TestDaemon, tcpPort: number, r: FuzzRequest): Promise<Reply> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = r.transport === "unix" ? net.connect(d.socket) : net.connect(tcpPort, "127.0.0.1");
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const head = Buffer.concat(chunks).subarray(0, 64).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3}) /.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, closed: !m, ms: performance.now() - t0 });
    };
    const timer = setTimeout(done, 40_000);
    sock.on("data", (c: Buffer) => {
      chunks.push(c);
      // The status line is all we need: a streaming response (events) never ends by itself.
      if (Buffer.concat(chunks).includes("\r\n")) done();
    });
    sock.on("close", done);
    sock.on("error", done);
    sock.on("connect", async () => {
      const auth: [string, string][] =
        r.transport === "tcp-token" ? [["Authorization", `Bearer ${FUZZ_TOKEN}`]] : r.transport === "tcp-wrong-token" ? [["Authorization", "Bearer wrong-token-wrong-token"]] : [];
      const headers = [["Host", "localhost"], ...auth, ...r.headers, ["Content-Length", String(r.body.length)], ["Connection", "close"]];
      const head = Buffer.from(`${r.method} ${r.path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n`, "latin1");
      if (!r.slowChunks) {
        sock.write(Buffer.concat([head, r.body]));
        return;
      }
      sock.write(head);
      const size = Math.ceil(r.body.length / r.slowChunks);
      for (let i = 0; i < r.body.length && !settled; i += size) {
        await sleep(40);
        if (!settled) sock.write(r.body.subarray(i, i + size));
      }
    });
  });
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
}

export interface FuzzResult {
  figures: FuzzFigures;
  /** Set when a property failed: fast-check's report with the shrunk request. */
  failure?: string;
  stateUnchanged: boolean;
  samePid: boolean;
}

/** Starts a daemon, defines the target VM, sends `runs` malformed requests, and checks the daemon afterwards. */
export async function runFuzz(runs: number, seed?: number, log: (s: string) => void = () => {}): Promise<FuzzResult> {
  const port = await freePort("127.0.0.1");
  const d = await startDaemon({ args: ["--listen", `127.0.0.1:${port}`, "--peer-token", FUZZ_TOKEN] });
  try {
    await d.api.json("POST", "/v1/vms", { name: FUZZ_VM, memoryMiB: 64, disks: [{ name: "root", sizeGiB: 1 }] });
    type Schema = { $ref?: string; properties?: Record<string, unknown> };
    const openapi = await d.api.json<{ paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> } }>>; components: { schemas: Record<string, Schema> } }>(
      "GET",
      "/openapi.json",
    );
    const ops: Operation[] = [];
    for (const [template, methods] of Object.entries(openapi.paths)) {
      for (const [method, spec] of Object.entries(methods)) {
        // A body schema is a named component or written in place.
        const schema = spec.requestBody?.content?.["application/json"]?.schema;
        const ref = schema?.$ref?.split("/").pop();
        const props = Object.keys((ref ? openapi.components.schemas[ref] : schema)?.properties ?? {});
        ops.push({ method: method.toUpperCase(), template, bodyFields: props });
      }
    }
    log(`fuzz: ${ops.length} operations from the OpenAPI document, ${runs} requests`);
    const pid = d.proc.pid!;
    const before = await stateDigest(d.stateDir);
    const figures: FuzzFigures = {
      requests: 0,
      byCategory: {},
      byStatus: {},
      fiveHundreds: 0,
      latenciesMs: [],
      rssBeforeKiB: await rssKiB(pid),
      rssAfterKiB: 0,
      durationMs: 0,
    };
    const t0 = performance.now();
    let failure: string | undefined;
    const property = fc.asyncProperty(requestArb(ops), async (r) => {
      const reply = await sendRaw(d, port, r);
      figures.requests++;
      figures.byCategory[r.category] = (figures.byCategory[r.category] ?? 0) + 1;
      const key = reply.closed ? "closed" : String(reply.status);
      figures.byStatus[key] = (figures.byStatus[key] ?? 0) + 1;
      figures.latenciesMs.push(reply.ms);
      if (reply.status >= 500) figures.fiveHundreds++;
      if (figures.requests % 500 === 0) {
        log(`fuzz: ${figures.requests} requests, ${figures.fiveHundreds} 5xx`);
        const health = await d.api.request("GET", "/healthz");
        if (health.status !== 200) throw new Error(`the daemon stopped answering after ${figures.requests} requests`);
      }
      if (reply.status >= 500) return false;
      // Without the right token nothing over TCP may succeed.
      if ((r.transport === "tcp-no-token" || r.transport === "tcp-wrong-token") && reply.status >= 200 && reply.status < 300) return false;
      return true;
    });
    const outcome = await fc.check(property, { numRuns: runs, ...(seed !== undefined ? { seed } : {}), endOnFailure: false, interruptAfterTimeLimit: 30 * 60_000 });
    if (outcome.failed) {
      const ce = outcome.counterexample?.[0] as FuzzRequest | undefined;
      failure = `seed ${outcome.seed}: ${ce ? `${ce.category} ${ce.transport} ${ce.method} ${ce.path.slice(0, 200)} body ${ce.body.subarray(0, 300).toString("latin1")}` : String(outcome.errorInstance)}`;
    }
    figures.durationMs = performance.now() - t0;
    await sleep(1000);
    figures.rssAfterKiB = await rssKiB(pid);
    const health = await d.api.request("GET", "/v1/host");
    const after = await stateDigest(d.stateDir);
    const stateUnchanged = JSON.stringify(after) === JSON.stringify(before);
    if (!stateUnchanged) {
      const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => before[k] !== after[k]);
      failure = `${failure ?? ""} state changed: ${changed.join(", ")}`;
    }
    return { figures, failure, stateUnchanged, samePid: d.proc.pid === pid && d.proc.exitCode === null && health.status === 200 };
  } finally {
    await d.cleanup();
  }
}

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] ?? 0;
}

export function formatFigures(f: FuzzFigures): string {
  const lines = [
    `requests: ${f.requests} in ${(f.durationMs / 1000).toFixed(1)} s; 5xx: ${f.fiveHundreds}`,
    `by category: ${Object.entries(f.byCategory).sort().map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `by status: ${Object.entries(f.byStatus).sort().map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `latency ms: median ${percentile(f.latenciesMs, 50).toFixed(1)}, p99 ${percentile(f.latenciesMs, 99).toFixed(1)}, max ${Math.max(...f.latenciesMs).toFixed(1)}`,
    `daemon RSS: ${(f.rssBeforeKiB / 1024).toFixed(1)} MiB before, ${(f.rssAfterKiB / 1024).toFixed(1)} MiB after`,
  ];
  return lines.join("\n");
}
