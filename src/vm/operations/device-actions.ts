// The actions that change a VM's devices or what they hold: disks and NICs
// (hot-plugged while it runs), the balloon, the CD-ROM's disc, a disk's size and
// the cloud-init seed (perform runs each under the VM's lock in its own name).
import { assertNever, type ActionOf } from "../../definition/vm-action.js";
import { setCloudInit } from "../guest/cloud-init-seed.js";
import { setBalloonTarget } from "../guest/guest-balloon.js";
import type { Vm } from "../vm.js";
import type { ActionContext } from "./action-context.js";
import type { ActionRun } from "./action-run.js";
import { changeCdrom } from "./change-cdrom.js";
import { addDisk, addNic, DEFAULT_RELEASE_TIMEOUT_SEC, findNic, removeDisk, removeNic } from "./hotplug.js";
import { resizeDisk } from "./resize-disk.js";
import { setNicFilter } from "./nic-filter-change.js";
import { setLimits } from "./set-limits.js";

export type DeviceAction = ActionOf<
  | "add-disk"
  | "remove-disk"
  | "add-nic"
  | "remove-nic"
  | "set-balloon"
  | "change-cdrom"
  | "eject-cdrom"
  | "resize-disk"
  | "set-cloud-init"
  | "set-nic-filter"
  | "set-limits"
>;

export async function performDeviceAction(c: ActionContext, vm: Vm, action: DeviceAction, run: ActionRun): Promise<void> {
  const { host } = c;
  switch (action.kind) {
    case "add-disk":
      return await addDisk(vm, host, action.disk, run);
    case "remove-disk": {
      const finish = c.finishRemovalLater(vm.name, { kind: "remove-disk", disk: action.disk });
      return await removeDisk(vm, host, action.disk, action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC, finish, run);
    }
    case "add-nic":
      await addNic(vm, host, action.nic, run);
      return;
    case "remove-nic": {
      // By MAC from here on: an index could name another NIC by the time the guest lets go.
      const mac = vm.definition.nics[findNic(vm, action.nic)]!.mac;
      const finish = c.finishRemovalLater(vm.name, { kind: "remove-nic", nic: mac });
      return await removeNic(vm, host, action.nic, action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC, finish, run);
    }
    case "set-balloon":
      await setBalloonTarget(vm, action.targetMiB);
      return;
    case "change-cdrom":
      return await changeCdrom(vm, host, action.image, run);
    case "eject-cdrom":
      return await changeCdrom(vm, host, undefined, run);
    case "resize-disk":
      return await resizeDisk(vm, host, action.disk, action.sizeGiB, run);
    case "set-cloud-init":
      return await setCloudInit(vm, host, action.cloudInit);
    case "set-nic-filter":
      return await setNicFilter(vm, host, findNic(vm, action.nic), { addresses: action.addresses, filtering: action.filtering });
    case "set-limits":
      return await setLimits(vm, host, action.patch);
    default:
      assertNever(action);
  }
}
