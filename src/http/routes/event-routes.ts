// GET /v1/events: the event bus as Server-Sent Events. A client may resume after
// the last id it saw (Last-Event-ID or ?since=): it first gets what the ring still
// holds after that id, then live events, without gap or duplicate. Events the ring
// no longer holds are announced by one `events.lost`; a client that cannot keep
// up gets `events.dropped` and is disconnected (see SseClient). Each stream holds
// one of the listener's stream slots (and its peer's) while open.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { DaemonEvent, EventBus } from "../../events/event-bus.js";
import type { EventPayload } from "../../events/event-catalogue.js";
import * as errors from "../route-errors.js";
import { content, named, problems } from "../response-schemas.js";
import { eventsQuery } from "../schemas.js";
import { defaultSseLimits, SseClient, type SseLimits } from "../sse-client.js";
import { peerAddress, type ClientSlots } from "../client-slots.js";

const eventsHeaders = z.looseObject({
  "last-event-id": z
    .string()
    .regex(/^(\d{1,15})?$/, "not an event id")
    .optional()
    .describe("resume after this event id (wins over ?since=)"),
});

const eventSchema = named(
  z
    .object({
      id: z.number().int().optional().describe("one more per event the daemon publishes; restarts at 1 with the daemon"),
      time: z.string(),
      type: z.string().describe("vm.state, operation.started, operation.ended, job.progress, job.ended, qemu.<EVENT>, daemon.started, ..."),
      vm: z.string().optional(),
      data: z.record(z.string(), z.unknown()),
    })
    .describe("the data line of one event, as JSON; events.lost and events.dropped (about the stream itself) have no id"),
  "Event",
);

/** Comment lines keep idle connections (and proxies) from timing out. */
const HEARTBEAT_MS = 15_000;

export function registerEventRoutes(app: FastifyInstance, bus: EventBus, streams: ClientSlots, limits: SseLimits = defaultSseLimits): void {
  const clients = new Set<SseClient>();
  // A stream never ends by itself: the daemon's exit ends them so its listener can close.
  app.addHook("preClose", (done) => {
    for (const c of clients) c.end(`: vmhostd is stopping\n\n`);
    done();
  });

  const route = {
    schema: {
      operationId: "streamEvents",
      summary: "the daemon's events as Server-Sent Events (id, event type, data: the event as JSON)",
      description:
        "Resumes after Last-Event-ID or ?since=; events.lost when the ring no longer holds the missed ones; " +
        "events.dropped, then disconnection, for a client that does not keep up. A comment line every 15 s.",
      querystring: eventsQuery,
      headers: eventsHeaders,
      response: { 200: content("an endless stream", { "text/event-stream": eventSchema }), ...problems(...errors.stream) },
    },
  };
  app.withTypeProvider<ZodTypeProvider>().get("/v1/events", route, async (req, reply) => {
    const { vm, since: sinceQuery } = req.query;
    const header = req.headers["last-event-id"];
    const since = header ? Number(header) : sinceQuery;
    const release = streams.takeOrRefuse(peerAddress(req.socket.remoteAddress), "event streams and consoles");
    reply.hijack();
    const res = reply.raw;
    res.once("close", release);
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    });
    const client = new SseClient(res, limits);
    const unsubscribe = new AbortController();
    clients.add(client);
    const heartbeat = setInterval(() => deliver(`: heartbeat\n\n`), HEARTBEAT_MS);
    res.once("close", () => {
      clearInterval(heartbeat);
      unsubscribe.abort();
      clients.delete(client);
    });

    // The highest id given to this client: a live event at or below it was already replayed.
    const resumePoint = since ?? bus.lastId;
    let highest = resumePoint;
    const deliver = (frame: string, id?: number): void => {
      if (client.send(frame, id)) return;
      // Over its bound (or gone): the client learns from which id it missed events, and may resume from there.
      clearInterval(heartbeat);
      unsubscribe.abort();
      client.end(syntheticFrame("events.dropped", vm, { afterId: client.lastWrittenId ?? resumePoint, reason: "the client did not read fast enough" }));
    };
    const forward = (e: DaemonEvent): void => {
      if (e.id <= highest || (vm && e.vm !== vm)) return;
      const frame = eventFrame(e);
      if (client.closed) return;
      deliver(frame, e.id);
      if (!client.closed) highest = e.id;
    };

    // Subscribed before the replay, so nothing published in between can be missed; `highest` dedupes.
    bus.subscribe(forward, unsubscribe.signal);
    client.send(`retry: 2000\n: connected, last event id ${bus.lastId}\n\n`);
    if (since !== undefined) {
      let from = since;
      if (since > bus.lastId) {
        // An id this daemon never gave: it comes from an earlier run, whose ids started again at 1.
        deliver(syntheticFrame("events.lost", vm, { afterId: since, firstAvailable: bus.oldestId, reason: "the daemon restarted; ids started again" }));
        from = 0;
        highest = 0;
      } else if (since + 1 < bus.oldestId) {
        deliver(syntheticFrame("events.lost", vm, { afterId: since, lostFrom: since + 1, lostTo: bus.oldestId - 1, firstAvailable: bus.oldestId, reason: "older than the ring holds" }));
      }
      for (const e of bus.since(from)) forward(e);
    }
  });
}

function eventFrame(e: DaemonEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

/** An event about the stream itself: it has no id, so it does not move the client's resume point. */
function syntheticFrame<K extends "events.lost" | "events.dropped">(type: K, vm: string | undefined, data: EventPayload<K>): string {
  const body = { time: new Date().toISOString(), type, ...(vm ? { vm } : {}), data };
  return `event: ${type}\ndata: ${JSON.stringify(body)}\n\n`;
}
