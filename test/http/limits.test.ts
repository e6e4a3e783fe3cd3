// What one client may ask of a listener: a clear 4xx or a closed connection at
// each limit, never a crash, and the daemon answering everybody else meanwhile.
import http from "node:http";
import net from "node:net";
import t from "tap";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../../src/net/free-port.js";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { stateDigest } from "../helpers/state-digest.js";
import { holdEventStream, type HeldStream } from "../helpers/event-stream.js";

interface RawReply {
  text: string;
  closed: boolean;
  ms: number;
}

/** Writes `parts` (with `gapMs` between them) on a raw connection and collects what comes back until it closes or `waitMs` pass. */
function raw(d: TestDaemon, parts: (string | Buffer)[], opts: { gapMs?: number; waitMs: number }): Promise<RawReply> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = net.connect(d.socket);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ text: Buffer.concat(chunks).toString("latin1"), closed, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs);
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.on("close", () => finish(true));
    sock.on("error", () => finish(true));
    sock.on("connect", async () => {
      for (const p of parts) {
        // Writing on after the daemon answered and closed would make its kernel reset the
        // connection, which can throw away the answer before this side reads it.
        if (done || chunks.length > 0) return;
        sock.write(p);
        if (opts.gapMs) await sleep(opts.gapMs);
      }
    });
  });
}

t.test("HTTP limits", async (t) => {
  const d = await startDaemon({ args: ["--max-connections", "40"] });
  t.teardown(() => d.cleanup());
  await d.api.json("POST", "/v1/vms", { name: "keep", memoryMiB: 64, disks: [{ name: "root", sizeGiB: 1 }] });
  const before = await stateDigest(d.stateDir);
  const alive = async (what: string): Promise<void> => {
    const r = await d.api.request("GET", "/v1/vms/keep");
    t.equal(r.status, 200, `the daemon still answers after ${what}`);
  };

  const big = Buffer.alloc(1024 * 1024 + 10, "a");
  const pieces = Array.from({ length: Math.ceil(big.length / 65536) }, (_, i) => big.subarray(i * 65536, (i + 1) * 65536));
  const body = await raw(d, [`POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`, ...pieces], { gapMs: 5, waitMs: 10_000 });
  t.match(body.text, /^HTTP\/1\.1 413 /, "a body over 1 MiB is a 413");
  t.match(body.text, /VMH_ERR_PAYLOAD_TOO_LARGE/, "with its code");
  await alive("an oversized body");

  const header = await raw(d, [`GET /v1/vms HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(20 * 1024)}\r\n\r\n`], { waitMs: 10_000 });
  t.match(header.text, /^HTTP\/1\.1 431 /, "headers over 16 KiB are a 431");
  t.ok(header.closed, "and the connection is closed");
  const longUrl = await raw(d, [`GET /v1/vms/${"n".repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`], { waitMs: 10_000 });
  t.match(longUrl.text, /^HTTP\/1\.1 431 /, "so is a 20 KiB URL");
  await alive("oversized headers");

  // A client dribbling its headers (slowloris) is cut off after the headers timeout.
  const slowHeaders = await raw(d, ["GET /v1/vms HTTP/1.1\r\n", ...Array.from({ length: 40 }, (_, i) => `X-${i}: y\r\n`)], { gapMs: 500, waitMs: 25_000 });
  t.ok(slowHeaders.closed, "a client that takes over 10 s to send its headers is disconnected");
  t.ok(slowHeaders.ms < 20_000, `within the limit and one check (${Math.round(slowHeaders.ms)} ms)`);
  t.match(slowHeaders.text, /^(HTTP\/1\.1 408 |)/, "with a 408 if anything");
  // A body that never completes is cut off after the request timeout.
  const slowBody = await raw(d, ["POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na"], { waitMs: 45_000 });
  t.ok(slowBody.closed, "a body that stalls is dropped");
  t.ok(slowBody.ms < 40_000, `after the 30 s request timeout (${Math.round(slowBody.ms)} ms)`);
  await alive("slow clients");

  // Connections beyond --max-connections are closed at once; the ones held stay usable.
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((s) => s.destroy()));
  for (let i = 0; i < 40; i++) {
    const s = net.connect(d.socket);
    await new Promise((r) => s.once("connect", r));
    held.push(s);
  }
  await sleep(200);
  const extra = await raw(d, ["GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n"], { waitMs: 5_000 });
  t.ok(extra.closed && extra.text === "", "the connection over the limit is closed without an answer");
  const first = held[0]!;
  const answer = new Promise<string>((resolve) => first.once("data", (c: Buffer) => resolve(c.toString("latin1"))));
  first.write("GET /v1/vms/keep HTTP/1.1\r\nHost: x\r\n\r\n");
  t.match(await answer, /^HTTP\/1\.1 200 /, "a held connection is still served");
  held.forEach((s) => s.destroy());
  held.length = 0;
  await sleep(300);
  await alive("the connection limit");

  // Bad JSON, a wrong content type, invalid UTF-8: 4xx problems, not 500s.
  const cases: [string, Buffer | string, number][] = [
    ["application/json", "{\"name\": ", 400],
    ["application/json", Buffer.from([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 400],
    ["text/plain", "name=x", 415],
    ["application/json", "[".repeat(200_000), 400],
  ];
  for (const [type, payload, want] of cases) {
    const b = Buffer.from(payload);
    const r = await raw(d, [`POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n`, b], { waitMs: 10_000 });
    t.match(r.text, new RegExp(`^HTTP/1\\.1 ${want} `), `${type} ${b.subarray(0, 12).toString("latin1")}... is a ${want}`);
    t.match(r.text, /application\/problem\+json/, "as a problem document");
  }
  await alive("malformed bodies");
  t.same(await stateDigest(d.stateDir), before, "nothing on disk changed");
});

t.test("TCP: no token or a wrong one is a 401 and changes nothing", async (t) => {
  const port = await freePort("127.0.0.1");
  const token = "the-right-token-0123456789";
  const d = await startDaemon({ args: ["--listen", `127.0.0.1:${port}`, "--peer-token", token] });
  t.teardown(() => d.cleanup());
  const before = await stateDigest(d.stateDir);
  const send = (auth: string | undefined, method: string, urlPath: string, body?: unknown) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        { host: "127.0.0.1", port, method, path: urlPath, headers: { ...(auth ? { authorization: auth } : {}), ...(payload ? { "content-type": "application/json" } : {}) } },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  const create = { name: "sneaky", memoryMiB: 64 };
  for (const [what, auth] of [["no token", undefined], ["a wrong token", "Bearer the-wrong-token-012345678"], ["a token that is a prefix", `Bearer ${token.slice(0, -1)}`], ["another scheme", `Basic ${token}`]] as const) {
    const r = await send(auth, "POST", "/v1/vms", create);
    t.equal(r.status, 401, `${what}: 401`);
    t.match(r.text, /VMH_ERR_UNAUTHORIZED/);
    t.equal((await send(auth, "GET", "/v1/vms")).status, 401, `${what}: reading is refused too`);
  }
  t.same(await stateDigest(d.stateDir), before, "nothing on disk changed");
  t.equal((await send(`Bearer ${token}`, "GET", "/v1/vms")).status, 200, "the right token is let in");
});

/** GET /v1/events over TCP from a chosen loopback address. */
function tcpEvents(port: number, from: string, token: string): Promise<HeldStream> {
  return holdEventStream({ host: "127.0.0.1", port, localAddress: from, headers: { authorization: `Bearer ${token}` } });
}

/** GET /v1/vms with the token on a new TCP connection from `from`: its status, 0 if the connection was dropped. */
function tokenRequest(port: number, from: string, token: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, localAddress: from, path: "/v1/vms", agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
    req.end();
  });
}

/** A TCP connection from a chosen loopback address that says nothing: what it receives, and when it is closed. */
function silentConnection(port: number, from: string): { sock: net.Socket; received: () => string; closedAt: Promise<number> } {
  const t0 = performance.now();
  const sock = net.connect({ host: "127.0.0.1", port, localAddress: from });
  let text = "";
  sock.on("data", (c: Buffer) => (text += c.toString("latin1")));
  sock.on("error", () => {});
  const closedAt = new Promise<number>((r) => sock.once("close", () => r(performance.now() - t0)));
  return { sock, received: () => text, closedAt };
}

t.test("TCP: streams per peer and per listener, unauthenticated connections", async (t) => {
  const port = await freePort("127.0.0.1");
  const token = "the-right-token-0123456789";
  const d = await startDaemon({
    args: ["--listen", `127.0.0.1:${port}`, "--peer-token", token, "--max-streams", "3", "--max-streams-per-peer", "2", "--max-unauthenticated", "4", "--max-unauthenticated-per-peer", "3"],
  });
  t.teardown(() => d.cleanup());

  // Streams: two per peer, three on the listener.
  const a1 = await tcpEvents(port, "127.0.0.1", token);
  const a2 = await tcpEvents(port, "127.0.0.1", token);
  t.equal(a1.status + a2.status, 400, "a peer opens two event streams");
  const a3 = await tcpEvents(port, "127.0.0.1", token);
  t.equal(a3.status, 429, "a third from the same address is refused");
  t.match(JSON.parse(a3.body), { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "peer", limit: 2 });
  const b1 = await tcpEvents(port, "127.0.0.2", token);
  t.equal(b1.status, 200, "another address still gets one");
  const b2 = await tcpEvents(port, "127.0.0.2", token);
  t.equal(b2.status, 429, "until the listener is full");
  t.match(JSON.parse(b2.body), { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "listener", limit: 3 });
  const unixStream = await holdEventStream({ socketPath: d.socket });
  unixStream.close();
  t.equal(unixStream.status, 200, "the Unix socket's streams are counted apart");
  a1.close();
  let again = { status: 0, body: "", close: () => {} };
  for (let i = 0; i < 20 && again.status !== 200; i++) {
    await sleep(100);
    again = await tcpEvents(port, "127.0.0.1", token);
  }
  t.equal(again.status, 200, "a closed stream's place is given again");
  for (const s of [a2, b1, again]) s.close();

  // Unauthenticated connections: three per address, four in all; beyond them a 429 and a close.
  const silent = [0, 1, 2].map(() => silentConnection(port, "127.0.0.3"));
  await Promise.all(silent.map((s) => new Promise((r) => s.sock.once("connect", r))));
  await sleep(200);
  const overPeer = silentConnection(port, "127.0.0.3");
  const overPeerMs = await overPeer.closedAt;
  t.match(overPeer.received(), /^HTTP\/1\.1 429 [^]*VMH_ERR_TOO_MANY_CLIENTS[^]*"scope":"peer"/, "a fourth from one address gets a 429 (peer)");
  t.ok(overPeerMs < 2000, `and is closed at once (${Math.round(overPeerMs)} ms)`);
  const other = silentConnection(port, "127.0.0.4");
  await new Promise((r) => other.sock.once("connect", r));
  await sleep(200);
  const overAll = silentConnection(port, "127.0.0.5");
  await overAll.closedAt;
  t.match(overAll.received(), /^HTTP\/1\.1 429 [^]*"scope":"listener"/, "a fifth in all gets a 429 (listener)");
  const withToken = await tokenRequest(port, "127.0.0.6", token);
  t.equal(withToken, 429, "while full, a new connection is refused before it can show a token");
  t.equal((await d.api.request("GET", "/v1/vms")).status, 200, "the Unix socket is still served");

  // A held connection that shows the token is served and stops counting.
  const first = silent[0]!;
  const answer = new Promise<string>((resolve) => first.sock.once("data", (c: Buffer) => resolve(c.toString("latin1"))));
  first.sock.write(`GET /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  t.match(await answer, /^HTTP\/1\.1 200 /, "a held connection that authenticates is served");
  const next = await tokenRequest(port, "127.0.0.7", token);
  t.equal(next, 200, "and its place goes to a new connection, which is served");

  // The others never authenticated: closed at the headers timeout (10 s) at the latest, whatever they do meanwhile.
  silent[1]!.sock.write("GET /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token-wrong-token\r\n\r\n");
  const [wrong, ...quiet] = await Promise.all([silent[1]!.closedAt, silent[2]!.closedAt, other.closedAt]);
  t.match(silent[1]!.received(), /^HTTP\/1\.1 401 /, "a wrong token gets its 401");
  t.ok(wrong! < 12_000, `and the connection is closed by the deadline (${Math.round(wrong!)} ms)`);
  for (const ms of quiet) t.ok(ms > 9_000 && ms < 12_000, `a connection that says nothing is closed at the deadline (${Math.round(ms)} ms)`);
  first.sock.destroy();
});
