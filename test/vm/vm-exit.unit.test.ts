// How a qemu's end is named in the VM's last exit.
import t from "tap";
import { lastExitOf } from "../../src/vm/vm-exit.js";

t.test("the reason: the daemon's own, the guest's power-off, or a crash", async (t) => {
  t.match(lastExitOf({ code: 0, signal: null, shutdownReason: "host-qmp-quit" }, "shutdown-timeout"), { reason: "shutdown-timeout", exitCode: 0 });
  t.match(lastExitOf({ code: 0, signal: null, shutdownReason: "guest-shutdown" }, undefined), { reason: "guest-shutdown", detail: "qemu shutdown reason: guest-shutdown" });
  t.match(lastExitOf({ code: 0, signal: null, shutdownReason: "host-qmp-quit" }, undefined), { reason: "host-stop" });
  t.match(lastExitOf({ code: 0, signal: null, shutdownReason: "guest-panic" }, undefined), { reason: "crashed" });
  const killed = lastExitOf({ code: null, signal: "SIGKILL" }, undefined);
  t.match(killed, { reason: "crashed", signal: "SIGKILL" });
  t.notOk("detail" in killed, "no shutdown reason, no detail");
});
