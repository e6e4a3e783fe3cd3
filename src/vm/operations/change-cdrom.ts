// Changing or ejecting the disc in a VM's CD-ROM drive = check the image →
// change the disc in qemu (when it runs) → record the definition. A running VM
// gets the change at once through QMP; a stopped one has only its definition
// changed (the drive and disc come with its next start), so either way the
// next start has what the last change left. Journaled with the image asked for:
// a daemon restarted in the middle does it again, which is harmless.
import { VmStateConflict } from "../../errors.js";
import type { VmDefinition } from "../../definition/vm-definition.js";
import type { HostContext } from "../host-context.js";
import { runSteps, type Step } from "../operation-steps.js";
import type { ActionRun } from "./action-run.js";
import { changeMedium, queryCdrom } from "../devices/cdrom-drive.js";
import type { Vm } from "../vm.js";

interface CdromContext {
  vm: Vm;
  host: HostContext;
  /** As the client named it (relative to a pool): what the definition keeps. Undefined: eject. */
  image: string | undefined;
  /** The same, resolved: what qemu opens. */
  file?: string;
  /** What the drive held before the change, to put back if recording fails. */
  previousFile?: string;
  changedLive?: boolean;
}

const steps: Step<CdromContext>[] = [
  {
    name: "check-image",
    journaled: false,
    run: async (c) => {
      if (c.image === undefined) return;
      c.file = (await c.host.pools.resolveFile(c.image, "image")).absolute;
    },
  },
  {
    name: "change-medium",
    run: async (c) => {
      const session = c.vm.session;
      if (!session) return;
      if (!(await queryCdrom(session))) {
        throw new VmStateConflict(c.vm.name, `${c.vm.settledState()} without a CD-ROM drive`, wanted(c));
      }
      c.previousFile = await changeMedium(session, c.file);
      c.changedLive = true;
    },
    undo: async (c) => {
      if (c.changedLive && c.vm.session) await changeMedium(c.vm.session, c.previousFile);
    },
  },
  {
    name: "record-definition",
    run: async (c) => {
      await c.vm.changeDefinition(c.host.store, (d): VmDefinition => ({ ...d, cdrom: c.image === undefined ? {} : { image: c.image } }));
    },
  },
];

/** `image` undefined ejects the disc (the drive stays, empty). */
export async function changeCdrom(vm: Vm, host: HostContext, image: string | undefined, run: ActionRun): Promise<void> {
  // A stopped VM may get a drive by having a disc put in; a running one keeps the
  // drives it started with (a SATA or IDE drive cannot be hot-plugged).
  if (!vm.definition.cdrom && (vm.session || image === undefined)) {
    throw new VmStateConflict(vm.name, `${vm.settledState()} without a CD-ROM drive`, image ? "insert a disc into" : "eject the disc of");
  }
  const action = image === undefined ? { kind: "eject-cdrom" as const } : { kind: "change-cdrom" as const, image };
  await run.journaled(action, () => runSteps(steps, { vm, host, image }, vm.journal, vm.log));
  vm.publish("vm.cdrom", { image: image ?? null });
}

function wanted(c: CdromContext): string {
  return c.image === undefined ? "eject the disc of" : "insert a disc into";
}
