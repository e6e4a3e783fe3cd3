// The actions that change a VM's devices or what they hold: disks and NICs
// (hot-plugged while it runs), the balloon, the CD-ROM's disc, a disk's size and
// the cloud-init seed, each under the VM's lock in its own name.
import { assertNever, type ActionOf } from "../../definition/vm-action.js";
import { setCloudInit } from "../guest/cloud-init-seed.js";
import { setBalloonTarget } from "../guest/guest-balloon.js";
import type { Vm } from "../vm.js";
import type { ActionContext } from "./action-context.js";
import { changeCdrom } from "./change-cdrom.js";
import { addDisk, addNic, DEFAULT_RELEASE_TIMEOUT_SEC, findNic, removeDisk, removeNic } from "./hotplug.js";
import { resizeDisk } from "./resize-disk.js";

export type DeviceAction = ActionOf<
  "add-disk" | "remove-disk" | "add-nic" | "remove-nic" | "set-balloon" | "change-cdrom" | "eject-cdrom" | "resize-disk" | "set-cloud-init"
>;

export async function performDeviceAction(c: ActionContext, vm: Vm, action: DeviceAction): Promise<void> {
  const { host } = c;
  switch (action.kind) {
    case "add-disk":
      await vm.lock.run("add-disk", () => addDisk(vm, host, action.disk));
      return;
    case "remove-disk": {
      const timeoutSec = action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC;
      const finish = c.finishRemovalLater(vm.name, { kind: "remove-disk", disk: action.disk });
      await vm.lock.run("remove-disk", () => removeDisk(vm, host, action.disk, timeoutSec, finish));
      return;
    }
    case "add-nic":
      await vm.lock.run("add-nic", () => addNic(vm, host, action.nic));
      return;
    case "remove-nic": {
      const timeoutSec = action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC;
      // By MAC from here on: an index could name another NIC by the time the guest lets go.
      const mac = vm.definition.nics[findNic(vm, action.nic)]!.mac;
      const finish = c.finishRemovalLater(vm.name, { kind: "remove-nic", nic: mac });
      await vm.lock.run("remove-nic", () => removeNic(vm, host, action.nic, timeoutSec, finish));
      return;
    }
    case "set-balloon":
      await vm.lock.run("set-balloon", () => setBalloonTarget(vm, action.targetMiB));
      return;
    case "change-cdrom":
      await vm.lock.run("change-cdrom", () => changeCdrom(vm, host, action.image));
      return;
    case "eject-cdrom":
      await vm.lock.run("eject-cdrom", () => changeCdrom(vm, host, undefined));
      return;
    case "resize-disk":
      await vm.lock.run("resize-disk", () => resizeDisk(vm, host, action.disk, action.sizeGiB));
      return;
    case "set-cloud-init":
      await vm.lock.run("set-cloud-init", () => setCloudInit(vm, host, action.cloudInit));
      return;
    default:
      assertNever(action);
  }
}
