// QmpClient against a scripted server: the protocol edge cases qemu will not
// produce on demand. What real qemu does is covered by qmp-client-qemu.test.ts.
import t from "tap";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import type { QmpEvent } from "../../src/qmp/commands.js";
import {
  QmpConnectError,
  QmpDisconnected,
  QmpError,
  QmpExecuteError,
  QmpProtocolError,
  QmpTimeout,
} from "../../src/qmp/errors.js";
import { QmpClient, type QmpClientOptions } from "../../src/qmp/qmp-client.js";
import {
  FakeQmpServer,
  qmpEventLine,
  qmpReturnLine,
  type FakeQmpServerOptions,
} from "../helpers/fake-qmp-server.js";

/** What the setup helpers need of a (sub)test. */
type Test = { teardown(fn: () => unknown): void };

async function setup(tt: Test, serverOpts?: FakeQmpServerOptions, clientOpts?: QmpClientOptions) {
  const server = await FakeQmpServer.start(serverOpts);
  tt.teardown(() => server.close());
  const connecting = QmpClient.connect(server.path, clientOpts);
  const peer = await server.nextPeer();
  const client = await connecting;
  tt.teardown(() => client.close());
  return { server, peer, client };
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => new Error(`expected a rejection, got ${JSON.stringify(v)}`),
    (err: unknown) => err,
  );
}

/**
 * Whether `p` has settled after a pause long enough for the client to have read
 * whatever was written: the only way to observe "not answered yet".
 */
async function settledAfterPause(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(30);
  return settled;
}

/** Collects events and lets a test wait until the n-th has arrived. */
function recorder(client: QmpClient, signal?: AbortSignal) {
  const seen: QmpEvent[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const unsubscribe = client.onEvent((e) => {
    seen.push(e);
    for (const w of waiters.filter((w) => seen.length >= w.n)) w.resolve();
  }, signal);
  const count = (n: number) =>
    seen.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
  return { seen, count, unsubscribe };
}

t.test("handshake: greeting, then qmp_capabilities, then ready", async (t) => {
  const server = await FakeQmpServer.start({ answerCapabilities: false });
  t.teardown(() => server.close());
  const connecting = QmpClient.connect(server.path);
  const peer = await server.nextPeer();
  const caps = await peer.nextCommand();
  t.equal(caps.execute, "qmp_capabilities");
  t.match(caps.id, /^vmh-\d+$/, "ids are strings from our counter");
  t.equal(caps.arguments, undefined, "no capabilities enabled");
  t.notOk(await settledAfterPause(connecting), "not ready before qmp_capabilities is answered");
  peer.reply(caps);
  const client = await connecting;
  t.teardown(() => client.close());
  t.same(client.greeting, { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: ["oob"] });

  const first = client.execute("query-status");
  const second = client.execute("query-kvm");
  const [a, b] = [await peer.nextCommand(), await peer.nextCommand()];
  t.same([a.execute, b.execute], ["query-status", "query-kvm"], "commands are written in call order");
  t.not(a.id, b.id, "each command has its own id");
  peer.reply(a, { status: "running", running: true });
  peer.reply(b, { enabled: true, present: true });
  t.same(await first, { status: "running", running: true });
  t.same(await second, { enabled: true, present: true });
});

t.test("a reply split across writes, mid-JSON and mid-character", async (t) => {
  const { peer, client } = await setup(t);
  const pending = client.execute("query-name");
  const cmd = await peer.nextCommand();
  const bytes = Buffer.from(qmpReturnLine(cmd.id, { name: "vm-ü€" }));
  const euro = bytes.indexOf(Buffer.from("€"));
  // The second cut falls inside the 3-byte "€": the decoder must carry it over.
  for (const part of [bytes.subarray(0, 7), bytes.subarray(7, euro + 1)]) {
    peer.write(part);
    t.notOk(await settledAfterPause(pending), "no reply before the line is complete");
  }
  peer.write(bytes.subarray(euro + 1));
  t.same(await pending, { name: "vm-ü€" });
});

t.test("several messages in one write", async (t) => {
  const { peer, client } = await setup(t);
  const events = recorder(client);
  const a = client.execute("query-status");
  const b = client.execute("query-name");
  const [ca, cb] = [await peer.nextCommand(), await peer.nextCommand()];
  peer.write(qmpReturnLine(ca.id, { status: "paused", running: false }) + qmpEventLine("STOP") + qmpReturnLine(cb.id, {}));
  t.same(await a, { status: "paused", running: false });
  t.same(await b, {});
  await events.count(1);
  t.same(events.seen.map((e) => e.event), ["STOP"]);
});

t.test("events between commands and replies, replies out of order", async (t) => {
  const { peer, client } = await setup(t);
  const first = recorder(client);
  const second = recorder(client);
  const a = client.execute("query-status");
  const b = client.execute("query-kvm");
  const [ca, cb] = [await peer.nextCommand(), await peer.nextCommand()];
  peer.event("RESUME");
  peer.reply(cb, { enabled: false, present: true });
  peer.write(qmpEventLine("SHUTDOWN", { guest: true, reason: "guest-shutdown" }) + qmpReturnLine(ca.id, { status: "shutdown", running: false }));
  t.same(await a, { status: "shutdown", running: false }, "A gets A's reply although B's came first");
  t.same(await b, { enabled: false, present: true });
  await Promise.all([first.count(2), second.count(2)]);
  t.same(first.seen.map((e) => e.event), ["RESUME", "SHUTDOWN"], "events in the order sent");
  t.same(second.seen[1]?.data, { guest: true, reason: "guest-shutdown" });
  t.match(first.seen[0]?.timestamp, { seconds: Number, microseconds: Number });
  first.seen[1]!.data!.reason = "changed";
  t.equal(second.seen[1]?.data?.reason, "guest-shutdown", "each listener has its own copy");
});

const brokenLines: [string, string][] = [
  ["a line that is not JSON", "this is not json\n"],
  ["JSON that is not an object", "[1, 2]\n"],
  ["an object that is not a QMP message", '{"hello": 1}\n'],
  ["a reply with an unknown id", qmpReturnLine("vmh-999")],
  ["a reply without an id", '{"return": {}}\n'],
  ["an error reply without desc", '{"error": {"class": "GenericError"}, "id": "vmh-2"}\n'],
  ["an event without a timestamp", '{"event": "STOP"}\n'],
  ["a second greeting", JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "" }, capabilities: [] } }) + "\n"],
];

for (const [what, line] of brokenLines) {
  t.test(`${what} breaks the connection`, async (t) => {
    const { peer, client } = await setup(t);
    const a = client.execute("query-status");
    const b = client.execute("query-kvm");
    const [ca] = [await peer.nextCommand(), await peer.nextCommand()];
    // A valid reply after the bad line, in the same write, must not be delivered:
    // once the stream is broken we no longer trust what follows.
    peer.write(line + qmpReturnLine(ca.id, { status: "running", running: true }));
    for (const [p, command] of [[a, "query-status"], [b, "query-kvm"]] as const) {
      const err = await rejection(p);
      t.ok(err instanceof QmpDisconnected, `${command} rejects with QmpDisconnected`);
      t.equal((err as QmpDisconnected).command, command);
      t.ok((err as Error).cause instanceof QmpProtocolError, "caused by the protocol error");
    }
    const reason = await client.closed;
    t.ok(reason instanceof QmpProtocolError, `closed reports QmpProtocolError: ${reason?.message}`);
    t.ok((reason as QmpProtocolError).line, "keeps the offending line");
    await peer.gone;
    t.ok((await rejection(client.execute("query-status"))) instanceof QmpDisconnected, "later commands fail fast");
  });
}

t.test("qemu hangs up mid-command", async (t) => {
  const { peer, client } = await setup(t);
  const pending = client.execute("query-status");
  await peer.nextCommand();
  peer.hangUp();
  const err = await rejection(pending);
  t.ok(err instanceof QmpDisconnected);
  t.equal((err as QmpDisconnected).command, "query-status");
  const reason = await client.closed;
  t.ok(reason instanceof QmpDisconnected, "closed reports the hang-up");
  t.equal((reason as QmpDisconnected).command, undefined);
});

t.test("an unanswered command times out; its late reply is dropped", async (t) => {
  const { peer, client } = await setup(t);
  const started = performance.now();
  const pending = client.execute("query-status", undefined, { timeoutMs: 100 });
  const cmd = await peer.nextCommand();
  const err = await rejection(pending);
  t.ok(err instanceof QmpTimeout && err instanceof QmpError);
  t.match(err, { command: "query-status", timeoutMs: 100 });
  t.ok(performance.now() - started >= 95, "not before the timeout");
  peer.reply(cmd, { status: "running", running: true });
  const next = client.execute("query-kvm");
  peer.reply(await peer.nextCommand(), { enabled: true, present: true });
  t.same(await next, { enabled: true, present: true }, "the connection still works");
  t.notOk(await settledAfterPause(client.closed), "and stays open");
});

t.test("per-client timeout overrides the table", async (t) => {
  const { peer, client } = await setup(t, {}, { timeouts: { "query-status": 60 } });
  const pending = client.execute("query-status");
  await peer.nextCommand();
  t.match(await rejection(pending), { name: "QmpTimeout", timeoutMs: 60 });
  t.match(await rejection(client.execute("cont", undefined, { timeoutMs: -1 })), { name: "RangeError" });
});

t.test("QmpExecuteError keeps the command, arguments, class and desc", async (t) => {
  const { peer, client } = await setup(t);
  const pending = client.executeRaw("device_del", { id: "nic9" });
  const cmd = await peer.nextCommand();
  t.same(cmd.arguments, { id: "nic9" });
  peer.fail(cmd, "DeviceNotFound", "Device 'nic9' not found");
  const err = await rejection(pending);
  t.ok(err instanceof QmpExecuteError && err instanceof QmpError);
  t.match(err, { command: "device_del", args: { id: "nic9" }, errorClass: "DeviceNotFound", desc: "Device 'nic9' not found" });
});

t.test("connect failures are QmpConnectError", async (t) => {
  t.test("a socket that never greets: within the connect timeout", async (t) => {
    const server = await FakeQmpServer.start({ greeting: false });
    t.teardown(() => server.close());
    const started = performance.now();
    const err = await rejection(QmpClient.connect(server.path, { connectTimeoutMs: 250 }));
    const elapsed = performance.now() - started;
    t.ok(err instanceof QmpConnectError, String(err));
    t.ok(elapsed >= 240 && elapsed < 2_000, `gave up after ${Math.round(elapsed)} ms`);
    await (await server.nextPeer()).gone;
  });
  t.test("no socket at the path", async (t) => {
    const err = await rejection(QmpClient.connect("/nonexistent/vmh/qmp.sock", { connectTimeoutMs: 1_000 }));
    t.ok(err instanceof QmpConnectError);
    t.match((err as Error).cause, { code: "ENOENT" });
  });
  t.test("garbage instead of a greeting", async (t) => {
    const server = await FakeQmpServer.start({ greeting: false });
    t.teardown(() => server.close());
    const connecting = QmpClient.connect(server.path);
    (await server.nextPeer()).event("STOP");
    const err = await rejection(connecting);
    t.ok(err instanceof QmpConnectError);
    t.ok((err as Error).cause instanceof QmpProtocolError);
  });
  t.test("qmp_capabilities refused", async (t) => {
    const server = await FakeQmpServer.start({ answerCapabilities: false });
    t.teardown(() => server.close());
    const connecting = QmpClient.connect(server.path);
    const peer = await server.nextPeer();
    peer.fail(await peer.nextCommand(), "GenericError", "no");
    const err = await rejection(connecting);
    t.ok(err instanceof QmpConnectError);
    t.ok((err as Error).cause instanceof QmpExecuteError);
  });
});

t.test("event listeners: removed by AbortSignal or by the returned function", async (t) => {
  const { peer, client } = await setup(t);
  const ac = new AbortController();
  const aborted = recorder(client, ac.signal);
  const unsubscribed = recorder(client);
  const always = recorder(client);
  client.onEvent(() => {
    throw new Error("a broken listener");
  });
  peer.event("A");
  await always.count(1);
  ac.abort();
  unsubscribed.unsubscribe();
  peer.event("B");
  await always.count(2);
  t.same(always.seen.map((e) => e.event), ["A", "B"], "a throwing listener does not stop the others");
  t.same(aborted.seen.map((e) => e.event), ["A"]);
  t.same(unsubscribed.seen.map((e) => e.event), ["A"]);
  t.same(recorder(client, ac.signal).seen, [], "an already-aborted signal subscribes nothing");
});

t.test("quit: the hang-up counts as success", async (t) => {
  const { peer, client } = await setup(t);
  const quitting = client.execute("quit");
  await peer.nextCommand();
  peer.event("SHUTDOWN", { guest: false, reason: "host-qmp-quit" });
  peer.hangUp();
  t.same(await quitting, {});
  t.equal(await client.closed, undefined, "an expected hang-up is an orderly close");
});

t.test("commands, replies and events are logged at debug", async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const { peer, client } = await setup(t, {}, { logger: logger.child({ vm: "v1" }) });
  const pending = client.execute("query-status");
  const cmd = await peer.nextCommand();
  peer.event("STOP");
  peer.reply(cmd, { status: "paused", running: false });
  await pending;
  const find = (msg: string) => lines.filter((l) => l.msg === msg && l.qmpId === cmd.id);
  t.match(find("qmp command"), [{ level: 20, vm: "v1", command: "query-status" }]);
  t.match(find("qmp reply"), [{ level: 20, command: "query-status", return: { status: "paused" }, ms: Number }]);
  t.match(lines.filter((l) => l.msg === "qmp event"), [{ level: 20, event: { event: "STOP" } }]);
});

t.test("close() rejects pending commands and is idempotent", async (t) => {
  const { peer, client } = await setup(t);
  const pending = client.execute("query-status");
  await peer.nextCommand();
  client.close();
  client.close();
  t.match(await rejection(pending), { name: "QmpDisconnected", command: "query-status" });
  t.equal(await client.closed, undefined);
  await peer.gone;
});
