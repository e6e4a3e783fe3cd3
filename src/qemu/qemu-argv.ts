// qemu's command line, rendered from the machine plan (machine-plan.ts): same
// definition, same argv, byte for byte (snapshot-tested). Devices, block nodes,
// objects and netdevs are written in qemu's JSON syntax so no file name or id can
// break its comma-separated option parser. Nothing reads this argv back to learn
// what a start made; the plan says that. Only a qemu that is already running
// (perhaps started by an older daemon) is read from its argv (running-argv.ts).
import { buildMachinePlan, type PlanInputs } from "./machine-plan.js";
import type { MachinePlan, PlanEntry, SocketChardev } from "./plan-types.js";

export type { Accel } from "./plan-types.js";

/** The argv of a start: the plan of the definition, rendered. */
export function buildQemuArgv(inputs: PlanInputs): string[] {
  return renderArgv(buildMachinePlan(inputs));
}

export function renderArgv(plan: MachinePlan): string[] {
  const pflash = plan.pflash ? `,pflash0=${plan.pflash.code},pflash1=${plan.pflash.vars}` : "";
  const argv: string[] = [
    "-name", `guest=${plan.name},debug-threads=on`,
    "-uuid", plan.uuid,
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine", `${plan.machine},accel=${plan.accel}${pflash}`,
    "-cpu", plan.cpu,
    "-smp", String(plan.vcpus),
    "-m", `${plan.memoryMiB}M`,
    "-display", "none",
    "-pidfile", plan.pidfile,
  ];
  for (const mon of plan.monitors) argv.push("-chardev", chardevOption(mon), "-mon", `chardev=${mon.id},mode=control`);
  argv.push(
    "-chardev", chardevOption(plan.serial),
    "-serial", `chardev:${plan.serial.id}`,
    "-msg", "timestamp=on",
    // A guest power-off pauses qemu instead of ending it: the daemon sees why the run
    // ended and ends qemu itself, even if the guest powered off while the daemon was down.
    "-action", "shutdown=pause",
    // seccomp: no obsolete syscalls, no setuid/setgid, no fork/exec, no scheduling
    // or resource changes. qemu already runs unprivileged (see qemu-launcher).
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
  );
  if (plan.kernel) {
    argv.push("-kernel", plan.kernel.kernel);
    if (plan.kernel.initrd) argv.push("-initrd", plan.kernel.initrd);
    if (plan.kernel.cmdline !== undefined) argv.push("-append", plan.kernel.cmdline);
  }
  for (const entry of plan.entries) argv.push(...entryArgs(entry));
  if (plan.incoming) argv.push("-incoming", "defer");
  return argv;
}

function entryArgs(e: PlanEntry): string[] {
  switch (e.kind) {
    case "object":
      return ["-object", JSON.stringify(e.object)];
    case "blockdev":
      return ["-blockdev", JSON.stringify(e.node)];
    case "netdev":
      return ["-netdev", JSON.stringify(e.netdev)];
    case "device":
      return ["-device", JSON.stringify(e.device)];
    case "chardev":
      return ["-chardev", chardevOption(e.chardev)];
    case "vnc":
      return ["-vnc", `unix:${e.socket}`];
  }
}

/** In -chardev's key=value syntax, as it always was: its paths are the daemon's own (the VM's directories), never a user's. */
function chardevOption(c: SocketChardev): string {
  const log = c.logfile !== undefined ? `,logfile=${c.logfile},logappend=on` : "";
  return `socket,id=${c.id},path=${c.path},server=on,wait=off${log}`;
}
