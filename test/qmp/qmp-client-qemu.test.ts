// QmpClient against a real qemu: what a caller will actually meet. The guest has
// no disk and stays in firmware; -S holds it in prelaunch until `cont`.
import t from "tap";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { QmpEvent } from "../../src/qmp/commands.js";
import { QmpConnectError, QmpExecuteError, QmpTimeout } from "../../src/qmp/errors.js";
import { QmpClient } from "../../src/qmp/qmp-client.js";

/** What the setup helpers need of a (sub)test. */
type Test = { teardown(fn: () => unknown): void };

interface Qemu {
  child: ChildProcess;
  socket: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

async function startQemu(tt: Test): Promise<Qemu> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-qmp-qemu-"));
  const socket = path.join(dir, "qmp.sock");
  const argv = [
    "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none",
    "-machine", "q35", "-m", "64", "-S", "-qmp", `unix:${socket},server=on,wait=off`,
  ];
  const child = spawn("qemu-system-x86_64", argv, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  tt.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL"); // works on a SIGSTOPped qemu too
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  return { child, socket, exited, stderr: () => stderr };
}

/** Connects once qemu has created its socket: retrying only the "not there yet" errors, with a deadline. */
async function connectWhenReady(qemu: Qemu, deadlineMs = 10_000): Promise<QmpClient> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    try {
      return await QmpClient.connect(qemu.socket, { connectTimeoutMs: 5_000 });
    } catch (err) {
      const code = (err instanceof QmpConnectError && (err.cause as NodeJS.ErrnoException | undefined)?.code) || "";
      const notYet = code === "ENOENT" || code === "ECONNREFUSED";
      if (!notYet || qemu.child.exitCode !== null || performance.now() > until) {
        throw new Error(`cannot connect to qemu: ${String(err)}; qemu stderr: ${qemu.stderr()}`);
      }
      await sleep(20);
    }
  }
}

/** Resolves with the next event called `name`; subscribe before causing it. */
function nextEvent(client: QmpClient, name: string, timeoutMs = 10_000): Promise<QmpEvent> {
  const ac = new AbortController();
  return new Promise<QmpEvent>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} event within ${timeoutMs} ms`)), timeoutMs);
    client.onEvent((e) => {
      if (e.event !== name) return;
      clearTimeout(timer);
      resolve(e);
    }, ac.signal);
  }).finally(() => ac.abort());
}

t.test("a real qemu: greeting, queries, run control, errors, quit", async (t) => {
  const qemu = await startQemu(t);
  const client = await connectWhenReady(qemu);
  t.teardown(() => client.close());

  t.ok(client.greeting.version.qemu.major >= 7, `qemu ${JSON.stringify(client.greeting.version.qemu)}`);
  t.same(await client.execute("query-version"), client.greeting.version, "query-version agrees with the greeting");
  const kvm = await client.execute("query-kvm");
  t.equal(kvm.enabled, false, "tcg, not kvm");
  t.type(kvm.present, "boolean");
  t.same(await client.execute("query-name"), {}, "no -name given");
  const cpus = await client.execute("query-cpus-fast");
  t.equal(cpus.length, 1);
  t.match(cpus[0], { "cpu-index": 0, "qom-path": String, "thread-id": Number, target: "x86_64" });

  const before = await client.execute("query-status");
  t.ok(["prelaunch", "paused"].includes(before.status), `held by -S: ${before.status}`);
  t.equal(before.running, false);

  // qemu sends RESUME before its reply to cont, so listen first.
  const resumed = nextEvent(client, "RESUME");
  t.same(await client.execute("cont"), {});
  await resumed;
  t.match(await client.execute("query-status"), { status: "running", running: true });

  const stopped = nextEvent(client, "STOP");
  await client.execute("stop");
  await stopped;
  t.match(await client.execute("query-status"), { status: "paused", running: false });

  const err = await client.executeRaw("no-such-command").then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof QmpExecuteError, String(err));
  t.match(err, { command: "no-such-command", errorClass: "CommandNotFound" });

  const shutdown = nextEvent(client, "SHUTDOWN");
  t.same(await client.execute("quit"), {});
  t.match((await shutdown).data, { guest: false, reason: "host-qmp-quit" });
  t.equal(await client.closed, undefined, "the hang-up after quit is an orderly close");
  const exit = await qemu.exited;
  t.equal(exit.code, 0, "qemu exited by itself");
});

t.test("a stopped qemu process: timeout, then it answers again", async (t) => {
  const qemu = await startQemu(t);
  const client = await connectWhenReady(qemu);
  t.teardown(() => client.close());
  const pid = qemu.child.pid!;

  process.kill(pid, "SIGSTOP");
  const err = await client.execute("query-status", undefined, { timeoutMs: 300 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof QmpTimeout, String(err));
  t.match(err, { command: "query-status", timeoutMs: 300 });
  process.kill(pid, "SIGCONT");

  // qemu now answers the timed-out command late (dropped), then this one.
  t.match(await client.execute("query-status", undefined, { timeoutMs: 5_000 }), { running: false });
  t.match(await client.execute("query-kvm"), { enabled: false });
  t.equal(qemu.child.exitCode, null, "qemu still runs");
  let closed = false;
  void client.closed.then(() => (closed = true));
  await sleep(0);
  t.notOk(closed, "the connection survived the timeout and the late reply");
});
