// What an action's handler gets from the registry besides the VM: the host, the
// fleet ownership of VMs, the host's memory admission, and a way to have an
// action performed again later (a device removal the guest has not yet let go).
import type { ActionOf } from "../../definition/vm-action.js";
import type { MemoryAdmission } from "../../host/memory-admission.js";
import type { HostContext } from "../host-context.js";
import type { VmOwnership } from "../vm-ownership.js";

export interface ActionContext {
  host: HostContext;
  ownership: VmOwnership;
  memory: MemoryAdmission;
  /** Performs this removal once the guest lets go of the device (or qemu ends). */
  finishRemovalLater(vm: string, action: ActionOf<"remove-disk" | "remove-nic">): () => void;
}
