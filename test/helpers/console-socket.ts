// A WebSocket viewer of a VM's serial console for tests, over the daemon's Unix
// socket: everything it received as text, waits for a pattern, and how it ended.
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { TestDaemon } from "./daemon.js";

export interface ConsoleClient {
  ws: WebSocket;
  /** Everything received so far. */
  text(): string;
  /** Resolves with the text from `from` on once `pattern` matches it. */
  waitFor(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  type(s: string): void;
  closed: Promise<{ code: number; reason: string }>;
}

export function consoleUrl(d: TestDaemon, vm: string, mode?: "ro" | "rw"): string {
  return `ws+unix://${d.socket}:/v1/vms/${vm}/console${mode ? `?mode=${mode}` : ""}`;
}

/** Opens a console; rejects on a refused upgrade with the daemon's status and problem document. */
export async function openConsole(d: TestDaemon, vm: string, mode?: "ro" | "rw"): Promise<ConsoleClient> {
  const ws = new WebSocket(consoleUrl(d, vm, mode));
  const chunks: Buffer[] = [];
  ws.on("message", (data: Buffer) => chunks.push(data));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      const body: Buffer[] = [];
      res.on("data", (c: Buffer) => body.push(c));
      res.on("end", () => reject(new RefusedUpgrade(res.statusCode ?? 0, Buffer.concat(body).toString())));
    });
  });
  const text = (): string => Buffer.concat(chunks).toString("utf8");
  return {
    ws,
    text,
    async waitFor(pattern, timeoutMs = 30_000, from = 0) {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const t = text().slice(from);
        if (pattern.test(t)) return t;
        await sleep(50);
      }
      throw new Error(`console did not show ${pattern} within ${timeoutMs} ms; got:\n${text().slice(-1000)}`);
    },
    type: (s) => ws.send(Buffer.from(s)),
    closed,
  };
}

export class RefusedUpgrade extends Error {
  readonly problem: { code?: string; detail?: string; status?: number };
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with HTTP ${status}: ${body}`);
    try {
      this.problem = JSON.parse(body) as RefusedUpgrade["problem"];
    } catch {
      this.problem = {};
    }
  }
}
