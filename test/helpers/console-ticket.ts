// Console tickets from a test's side: minting one over the Unix socket, the page
// and the WebSocket over the TCP listener as a browser (or an attacker) reaches
// them, and a bare RFB client that speaks to the VNC proxy byte by byte.
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { TestDaemon } from "./daemon.js";
import { RefusedUpgrade } from "./console-socket.js";

export interface Minted {
  ticket: string;
  url: string;
  expiresAt: string;
  vm: string;
  kind: "vnc" | "serial";
  mode: "ro" | "rw";
}

export async function mintTicket(d: TestDaemon, vm: string, body: { kind: "vnc" | "serial"; mode?: "ro" | "rw"; ttlSec?: number }): Promise<Minted> {
  return d.api.json<Minted>("POST", `/v1/vms/${vm}/console-tickets`, body);
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request over TCP with the headers given (no token unless given); a body is sent as JSON. */
export function httpGet(url: string, headers: Record<string, string> = {}, method = "GET", body?: unknown): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer in 10 s`)));
    if (body !== undefined) req.setHeader("content-type", "application/json");
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

export interface TicketSocket {
  ws: WebSocket;
  received(): Buffer;
  /** Resolves once `n` bytes have come in since `from`. */
  bytes(from: number, n: number, timeoutMs?: number): Promise<Buffer>;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens `<page URL>/ws` as a browser would (Origin given) or a script would (none); rejects with RefusedUpgrade. */
export async function openTicketSocket(pageUrl: string, opts: { origin?: string; headers?: Record<string, string> } = {}): Promise<TicketSocket> {
  const ws = new WebSocket(`${pageUrl.replace(/^http/, "ws")}/ws`, { ...(opts.origin ? { origin: opts.origin } : {}), headers: opts.headers ?? {} });
  const chunks: Buffer[] = [];
  ws.on("message", (data: Buffer) => chunks.push(data));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      const body: Buffer[] = [];
      res.on("data", (c: Buffer) => body.push(c));
      res.on("end", () => reject(new RefusedUpgrade(res.statusCode ?? 0, Buffer.concat(body).toString())));
    });
  });
  const received = (): Buffer => Buffer.concat(chunks);
  return {
    ws,
    received,
    async bytes(from, n, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const all = received();
        if (all.length >= from + n) return all.subarray(from, from + n);
        if (ws.readyState !== ws.OPEN) break;
        await sleep(20);
      }
      throw new Error(`wanted ${n} bytes from ${from}, have ${received().length - from}`);
    },
    closed,
  };
}

/** Expects a refused upgrade and returns it. */
export async function refusedSocket(pageUrl: string, opts: { origin?: string; headers?: Record<string, string> } = {}): Promise<RefusedUpgrade> {
  const err = await openTicketSocket(pageUrl, opts).then(
    (s) => {
      s.ws.terminate();
      return undefined;
    },
    (e: unknown) => e,
  );
  if (!(err instanceof RefusedUpgrade)) throw new Error(`expected a refused upgrade, got ${String(err)}`);
  return err;
}

/**
 * The client half of an RFB 3.8 handshake with security None, done by hand: what
 * noVNC does before any input. Returns the position after ServerInit.
 */
export async function rfbHandshake(s: TicketSocket): Promise<{ width: number; height: number; at: number }> {
  const version = await s.bytes(0, 12);
  if (!version.toString("latin1").startsWith("RFB 003.")) throw new Error(`not RFB: ${version.toString("latin1")}`);
  s.ws.send(Buffer.from("RFB 003.008\n"));
  const count = (await s.bytes(12, 1))[0]!;
  const types = [...(await s.bytes(13, count))];
  if (!types.includes(1)) throw new Error(`security None not offered: ${types}`);
  s.ws.send(Buffer.from([1]));
  let at = 13 + count;
  const result = (await s.bytes(at, 4)).readUInt32BE(0);
  if (result !== 0) throw new Error(`security result ${result}`);
  at += 4;
  s.ws.send(Buffer.from([1])); // ClientInit: shared
  const init = await s.bytes(at, 24);
  const nameLength = init.readUInt32BE(20);
  await s.bytes(at + 24, nameLength);
  return { width: init.readUInt16BE(0), height: init.readUInt16BE(2), at: at + 24 + nameLength };
}

export const rfb = {
  key: (keysym: number, down: boolean) => {
    const b = Buffer.alloc(8);
    b[0] = 4;
    b[1] = down ? 1 : 0;
    b.writeUInt32BE(keysym, 4);
    return b;
  },
  /** Ctrl-Alt-Delete as noVNC's sendCtrlAltDel sends it. */
  ctrlAltDel: () => {
    const [ctrl, alt, del] = [0xffe3, 0xffe9, 0xffff];
    return Buffer.concat([rfb.key(ctrl, true), rfb.key(alt, true), rfb.key(del, true), rfb.key(del, false), rfb.key(alt, false), rfb.key(ctrl, false)]);
  },
  pointer: (x: number, y: number, mask: number) => {
    const b = Buffer.alloc(6);
    b[0] = 5;
    b[1] = mask;
    b.writeUInt16BE(x, 2);
    b.writeUInt16BE(y, 4);
    return b;
  },
  cutText: (text: string) => {
    const t = Buffer.from(text, "latin1");
    const b = Buffer.alloc(8);
    b[0] = 6;
    b.writeInt32BE(t.length, 4);
    return Buffer.concat([b, t]);
  },
  updateRequest: (width: number, height: number, incremental = false) => {
    const b = Buffer.alloc(10);
    b[0] = 3;
    b[1] = incremental ? 1 : 0;
    b.writeUInt16BE(width, 6);
    b.writeUInt16BE(height, 8);
    return b;
  },
};
