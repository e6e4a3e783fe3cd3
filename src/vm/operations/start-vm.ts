// start = check files → create taps → build argv → spawn (and record) → connect QMP → verify → cont.
// The intent is journaled before qemu exists; the runtime record is the durable
// trace of the spawn. A failed step undoes the ones before it, so a start that
// fails leaves no qemu and no journal entry behind. The disk writes overlap
// qemu's own start-up, so they add little to the time a start takes.
import { writeFile } from "node:fs/promises";
import { QemuFailed, VmStateConflict } from "../../errors.js";
import { buildMachinePlan } from "../../qemu/machine-plan.js";
import type { MachineFiles } from "../../qemu/plan-types.js";
import { renderArgv } from "../../qemu/qemu-argv.js";
import { planFiles } from "../../qemu/plan-files.js";
import { launchQemu, type LaunchedQemu } from "../../qemu/qemu-launcher.js";
import { readProcCmdline, readProcState, signalProcess } from "../../qemu/qemu-process.js";
import { readExeIdentity } from "../../qemu/qemu-identity.js";
import { removeRuntimeRecord, writeRuntimeRecord, type RuntimeRecord } from "../../store/runtime-store.js";
import type { HostContext } from "../host-context.js";
import type { VmDefinition } from "../../definition/vm-definition.js";
import { runSteps, type Step } from "../operation-steps.js";
import { QemuSession } from "../qemu-session.js";
import { resolveVmFiles } from "../vm-files.js";
import { checkDisksBeforeStart } from "../devices/disk-sources.js";
import { chainInspector, checkSnapshotChains } from "../snapshots/chain-check.js";
import { ensureUefiVars, findOvmf } from "../devices/uefi-firmware.js";
import { ensureCloudInitSeed } from "../guest/cloud-init-seed.js";
import { prepareQemuFiles } from "../../qemu/qemu-files.js";
import type { QemuIdentity } from "../../qemu/qemu-user.js";
import { createVmTaps, removeVmTaps } from "../../net/tap-devices.js";
import { access } from "node:fs/promises";
import type { Vm } from "../vm.js";
import { placeQemu, releaseLimits } from "../../limits/vm-limits.js";
import type { ActionRun } from "./action-run.js";
import { mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";

/** How long qemu may take to create its QMP socket and answer. */
const CONNECT_DEADLINE_MS = 30_000;

interface StartContext {
  vm: Vm;
  host: HostContext;
  files?: MachineFiles;
  argv?: string[];
  launched?: LaunchedQemu;
  record?: RuntimeRecord;
  recorded?: Promise<void>;
  journalBegun: Promise<unknown>;
  incoming?: boolean;
  vhostNet?: boolean;
  session?: QemuSession;
  /** Who this qemu runs as; undefined: root. */
  identity?: QemuIdentity;
}

const steps: Step<StartContext>[] = [
  {
    name: "check-and-prepare",
    journaled: false,
    // Checks and preparations that do not depend on each other, run side by side.
    run: async (c) => {
      const [, files, firmware, , identity] = await Promise.all([
        checkNoUntrackedQemu(c.vm),
        resolveVmFiles(c.vm.definition, c.host.pools, c.vm.paths),
        prepareUefi(c.vm, c.host),
        ensureCloudInitSeed(c.vm.definition, c.vm.paths),
        c.host.qemuUsers.identityFor(c.vm.name),
        mkdir(c.vm.paths.runDir, { recursive: true, mode: 0o755 }).then(() =>
          Promise.all([rm(c.vm.paths.qmpSocket, { force: true }), rm(c.vm.paths.qmpDebugSocket, { force: true }), rm(c.vm.paths.consoleSocket, { force: true })]),
        ),
      ]);
      // An incoming VM's disks were made here for the migration, or checked by its source.
      if (!c.incoming) await checkDisksBeforeStart(c.vm.definition, files.disks, c.host.pools, chainInspector(c.vm, c.host));
      // A chain's layers may have come from the source's host: their headers are checked here too, and given to qemu.
      await checkSnapshotChains(c.vm, c.host, identity);
      c.files = { ...files, ...(firmware ? { firmware } : {}) };
      c.identity = identity;
    },
  },
  {
    name: "create-taps",
    // After the check for an untracked qemu, whose taps must not be touched. Not
    // journaled: the taps' names derive from the VM's uuid, and a restarted daemon
    // that finds no qemu for the VM removes any it left.
    journaled: false,
    run: async (c) => {
      const taps = await createVmTaps(c.vm.definition, c.vm.log, c.identity);
      if (taps.length > 0 && c.host.accel === "kvm") c.vhostNet = await access("/dev/vhost-net").then(() => true, () => false);
    },
    undo: (c) => removeVmTaps(c.vm.definition, c.vm.log),
  },
  {
    name: "build-argv",
    journaled: false,
    run: async (c) => {
      const plan = buildMachinePlan({
        def: c.vm.definition,
        paths: c.vm.paths,
        accel: c.host.accel,
        files: c.files!,
        incoming: c.incoming,
        vhostNet: c.vhostNet,
        ioUring: c.host.ioUring,
      });
      c.argv = renderArgv(plan);
      // Kept beside the VM's state so an operator can see (and rerun) the exact command.
      await writeFile(path.join(c.vm.paths.dir, "qemu.argv.json"), JSON.stringify([c.host.config.qemu, ...c.argv]) + "\n");
      // Root qemu opens whatever it is given; an unprivileged one gets its files first.
      if (c.identity) await prepareQemuFiles(planFiles(plan), c.vm.paths, c.identity, diskFields(c.vm.definition, c.files!));
      else await mkdir(c.vm.paths.qemuRunDir, { recursive: true, mode: 0o700 });
    },
  },
  {
    name: "spawn",
    // The runtime record (or until it is written, qemu's pidfile) is this step's trace.
    journaled: false,
    // The journal's intent must be on disk before qemu exists.
    run: async (c) => {
      await c.journalBegun;
      c.launched = await launchQemu(c.host.config.qemu, c.argv!, c.vm.paths.qemuLog, c.identity);
      c.vm.log.info({ pid: c.launched.pid, uid: c.identity?.uid ?? 0 }, "qemu launched");
      c.record = {
        pid: c.launched.pid,
        procStartTicks: c.launched.procStartTicks,
        uuid: c.vm.definition.uuid,
        argv: [c.host.config.qemu, ...c.argv!],
        accel: c.host.accel,
        startedAt: new Date().toISOString(),
        qemuVersion: c.host.qemuVersion,
        ...(c.identity ? { uid: c.identity.uid, gid: c.identity.gid } : {}),
      };
      // Written while qemu starts up (tens of ms) rather than before connecting; awaited
      // before the guest runs. Until it is on disk the pidfile identifies this qemu.
      c.recorded = writeRuntimeRecord(c.vm.paths, c.record);
      c.recorded.catch(() => {});
    },
    undo: async (c) => {
      const l = c.launched!;
      await signalProcess(l.pid, l.procStartTicks, "SIGKILL");
      await l.exit;
      await c.recorded?.catch(() => {});
      await removeRuntimeRecord(c.vm.paths).catch(() => {});
      await releaseLimits(c.vm).catch(() => {});
    },
  },
  {
    name: "limits",
    // Before the guest runs a single instruction (qemu waits under -S): a limit can
    // never be late. The cgroup goes with qemu (spawn's undo); a restart re-applies.
    journaled: false,
    run: (c) => placeQemu(c.vm, c.launched!.pid),
  },
  {
    name: "connect",
    journaled: false,
    run: async (c) => {
      const session = new QemuSession(c.vm.name, c.record!, c.vm.paths.qmpSocket, c.vm.log, c.launched!.exit);
      c.session = session;
      await session.connect(CONNECT_DEADLINE_MS);
      const status = await session.refreshStatus(5000);
      // -S: the guest must not have run a single instruction before we say so.
      const expected = c.incoming ? ["inmigrate"] : ["prelaunch", "paused"];
      if (!expected.includes(status)) {
        throw new QemuFailed(`qemu reports ${status} before it was told to run`, { vm: c.vm.name });
      }
      // A wrapper that forks qemu instead of exec'ing it leaves the daemon (and the fence)
      // holding the wrapper's pid: a kill would miss qemu. qemu's own pidfile says which it is.
      const qemuPid = Number((await readFile(c.vm.paths.pidfile, "utf8").catch(() => "")).trim());
      if (qemuPid > 0 && qemuPid !== c.launched!.pid) {
        // The whole process group we spawned (detached: its own session), so the forked qemu goes too.
        try {
          process.kill(-c.launched!.pid, "SIGKILL");
        } catch {
          // gone already
        }
        throw new QemuFailed(`${c.host.config.qemu} runs qemu as another process (pid ${qemuPid}, not ${c.launched!.pid}): a wrapper must exec qemu`, { vm: c.vm.name });
      }
      // Read now that qemu answers: a wrapper script has exec'd the real qemu by then.
      const exe = await readExeIdentity(c.launched!.pid).catch(() => undefined);
      if (exe) {
        c.record!.exe = exe;
        c.recorded = c.recorded!.then(() => writeRuntimeRecord(c.vm.paths, c.record!));
        c.recorded.catch(() => {});
      }
      c.vm.attachSession(session);
    },
    undo: async (c) => {
      c.vm.expectExit("start-failed");
      c.session?.detach();
    },
  },
  {
    name: "cont",
    // qemu's own status (prelaunch or running) tells a restarted daemon whether this was done.
    journaled: false,
    run: async (c) => {
      await c.recorded;
      await c.session!.execute("cont");
      // qemu sends RESUME before its reply to cont, so the status is normally known already.
      if (c.session!.status !== "running") await c.session!.refreshStatus(5000);
    },
  },
];

/**
 * The last line of defence against two qemu for one VM: a qemu the daemon lost
 * track of (its pidfile names a live process with our uuid) blocks a start.
 */
async function checkNoUntrackedQemu(vm: Vm): Promise<void> {
  const pid = Number((await readFile(vm.paths.pidfile, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmdline = await readProcCmdline(pid);
  if (cmdline?.includes(vm.definition.uuid) && (await readProcState(pid)) !== "Z") {
    throw new VmStateConflict(vm.name, `running untracked as pid ${pid}`, "start");
  }
}

/**
 * qemu for the destination of a live migration: the same steps up to a verified
 * QMP connection, with `-incoming defer` and no `cont`. The caller owns the journal.
 */
export async function launchIncomingQemu(vm: Vm, host: HostContext): Promise<void> {
  if (vm.session) throw new VmStateConflict(vm.name, vm.settledState(), "receive");
  const incomingSteps = steps.filter((s) => s.name !== "cont");
  await runSteps(incomingSteps, { vm, host, journalBegun: Promise.resolve(), incoming: true }, vm.journal, vm.log);
}

/** UEFI: OVMF's CODE and the VM's own VARS, made now if the VM has none yet. */
async function prepareUefi(vm: Vm, host: HostContext): Promise<{ code: string; vars: string } | undefined> {
  if (vm.definition.firmware !== "uefi") return undefined;
  const ovmf = await findOvmf(host.config);
  await ensureUefiVars(vm.paths.uefiVars, ovmf);
  return { code: ovmf.code, vars: vm.paths.uefiVars };
}

export async function startVm(vm: Vm, host: HostContext, run: ActionRun): Promise<void> {
  if (vm.session) throw new VmStateConflict(vm.name, vm.settledState(), "start");
  // The intent is written while the checks run; "spawn" waits for it. A start
  // that failed leaves no journal entry behind (rule in action-journal.ts).
  await run.journaled({ kind: "start" }, (journalBegun) => runSteps(steps, { vm, host, journalBegun }, vm.journal, vm.log));
  // The state (running) is published as the start operation ends, by the VM's operation observer.
}

/** A refused disk file is named by the definition's field for it. */
function diskFields(def: VmDefinition, files: MachineFiles): (file: string) => string | undefined {
  const byFile = new Map(def.disks.map((d, i) => [files.disks[d.name], d.image !== undefined ? `disks.${i}.image` : `disks.${i}`]));
  return (file) => byFile.get(file);
}
