// The operator's two ways into a VM's qemu: the second QMP monitor (a socket for
// qemu's own tools, which the daemon never uses) and the pass-through endpoint
// (`vmctl qmp`), which runs one command on the daemon's own connection and logs it.
import http from "node:http";
import t from "tap";
import { QmpClient } from "../../src/qmp/qmp-client.js";
import { defineGuestVm, problem, runVmctl, startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";

const VM = "dbg";

interface VmJson {
  pid?: number;
  qmpDebugSocket?: string;
}

async function debugStatus(socket: string): Promise<string> {
  const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 10_000 });
  try {
    const st = await qmp.execute("query-status", undefined, { timeoutMs: 10_000 });
    return st.status;
  } finally {
    await qmp.close();
  }
}

/** The data of the first event of `type` for the VM in the event stream (from the ring's start). */
function firstEvent(d: TestDaemon, vm: string, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: d.socket, path: `/v1/events?vm=${vm}&since=0`, agent: false }, (res) => {
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        const hit = buf.split("\n\n").find((b) => b.includes(`event: ${type}\n`));
        const data = hit?.split("\n").find((l) => l.startsWith("data:"));
        if (!data) return;
        clearTimeout(timer);
        req.destroy();
        resolve((JSON.parse(data.slice(5)) as { data: Record<string, unknown> }).data);
      });
    });
    const timer = setTimeout(() => (req.destroy(), reject(new Error(`no ${type} event`))), 20_000);
    req.on("error", () => {});
  });
}

t.test("second QMP monitor and vmctl qmp", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, VM);

  t.same(await problem(d, "POST", `/v1/vms/${VM}/qmp`, { execute: "query-status" }), { status: 409, code: "VMH_ERR_VM_STATE" }, "a stopped VM has no qemu to ask");
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const boot = await waitForBoot(d, VM, 1);

  const vm = await d.api.json<VmJson>("GET", `/v1/vms/${VM}`);
  t.ok(vm.qmpDebugSocket, "the VM view names the debug monitor's socket");
  t.equal(await debugStatus(vm.qmpDebugSocket!), "running", "the second monitor answers query-status");
  // The daemon keeps its own monitor meanwhile: both are usable at once.
  const [viaDebug, viaDaemon, viaPassthrough] = await Promise.all([
    debugStatus(vm.qmpDebugSocket!),
    d.api.json<{ state: string }>("GET", `/v1/vms/${VM}`),
    d.api.json<{ return: { status: string } }>("POST", `/v1/vms/${VM}/qmp`, { execute: "query-status" }),
  ]);
  t.equal(viaDebug, "running");
  t.equal(viaDaemon.state, "running", "and the daemon still reads its own");
  t.equal(viaPassthrough.return.status, "running", "and runs a pass-through command on it");

  const ok = await runVmctl(d, "qmp", VM, '{"execute":"query-status"}');
  t.equal(ok.code, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout), { status: "running", running: true }, "vmctl qmp prints qemu's return value");
  t.match(d.log(), /"vm":"dbg","command":"query-status"[^\n]*qmp pass-through/, "the daemon logs who asked what");
  t.same(await firstEvent(d, VM, "qmp.passthrough"), { command: "query-status" }, "and publishes it on the event stream");

  const bad = await runVmctl(d, "qmp", VM, '{"execute":"query-name","arguments":{"bogus":1}}');
  t.not(bad.code, 0, "a command qemu refuses fails vmctl");
  t.match(bad.stderr, /bogus[^\n]*\(VMH_ERR_QMP_COMMAND, HTTP 422\)/, "with qemu's words and the code");
  const refused = await d.api.request("POST", `/v1/vms/${VM}/qmp`, { execute: "query-name", arguments: { bogus: 1 } });
  t.equal(refused.status, 422);
  t.match(JSON.parse(refused.body.toString()), { code: "VMH_ERR_QMP_COMMAND", qemuClass: "GenericError" });
  const unknown = await runVmctl(d, "qmp", VM, '{"execute":"no-such-command"}');
  t.match(unknown.stderr, /not on the pass-through allowlist \(VMH_ERR_QMP_NOT_ALLOWED, HTTP 403\)/, "a command off the allowlist never reaches qemu");
  const malformed = await d.api.request("POST", `/v1/vms/${VM}/qmp`, { execute: 5 });
  t.equal(malformed.status, 400, "a malformed body is a 400");
  t.match(JSON.parse(malformed.body.toString()), { code: "VMH_ERR_VALIDATION", field: "execute" }, "naming the field");
  const field = JSON.parse((await d.api.request("POST", `/v1/vms/${VM}/qmp`, { execute: "query-status", extra: 1 })).body.toString());
  t.match(field, { code: "VMH_ERR_VALIDATION" }, "unknown fields are refused");
  t.match(await problem(d, "POST", `/v1/vms/${VM}/qmp`, { execute: "qmp_capabilities" }), { status: 400 }, "capabilities are the daemon's business");

  // A daemon crash leaves qemu and both monitors as they were.
  await d.kill();
  t.equal(await debugStatus(vm.qmpDebugSocket!), "running", "the debug monitor answers while the daemon is down");
  await d.restart();
  const after = await d.api.json<VmJson & { state: string }>("GET", `/v1/vms/${VM}`);
  t.equal(after.pid, vm.pid, "the same qemu is adopted");
  t.equal(after.state, "running");
  t.equal(await debugStatus(vm.qmpDebugSocket!), "running", "and its debug monitor still answers");
  const again = await runVmctl(d, "qmp", VM, '{"execute":"query-name"}');
  t.equal(again.code, 0, again.stderr);
  const markers = await waitForBoot(d, VM, 1);
  t.equal(markers.bootId, boot.bootId, "the guest never noticed");
});
