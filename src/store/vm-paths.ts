// Where each VM's files live. Durable things (definition, disks, logs, journal)
// sit under the state directory; things that only mean something while qemu
// runs (sockets, pidfile, runtime record) sit under the run directory.
import path from "node:path";

export interface VmPaths {
  dir: string;
  definition: string;
  disksDir: string;
  consoleLog: string;
  qemuLog: string;
  lastExit: string;
  journal: string;
  /** The VM's own copy of the UEFI variable store (boot entries), made from OVMF's template. */
  uefiVars: string;
  /** The cloud-init NoCloud seed (an ISO labelled cidata), made from the definition's cloudInit. */
  cloudInitSeed: string;
  runDir: string;
  /** Where qemu creates its sockets and pidfile: owned by the VM's qemu uid, mode 0700. */
  qemuRunDir: string;
  runtime: string;
  pidfile: string;
  qmpSocket: string;
  /** A second QMP monitor for an operator's own tools; the daemon never connects to it. */
  qmpDebugSocket: string;
  consoleSocket: string;
  /** qemu's VNC server for the VM's display; only a local client (or the daemon) reaches it. */
  vncSocket: string;
  /** The guest agent's virtio-serial channel (qemu-ga in the guest, if it runs one). */
  qgaSocket: string;
}

export function vmPaths(stateDir: string, runDir: string, name: string): VmPaths {
  const dir = path.join(stateDir, "vms", name);
  const run = path.join(runDir, "vms", name);
  // The daemon's runtime record stays in `run` (root's); qemu writes only below `q`.
  const q = path.join(run, "qemu");
  return {
    dir,
    definition: path.join(dir, "definition.json"),
    disksDir: path.join(dir, "disks"),
    consoleLog: path.join(dir, "console.log"),
    qemuLog: path.join(dir, "qemu.log"),
    lastExit: path.join(dir, "last-exit.json"),
    journal: path.join(dir, "operation.json"),
    uefiVars: path.join(dir, "uefi-vars.fd"),
    cloudInitSeed: path.join(dir, "cidata.iso"),
    runDir: run,
    qemuRunDir: q,
    runtime: path.join(run, "runtime.json"),
    pidfile: path.join(q, "qemu.pid"),
    qmpSocket: path.join(q, "qmp.sock"),
    qmpDebugSocket: path.join(q, "qmp-debug.sock"),
    consoleSocket: path.join(q, "console.sock"),
    vncSocket: path.join(q, "vnc.sock"),
    qgaSocket: path.join(q, "qga.sock"),
  };
}

export function diskPath(paths: VmPaths, disk: { name: string; format: string }): string {
  return path.join(paths.disksDir, `${disk.name}.${disk.format}`);
}
