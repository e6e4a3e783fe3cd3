// The QMP pass-through played by an API caller who wants more than an operator's
// look into a VM: resume a guest the daemon holds paused, open an NBD listener
// serving its disks, run the human monitor, and a VNC password that must not
// end up in the daemon's log or the event stream. By default all are refused;
// `--qmp-passthrough=all` opens the pass-through and says so at start-up.
import http from "node:http";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { defineGuestVm, startDaemon, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { waitJob } from "../helpers/migration.js";
import { checkHeldEvents } from "../helpers/event-check.js";

const VM = "pt";

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function qmp(d: TestDaemon, execute: string, args?: Record<string, unknown>): Promise<Reply> {
  const r = await d.api.request("POST", `/v1/vms/${VM}/qmp`, args ? { execute, arguments: args } : { execute });
  return { status: r.status, body: JSON.parse(r.body.toString()) as Record<string, unknown> };
}

async function qemuStatus(d: TestDaemon): Promise<string> {
  const r = await qmp(d, "query-status");
  return String((r.body.return as { status?: string } | undefined)?.status);
}

/** The VM's event stream from the ring's start, as raw text, read for at most `ms`. */
function eventStreamText(d: TestDaemon, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const req = http.get({ socketPath: d.socket, path: `/v1/events?vm=${VM}&since=0`, agent: false }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
    });
    req.on("error", () => {});
    setTimeout(() => {
      req.destroy();
      resolve(text);
    }, ms);
  });
}

/** The daemon's output once a line matching `re` has arrived (it is written asynchronously). */
async function logWith(d: TestDaemon, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  while (!re.test(d.log()) && Date.now() < until) await sleep(50);
  return d.log();
}

/** Whether anything accepts a TCP connection on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.setTimeout(2000, () => (s.destroy(), resolve(false)));
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

t.test("the pass-through is an operator's look, not a back door", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const secret = `pw-${randomBytes(6).toString("hex")}`;
  await defineGuestVm(d, VM, { disks: [{ name: "root", sizeGiB: 1 }] });
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForBoot(d, VM, 1);
  t.notMatch(d.log(), /qmp-passthrough=all/, "no warning with the default");

  await t.test("queries and guest-only actions run; cont is refused and the guest stays paused", async (t) => {
    t.equal((await qmp(d, "query-block")).status, 200, "a query runs");
    const paused = await qmp(d, "stop");
    t.equal(paused.status, 200, "stop (pause the vCPUs) is a guest-only action");
    await waitForVm<{ state: string }>(d, VM, (v) => v.state === "paused");
    const cont = await qmp(d, "cont");
    t.equal(cont.status, 403, "cont is refused");
    t.match(cont.body, { code: "VMH_ERR_QMP_NOT_ALLOWED", field: "execute", command: "cont", detail: /resume/ });
    t.equal(await qemuStatus(d), "paused", "qemu says the guest is still paused");
    t.equal((await d.api.json<{ state: string }>("GET", `/v1/vms/${VM}`)).state, "paused", "and so does the API");
    t.match(await logWith(d, /"command":"cont"[^\n]*qmp pass-through refused/), /"command":"cont"[^\n]*qmp pass-through refused/, "the refusal is logged");
    await d.api.json("POST", `/v1/vms/${VM}/resume`);
    t.equal(await qemuStatus(d), "running", "the API's resume continues it");
  });

  await t.test("no listener, no human monitor, no file", async (t) => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const nbd = await qmp(d, "nbd-server-start", { addr: { type: "inet", data: { host: "127.0.0.1", port: String(port) } } });
    t.equal(nbd.status, 403, "nbd-server-start is refused");
    t.match(nbd.body, { code: "VMH_ERR_QMP_NOT_ALLOWED", command: "nbd-server-start" });
    t.equal(await listening(port), false, "and nothing listens on its port");
    const hmp = await qmp(d, "human-monitor-command", { "command-line": "info status" });
    t.equal(hmp.status, 403, "human-monitor-command is refused");
    for (const [cmd, args] of [
      ["chardev-add", { id: "x", backend: { type: "file", data: { out: "/tmp/x" } } }],
      ["getfd", { fdname: "x" }],
      ["screendump", { filename: "/tmp/x.ppm" }],
      ["migrate", { uri: "tcp:127.0.0.1:1" }],
      ["block-export-add", { type: "nbd", id: "e", "node-name": "d-root" }],
      ["no-such-command", undefined],
    ] as const) {
      t.equal((await qmp(d, cmd, args as Record<string, unknown> | undefined)).status, 403, `${cmd} is refused`);
    }
  });

  await t.test("a password in the arguments reaches neither the log nor the event stream", async (t) => {
    const r = await qmp(d, "set_password", { protocol: "vnc", password: secret });
    t.equal(r.status, 403, "set_password is not on the allowlist");
    const log = await logWith(d, /"command":"set_password"[^\n]*qmp pass-through refused/);
    t.match(log, /"command":"set_password","arguments":\{"protocol":"vnc","password":"<redacted>"\}/, "logged, redacted");
    t.notOk(log.includes(secret), "the password is not in the log");
  });

  await t.test("actions wait for a running backup: 409, queries still answer", async (t) => {
    const job = await d.api.json<JobView>("POST", `/v1/vms/${VM}/disks/root/backup`, { target: "pt-backup.raw", format: "raw", speedMiBps: 1 });
    await waitJob(d, job.id, (j) => j.phase === "copying", 60_000);
    const busy = await qmp(d, "send-key", { keys: [{ type: "qcode", data: "a" }] });
    t.equal(busy.status, 409, "send-key while the backup copies");
    t.match(busy.body, { code: "VMH_ERR_VM_BUSY", operation: "backup" });
    const jobs = await qmp(d, "query-block-jobs");
    t.equal(jobs.status, 200, "a query runs without the lock");
    t.match(jobs.body.return, [{ device: "backup-root" }], "and shows the backup");
    await d.api.request("POST", `/v1/jobs/${job.id}/cancel`);
    await waitJob(d, job.id, (j) => j.state !== "running", 30_000);
    t.equal((await qmp(d, "send-key", { keys: [{ type: "qcode", data: "a" }] })).status, 200, "after it, the action runs");
  });

  await t.test("actions wait for an operation in flight: 409", async (t) => {
    const pid = (await d.api.json<{ pid: number }>("GET", `/v1/vms/${VM}`)).pid;
    // A frozen qemu holds the pause operation (and its lock) until its QMP deadline.
    process.kill(pid, "SIGSTOP");
    try {
      const pausing = d.api.request("POST", `/v1/vms/${VM}/pause`);
      await waitForVm<{ operation?: { name: string } }>(d, VM, (v) => v.operation?.name === "pause", 5_000);
      const busy = await qmp(d, "system_reset");
      t.equal(busy.status, 409, "system_reset while a pause runs");
      t.match(busy.body, { code: "VMH_ERR_VM_BUSY", operation: "pause" });
      const backup = await d.api.request("POST", `/v1/vms/${VM}/disks/root/backup`, { target: "pt-busy.raw", format: "raw" });
      t.equal(backup.status, 409, "and so is a backup");
      t.match(JSON.parse(backup.body.toString()), { code: "VMH_ERR_VM_BUSY" });
      process.kill(pid, "SIGCONT");
      await pausing;
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await waitForVm<{ operation?: unknown }>(d, VM, (v) => !v.operation, 15_000);
    await sleep(100);
  });

  await t.test("--qmp-passthrough=all opens it, with a warning, and still redacts", async (t) => {
    await d.kill();
    await d.restart(["--qmp-passthrough", "all"]);
    await waitForVm<{ state: string }>(d, VM, (v) => v.state === "running" || v.state === "paused");
    t.match(d.log(), /"level":40[^\n]*qmp-passthrough=all/, "the start-up log warns");
    if ((await qemuStatus(d)) !== "paused") t.equal((await qmp(d, "stop")).status, 200);
    await waitForVm<{ state: string }>(d, VM, (v) => v.state === "paused");
    const cont = await qmp(d, "cont");
    t.equal(cont.status, 200, "cont runs");
    await waitForVm<{ state: string }>(d, VM, (v) => v.state === "running");
    t.equal(await qemuStatus(d), "running");
    const r = await qmp(d, "set_password", { protocol: "vnc", password: secret });
    t.ok(r.status === 200 || r.status === 422, `set_password reaches qemu (${r.status})`);
    await logWith(d, /"command":"set_password"[^\n]*may change the VM/);
    const events = await eventStreamText(d);
    const published = events.split("\n\n").filter((b) => b.includes("event: qmp.passthrough\n") && b.includes('"command":"set_password"'));
    t.equal(published.length, 1, "the event stream has the command");
    t.match(published[0], /"password":"<redacted>"/, "redacted");
    t.notOk(events.includes(secret), "the password is not in the event stream");
    t.notOk(d.log().includes(secret), "nor in the log, with QMP traffic logged at debug");
    t.match(d.log(), /"qmp command"/, "(which it is)");
    await checkHeldEvents(t, d, ["vm.adopted", "qmp.passthrough"]);
  });
});
