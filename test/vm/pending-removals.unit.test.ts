// The waits for a guest to release hot-removed devices: listed sorted, each
// ended by its own signal, a superseded wait left alone, all aborted with qemu.
import t from "tap";
import { PendingRemovals } from "../../src/vm/pending-removals.js";

t.test("each wait ends by its own abort", async (t) => {
  const r = new PendingRemovals();
  const nic = r.leave("nic1");
  const disk = r.leave("disk-data");
  t.same(r.list(), ["disk-data", "nic1"]);
  t.equal(r.has("nic1"), true);

  const again = r.leave("nic1");
  r.end("nic1", undefined, nic);
  t.equal(r.has("nic1"), true, "an earlier wait does not end the one that replaced it");
  r.end("nic1", "superseded");
  t.equal(again.reason, "superseded", "ended with a reason: the wait is aborted with it");
  t.equal(r.has("nic1"), false);

  r.abortAll();
  t.equal(disk.aborted, true, "qemu ended: every wait ends");
  t.same(r.list(), []);
});
