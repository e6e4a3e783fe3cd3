// Checks events as a client of GET /v1/events receives them against the event
// catalogue: the envelope, a declared type, and a payload its schema accepts.
import http from "node:http";
import type { Test } from "tap";
import { z } from "zod";
import { eventDeclaration } from "../../src/events/event-catalogue.js";
import type { TestDaemon } from "./daemon.js";

/** One event as it arrives: the SSE frame's id and event name, and the parsed `data:` line. */
export interface WireEvent {
  sseId?: number;
  sseEvent: string;
  body: unknown;
}

const envelope = z.strictObject({
  id: z.number().int().positive().optional(),
  time: z.iso.datetime(),
  type: z.string(),
  vm: z.string().optional(),
  data: z.unknown(),
});

/** What is wrong with one received event; empty when it matches the catalogue. */
export function eventProblems(e: WireEvent): string[] {
  const parsed = envelope.safeParse(e.body);
  if (!parsed.success) return [`envelope: ${parsed.error.message}`];
  const { id, type, vm, data } = parsed.data;
  const where = `${type}${id === undefined ? "" : ` #${id}`}`;
  const problems: string[] = [];
  if (type !== e.sseEvent) problems.push(`${where}: the SSE event name is ${e.sseEvent}`);
  if (id !== e.sseId) problems.push(`${where}: the SSE id is ${e.sseId}`);
  const declared = eventDeclaration(type);
  if (!declared) return [...problems, `${where}: not in the catalogue`];
  if ((declared.subject === "stream") !== (id === undefined)) problems.push(`${where}: ${declared.subject} event ${id === undefined ? "without" : "with"} an id`);
  if (declared.subject === "vm" && vm === undefined) problems.push(`${where}: a VM's event without vm`);
  const payload = declared.payload.safeParse(data);
  if (!payload.success) problems.push(`${where}: data ${JSON.stringify(data)}: ${payload.error.message}`);
  return problems;
}

/**
 * Every event the daemon still holds, from `?since=0` up to the newest one when the
 * first stream opened. A replay larger than a client's queue ends in `events.dropped`;
 * the next stream resumes after it, as `vmctl events` does.
 */
export async function heldEvents(d: TestDaemon, timeoutMs = 20_000): Promise<WireEvent[]> {
  const deadline = Date.now() + timeoutMs;
  const events: WireEvent[] = [];
  let newest: number | undefined;
  let after = 0;
  for (;;) {
    const part = await readStream(d, after, newest, deadline - Date.now());
    newest ??= part.newest;
    events.push(...part.events);
    const dropped = part.events.find((e) => e.sseEvent === "events.dropped");
    if (!dropped) return events;
    after = (dropped.body as { data: { afterId: number } }).data.afterId;
  }
}

/** One stream after `after`: until `until` (or, unset, the newest id it announces) has arrived, or it is dropped. */
function readStream(d: TestDaemon, after: number, until: number | undefined, timeoutMs: number): Promise<{ events: WireEvent[]; newest: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: d.socket, path: "/v1/events", headers: { "last-event-id": String(after) }, agent: false }, (res) => {
      const events: WireEvent[] = [];
      let newest: number | undefined;
      let buf = "";
      const timer = setTimeout(() => finish(new Error(`the held events did not arrive within the deadline (${events.length} did)`)), Math.max(timeoutMs, 0));
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        req.destroy();
        if (err) reject(err);
        else resolve({ events, newest: newest ?? 0 });
      };
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const frame = parseFrame(buf.slice(0, end));
          buf = buf.slice(end + 2);
          newest ??= frame.newest;
          if (frame.event) events.push(frame.event);
        }
        const last = until ?? newest;
        if (last === undefined) return;
        if (last <= after || events.some((e) => e.sseId === last || e.sseEvent === "events.dropped")) finish();
      });
      res.on("error", (err) => finish(err));
    });
    req.on("error", reject);
  });
}

function parseFrame(block: string): { event?: WireEvent; newest?: number } {
  const fields: Record<string, string> = {};
  let newest: number | undefined;
  for (const line of block.split("\n")) {
    const connected = /^: connected, last event id (\d+)$/.exec(line);
    if (connected) newest = Number(connected[1]);
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    fields[line.slice(0, i)] = line.slice(i + 1).trimStart();
  }
  if (fields.event === undefined || fields.data === undefined) return { newest };
  return {
    newest,
    event: { ...(fields.id !== undefined ? { sseId: Number(fields.id) } : {}), sseEvent: fields.event, body: JSON.parse(fields.data) as unknown },
  };
}

/**
 * Every event the daemon holds matches the catalogue, and `expected` types are among
 * them: a check that would pass with no events at all proves nothing.
 */
export async function checkHeldEvents(t: Test, d: TestDaemon, expected: string[]): Promise<void> {
  const events = await heldEvents(d);
  t.same(events.flatMap(eventProblems), [], `the ${events.length} events on the stream match the event catalogue`);
  const types = new Set(events.map((e) => e.sseEvent));
  for (const type of expected) t.ok(types.has(type), `${type} was published and checked`);
}
