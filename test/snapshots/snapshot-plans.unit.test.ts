// The record arithmetic of snapshots: which overlays a create, revert or delete
// makes or merges, and what the record says afterwards, including the refusals.
import t from "tap";
import { planCreate, planDelete, planRevert } from "../../src/vm/snapshots/snapshot-plans.js";
import { emptyRecord, referencedFiles, backingNameFor, type SnapshotRecord } from "../../src/vm/snapshots/snapshot-record.js";

const now = "2026-01-01T00:00:00.000Z";
const base = { a: ["disks/a.qcow2"], b: ["disks/b.qcow2"] };

function take(r: SnapshotRecord, name: string, max = 16): SnapshotRecord {
  const chains = { a: r.chains.a ?? base.a, b: r.chains.b ?? base.b };
  return planCreate(r, chains, { vm: "v", name, memory: false, max, now }).record;
}

t.test("create: one overlay per disk on its top, numbered for ever", async (t) => {
  const p = planCreate(emptyRecord(), base, { vm: "v", name: "s1", memory: false, max: 16, now });
  t.same(p.overlays, [
    { disk: "a", file: "snapshots/a.1.qcow2", below: "disks/a.qcow2" },
    { disk: "b", file: "snapshots/b.2.qcow2", below: "disks/b.qcow2" },
  ]);
  t.same(p.record.snapshots[0]!.disks, { a: "disks/a.qcow2", b: "disks/b.qcow2" });
  t.equal(p.record.next, 3);
  const r2 = take(p.record, "s2");
  t.equal(r2.snapshots[1]!.parent, "s1");
  t.same(r2.chains.a, ["disks/a.qcow2", "snapshots/a.1.qcow2", "snapshots/a.3.qcow2"]);
  t.throws(() => take(r2, "s2"), { code: "VMH_ERR_SNAPSHOT_EXISTS" });
  t.throws(() => take(r2, "s3", 2), { code: "VMH_ERR_TOO_MANY_SNAPSHOTS" });
});

t.test("revert: a fresh overlay on the frozen image; later layers and snapshots go", async (t) => {
  const r = take(take(take(emptyRecord(), "s1"), "s2"), "s3");
  const p = planRevert(r, "v", "s2");
  t.same(p.record.snapshots.map((s) => s.name), ["s1", "s2"]);
  t.same(p.record.chains.a, ["disks/a.qcow2", "snapshots/a.1.qcow2", "snapshots/a.7.qcow2"]);
  t.same(p.overlays[0], { disk: "a", file: "snapshots/a.7.qcow2", below: "snapshots/a.1.qcow2" });
  t.notOk(referencedFiles(p.record).has("snapshots/a.5.qcow2"), "the dropped layers are no longer named, so they are swept");
  t.throws(() => planRevert(r, "v", "nope"), { code: "VMH_ERR_SNAPSHOT_NOT_FOUND" });
});

t.test("delete: the layer over the frozen image merges into it", async (t) => {
  const r = take(take(take(emptyRecord(), "s1"), "s2"), "s3");
  const middle = planDelete(r, "v", "s2");
  t.same(middle.merges[0], { disk: "a", base: "snapshots/a.1.qcow2", top: "snapshots/a.3.qcow2", above: "snapshots/a.5.qcow2" });
  t.same(middle.record.chains.a, ["disks/a.qcow2", "snapshots/a.1.qcow2", "snapshots/a.5.qcow2"]);
  t.same(middle.record.snapshots.map((s) => [s.name, s.parent, s.disks.a]), [
    ["s1", undefined, "disks/a.qcow2"],
    ["s3", "s1", "snapshots/a.1.qcow2"],
  ]);
  const newest = planDelete(r, "v", "s3");
  t.equal(newest.merges[0]!.above, undefined, "the newest snapshot's layer is the active one: an active commit");
  const oldest = planDelete(r, "v", "s1");
  t.equal(oldest.merges[0]!.base, "disks/a.qcow2", "the oldest merges into the disk's own base");
  t.equal(oldest.record.snapshots[0]!.parent, undefined);
});

t.test("backing names are relative to the layer", async (t) => {
  t.equal(backingNameFor("snapshots/a.1.qcow2", "disks/a.qcow2"), "../disks/a.qcow2");
  t.equal(backingNameFor("snapshots/a.3.qcow2", "snapshots/a.1.qcow2"), "a.1.qcow2");
});
