// vmctl events: follows GET /v1/events, one line per event (or its JSON with
// --json), and reconnects after a dropped connection with Last-Event-ID, so no
// event the daemon still holds is missed or shown twice.
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { describeTransportError, transportFor } from "../tls/client-transport.js";
import type { ApiTarget } from "./api-client.js";

interface StreamEvent {
  id?: number;
  time: string;
  type: string;
  vm?: string;
  data: Record<string, unknown>;
}

export interface EventsDeps {
  target: () => ApiTarget;
  json: () => boolean;
  out: (s: string) => void;
}

export function registerEventsCommand(program: Command, deps: EventsDeps): void {
  program
    .command("events")
    .description("follow the daemon's events (VM states, operations, jobs, qemu's guest events); reconnects if dropped")
    .option("--vm <name>", "only this VM's events")
    .action(async (o: { vm?: string }) => {
      let lastId: number | undefined;
      for (;;) {
        const outcome = await follow(deps.target(), o.vm, lastId, (e) => {
          if (e.id !== undefined) lastId = e.id;
          deps.out(deps.json() ? JSON.stringify(e) : formatEvent(e));
        });
        // A refusal (bad name) will not get better by retrying.
        if (outcome.status !== undefined && outcome.status >= 400) {
          process.stderr.write(`vmctl: ${outcome.message}\n`);
          process.exitCode = 1;
          return;
        }
        process.stderr.write(`vmctl: event stream ended (${outcome.message}); reconnecting\n`);
        await sleep(1000);
      }
    });
}

/** One connection: resolves when it ends, with why. */
function follow(
  target: ApiTarget,
  vm: string | undefined,
  lastId: number | undefined,
  onEvent: (e: StreamEvent) => void,
): Promise<{ status?: number; message: string }> {
  const path = `/v1/events${vm ? `?vm=${encodeURIComponent(vm)}` : ""}`;
  const base = target.url ? new URL(path, target.url) : undefined;
  const transport = base ? transportFor(base, target.tls) : { request: http.request, options: { socketPath: target.socketPath } };
  return new Promise((resolve) => {
    const req = transport.request(
      {
        path: base ? base.pathname + base.search : path,
        ...transport.options,
        agent: false,
        headers: {
          accept: "text/event-stream",
          ...(lastId !== undefined ? { "last-event-id": String(lastId) } : {}),
          ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
        },
      },
      (res) => {
        res.setEncoding("utf8");
        if (res.statusCode !== 200) {
          let body = "";
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve({ status: res.statusCode, message: problemDetail(body) ?? `HTTP ${res.statusCode}` }));
          return;
        }
        let buf = "";
        res.on("data", (chunk: string) => {
          buf += chunk;
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const data = buf
              .slice(0, end)
              .split("\n")
              .filter((l) => l.startsWith("data:"))
              .map((l) => l.slice(5).trimStart())
              .join("\n");
            buf = buf.slice(end + 2);
            if (data) onEvent(JSON.parse(data) as StreamEvent);
          }
        });
        res.on("close", () => resolve({ message: "connection closed" }));
      },
    );
    req.on("error", (err) => resolve({ message: describeTransportError(err) }));
    req.end();
  });
}

function problemDetail(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { detail?: string }).detail;
  } catch {
    return undefined;
  }
}

/** `time type vm summary`: the fields an operator scans for. */
export function formatEvent(e: StreamEvent): string {
  const d = e.data;
  let summary: string;
  switch (e.type) {
    case "vm.state":
      summary = `${String(d.state)}${d.reason ? ` (${String(d.reason)})` : ""}`;
      break;
    case "operation.started":
      summary = String(d.operation);
      break;
    case "operation.ended": {
      const err = d.error as { message?: string } | undefined;
      summary = `${String(d.operation)} ${String(d.result)}${err?.message ? `: ${err.message}` : ""}`;
      break;
    }
    default:
      summary = JSON.stringify(d);
  }
  return `${e.time} ${e.type} ${e.vm ?? "-"} ${summary}`;
}
