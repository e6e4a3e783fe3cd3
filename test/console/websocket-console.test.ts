// The interactive serial console over WebSocket, against the test guest's shell
// (vmh.shell=1): typing reaches the guest, every viewer sees the output, one
// writer at a time, the log keeps it all, and a restarted daemon attaches again
// to the same running guest.
import t from "tap";
import { startDaemon, waitForBoot, waitForConsole, waitForVm, defineShellVm } from "../helpers/daemon.js";
import { openConsole, RefusedUpgrade } from "../helpers/console-socket.js";

const VM = "con";

t.test("WebSocket console: writer, viewers, refusals, log, daemon restart", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);

  const refusal = async (vm: string, mode?: "ro" | "rw"): Promise<RefusedUpgrade> => {
    const err = await openConsole(d, vm, mode).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof RefusedUpgrade)) throw new Error(`expected a refused upgrade, got ${String(err)}`);
    return err;
  };
  const stopped = await refusal(VM, "rw");
  t.equal(stopped.status, 409, "a stopped VM's console is refused before the upgrade");
  t.equal(stopped.problem.code, "VMH_ERR_VM_STATE");
  t.equal((await refusal("nope")).problem.code, "VMH_ERR_VM_NOT_FOUND");
  t.equal((await refusal(VM, "xx" as "rw")).problem.code, "VMH_ERR_VALIDATION", "mode is ro or rw");

  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const boot = await waitForBoot(d, VM, 1);
  await waitForConsole(d, VM, /vmh# /);

  const writer = await openConsole(d, VM, "rw");
  const viewer = await openConsole(d, VM);
  writer.type("echo $((6*7))\n");
  await writer.waitFor(/^42\r?$/m);
  t.pass("the writer's keys reach the guest's shell and its output comes back");
  await viewer.waitFor(/echo \$\(\(6\*7\)\)\r?\n42\r?\n/);
  t.pass("a read-only viewer sees the same output");

  const busy = await refusal(VM, "rw");
  t.equal(busy.status, 409, "a second writer is refused");
  t.equal(busy.problem.code, "VMH_ERR_CONSOLE_BUSY");
  const viewer2 = await openConsole(d, VM, "ro");

  // Keys from a read-only viewer never reach the guest.
  viewer.type("echo RO-$((7*8))\n");
  writer.type("echo RW-$((8*8))\n");
  await writer.waitFor(/^RW-64\r?$/m);
  await viewer2.waitFor(/^RW-64\r?$/m);
  t.notMatch(writer.text(), /RO-/, "a read-only viewer's keys are ignored");

  const plain = await d.api.request("GET", `/v1/vms/${VM}/console`);
  t.equal(plain.status, 400, "a plain GET of the WebSocket endpoint is refused");

  // Watching a console keeps no operation lock: the VM can be paused and resumed meanwhile.
  t.equal((await d.api.json<{ state: string }>("POST", `/v1/vms/${VM}/pause`)).state, "paused");
  t.equal((await d.api.json<{ state: string }>("POST", `/v1/vms/${VM}/resume`)).state, "running");

  const log = await waitForConsole(d, VM, /RW-64/);
  t.match(log, /echo \$\(\(6\*7\)\)\r?\n42\r?\n/, "the console log has the command and its output too");

  writer.ws.close();
  await writer.closed;
  const writer2 = await openConsole(d, VM, "rw");
  writer2.type("echo again-$((2+3))\n");
  await writer2.waitFor(/^again-5\r?$/m);
  t.pass("once the writer left, another one may write");

  await d.kill();
  const lost = await Promise.all([viewer.closed, viewer2.closed, writer2.closed]);
  t.ok(lost.every((c) => c.code === 1006), "the daemon's death drops its viewers");
  await d.restart();
  await waitForVm<{ state: string }>(d, VM, (v) => v.state === "running");
  const after = await openConsole(d, VM, "rw");
  after.type("cat /proc/sys/kernel/random/boot_id\n");
  const out = await after.waitFor(/^[0-9a-f-]{36}\r?$/m);
  t.match(out, new RegExp(`^${boot.bootId}\\r?$`, "m"), "a restarted daemon's console reaches the same boot of the guest");

  // A daemon stopped in order (SIGTERM) tells its viewers it is going away; the guest runs on.
  d.proc.kill("SIGTERM");
  t.equal((await after.closed).code, 1001, "SIGTERM closes viewers with 1001 (going away)");
  await new Promise((r) => (d.proc.exitCode !== null ? r(null) : d.proc.once("exit", r)));
  await d.restart();
  await waitForVm<{ state: string }>(d, VM, (v) => v.state === "running");
  const again = await openConsole(d, VM, "rw");
  const watcher = await openConsole(d, VM, "ro");

  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  const [w, v] = await Promise.all([again.closed, watcher.closed]);
  t.equal(w.code, 4000, `viewers are closed when qemu exits (${w.reason})`);
  t.equal(v.code, 4000);
  t.equal((await refusal(VM)).problem.code, "VMH_ERR_VM_STATE", "and the console of the stopped VM is refused");

  // A new qemu: the console attaches to it.
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const second = await waitForBoot(d, VM, 2);
  await waitForConsole(d, VM, new RegExp(`VMH-READY boot_id=${second.bootId}[^]*vmh# `));
  const fresh = await openConsole(d, VM, "rw");
  fresh.type("cat /proc/sys/kernel/random/boot_id\n");
  t.match(await fresh.waitFor(/^[0-9a-f-]{36}\r?$/m), new RegExp(`^${second.bootId}\\r?$`, "m"), "after a restart of qemu the console reaches the new boot");
  t.not(second.bootId, boot.bootId);
});
