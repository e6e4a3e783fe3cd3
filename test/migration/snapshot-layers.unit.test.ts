// What a storage-copy migration sends of a VM's snapshots and how the destination
// takes it: layer names that cannot leave the VM's directory, the files chosen
// (every layer under a top, every memory state, never a top), a source's record
// refused when it names anything else, uploads checked against their declared
// size and sha256 before they get their name, and the bitmap mapping onto the
// destination's top node names.
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, statfs } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import t from "tap";
import { mappingFor } from "../../src/migration/bitmap-mapping.js";
import { IncomingLayers } from "../../src/migration/incoming-layers.js";
import { chainedDisks, isLayerName, layerFiles, recordProblem } from "../../src/migration/layer-files.js";
import type { SnapshotRecord } from "../../src/vm/snapshots/snapshot-record.js";

const ID = "0b0e9a3c-6c1f-4c55-9a59-2f0d3f3b7a10";

const record = (): SnapshotRecord => ({
  next: 4,
  chains: { data: ["disks/data.qcow2", "snapshots/data.1.qcow2", "snapshots/data.3.qcow2"], root: ["disks/root.qcow2"] },
  snapshots: [
    { name: "s1", createdAt: "2026-01-01T00:00:00Z", memory: true, disks: { data: "disks/data.qcow2" } },
    { name: "s2", createdAt: "2026-01-01T00:01:00Z", memory: false, parent: "s1", disks: { data: "snapshots/data.1.qcow2" } },
  ],
});

t.test("layer names", async (t) => {
  for (const ok of ["disks/data.qcow2", "snapshots/data.12.qcow2", "snapshots/before-upgrade.vmstate"]) t.ok(isLayerName(ok), ok);
  for (const bad of ["snapshots/..", "snapshots/.", "../disks/data.qcow2", "disks/../../etc.qcow2", "snapshots/a/b.qcow2", "disks/x.vmstate", "disks/data.raw", "etc/data.qcow2", "snapshots/.x.qcow2", "snapshots/a..qcow2", "/disks/data.qcow2", "disks/Data.qcow2", "snapshots/data.1.qcow2.part", ""]) {
    t.notOk(isLayerName(bad), `refused: ${JSON.stringify(bad)}`);
  }
});

t.test("the files sent, the disks mirrored with sync top", async (t) => {
  t.same(layerFiles(record()).sort(), ["disks/data.qcow2", "snapshots/data.1.qcow2", "snapshots/s1.vmstate"], "every layer under a top and the memory state; no top");
  t.same([...chainedDisks(record())], ["data"], "only a disk with layers under its top");
  t.equal(recordProblem(record(), ["data", "root"]), undefined, "the source's own record is taken");
});

t.test("a source's record naming anything else is refused", async (t) => {
  const withChain = (chain: string[]) => ({ ...record(), chains: { data: chain } });
  t.match(recordProblem(record(), ["data"]), /chains\.root: no such disk/);
  t.match(recordProblem(withChain(["disks/data.qcow2", "snapshots/../../x.qcow2"]), ["data"]), /not a layer name/);
  t.match(recordProblem(withChain(["disks/data.qcow2", "disks/data.qcow2"]), ["data"]), /twice/);
  const crossed = { ...record(), chains: { data: ["disks/data.qcow2", "snapshots/data.1.qcow2"], root: ["snapshots/data.1.qcow2", "disks/root.qcow2"] } };
  t.match(recordProblem(crossed, ["data", "root"]), /both a top and a layer/);
  const frozenTop = record();
  frozenTop.snapshots[1]!.disks.data = "snapshots/data.3.qcow2";
  t.match(recordProblem(frozenTop, ["data", "root"]), /snapshots\.s2: .* not a layer under disk data's top/, "a snapshot's image must be a layer under the top");
  const outside = record();
  outside.snapshots[0]!.disks.data = "snapshots/..";
  t.match(recordProblem(outside, ["data", "root"]), /snapshots\.s1/, "or it names a file outside the chain");
});

t.test("uploads: checked, then named; adopted whole or not at all; discarded", async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-layers-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const layers = new IncomingLayers(path.join(root, "incoming"));
  const body = Buffer.from("layer bytes");
  const sha256 = createHash("sha256").update(body).digest("hex");
  const up = (file: string, size = body.length, sum = sha256) => ({ vm: "web", migration: ID, file, size, sha256: sum });
  const files = async () => (await readdir(root, { recursive: true })).filter((f) => f.endsWith(".qcow2") || f.includes(".part")).sort();

  await t.rejects(layers.receive(up("disks/data.qcow2", body.length, "0".repeat(64)), Readable.from([body])), { code: "VMH_ERR_VALIDATION" }, "wrong sha256");
  await t.rejects(layers.receive(up("disks/data.qcow2", body.length - 1), Readable.from([body])), { code: "VMH_ERR_VALIDATION" }, "longer than declared");
  await t.rejects(layers.receive(up("disks/data.qcow2", body.length + 1), Readable.from([body])), { code: "VMH_ERR_VALIDATION" }, "shorter than declared");
  await t.rejects(layers.receive(up("snapshots/.."), Readable.from([body])), { code: "VMH_ERR_VALIDATION" }, "a name out of the directory");
  // A peer declaring more than the state disk can hold is refused before a byte is written.
  const fs = await statfs(root);
  const tooBig = up("disks/data.qcow2", fs.bavail * fs.bsize + 1);
  await t.rejects(layers.receive(tooBig, Readable.from([body])), { code: "VMH_ERR_STATE_DISK_FULL", fields: { field: "size" } }, "a size the state disk cannot hold");
  t.same(await files(), [], "a refused upload leaves no file, not even its temp file");

  await layers.receive(up("disks/data.qcow2"), Readable.from([body.subarray(0, 4), body.subarray(4)]));
  const vmDir = path.join(root, "vm");
  await t.rejects(layers.adopt("web", ID, ["disks/data.qcow2", "snapshots/data.1.qcow2"], vmDir), { code: "VMH_ERR_FILE_NOT_FOUND" }, "a layer missing");
  await t.rejects(layers.adopt("web", ID, [], vmDir), { code: "VMH_ERR_VALIDATION" }, "a layer the record does not name");
  await layers.adopt("web", ID, ["disks/data.qcow2"], vmDir);
  t.same(await readFile(path.join(vmDir, "disks/data.qcow2")), body, "the layer is in the VM's directory, byte for byte");
  t.same(await files(), ["vm/disks/data.qcow2"], "and nowhere else");

  await layers.receive(up("snapshots/s1.vmstate"), Readable.from([body]));
  t.equal(await layers.discard("web"), true, "an upload not taken in is discarded");
  t.equal(await layers.discard("web"), false, "once");
  t.same(await readdir(path.join(root, "incoming")), [], "nothing left");

  await layers.receive(up("disks/data.qcow2"), Readable.from([body]));
  await layers.sweep();
  t.same(await files(), ["vm/disks/data.qcow2"], "a daemon's start sweeps every upload away");
});

t.test("bitmaps go to the destination's top node", async (t) => {
  const nodes = [
    { "node-name": "ov-data-3", "dirty-bitmaps": [{ name: "vmh-backup" }] },
    { "node-name": "d-root", "dirty-bitmaps": [] },
  ];
  t.same(mappingFor([{ disk: "data", node: "ov-data-3" }, { disk: "root", node: "d-root" }], nodes), [
    { "node-name": "ov-data-3", alias: "d-data", bitmaps: [{ name: "vmh-backup", alias: "vmh-backup" }] },
    { "node-name": "d-root", alias: "d-root", bitmaps: [] },
  ]);
});
