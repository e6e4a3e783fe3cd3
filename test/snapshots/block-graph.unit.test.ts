// Reading a disk's nodes from qemu's answers: the device's root (the throttle
// filter over the chain, or, in a qemu started with the earlier layout, the top
// format node itself) and the top format node under it, past the implicit filter
// a block job puts there; and an image's file from the names qemu reports. The
// answers are canned copies of qemu 7.2's: the walk is pure logic.
import t from "tap";
import { activeNode, imageFile } from "../../src/vm/snapshots/block-graph.js";
import type { QemuSession } from "../../src/vm/qemu-session.js";

const DEV = "/machine/peripheral/disk-data/virtio-backend";

function session(answers: Record<string, unknown>): QemuSession {
  return { executeUntyped: async (command: string) => answers[command] } as unknown as QemuSession;
}

const named = [
  { "node-name": "t-data", drv: "throttle", file: 'json:{"throttle-group": "throttle0", "driver": "throttle", "file": {"driver": "qcow2"}}' },
  { "node-name": "ov2", drv: "qcow2", file: 'json:{"backing": {"driver": "qcow2"}, "driver": "qcow2", "file": {"driver": "file", "filename": "/vms/v/snapshots/data.2.qcow2"}}' },
  { "node-name": "d-data", drv: "qcow2", file: "/vms/v/disks/data.qcow2" },
];

t.test("the throttle filter is the root; the top format node is its child", async (t) => {
  const s = session({
    "query-block": [{ qdev: DEV, inserted: { "node-name": "t-data", drv: "throttle", file: named[0]!.file } }],
    "x-debug-query-block-graph": {
      nodes: [
        { id: 1, type: "block-backend", name: "" },
        { id: 2, type: "block-driver", name: "t-data" },
        { id: 3, type: "block-driver", name: "ov2" },
        { id: 4, type: "block-driver", name: "d-data" },
      ],
      edges: [
        { parent: 1, child: 2, name: "root" },
        { parent: 2, child: 3, name: "file" },
        { parent: 3, child: 4, name: "backing" },
      ],
    },
    "query-named-block-nodes": named,
  });
  t.same(await activeNode(s, "data"), { root: "t-data", node: "ov2", file: "/vms/v/snapshots/data.2.qcow2", throttled: true });
});

t.test("a backup's implicit filter between the throttle and the top is skipped", async (t) => {
  const s = session({
    "query-block": [{ qdev: DEV, inserted: { "node-name": "t-data", drv: "throttle", file: named[0]!.file } }],
    "x-debug-query-block-graph": {
      nodes: [
        { id: 2, type: "block-driver", name: "t-data" },
        { id: 5, type: "block-driver", name: "#block512" },
        { id: 4, type: "block-driver", name: "d-data" },
      ],
      edges: [
        { parent: 2, child: 5, name: "file" },
        { parent: 5, child: 4, name: "file" },
      ],
    },
    "query-named-block-nodes": named,
  });
  t.same(await activeNode(s, "data"), { root: "t-data", node: "d-data", file: "/vms/v/disks/data.qcow2", throttled: true });
});

t.test("a qemu started with the earlier layout: the top format node is the root, not throttled above", async (t) => {
  const s = session({
    "query-block": [{ qdev: "disk-data", inserted: { "node-name": "d-data", drv: "qcow2", file: "/vms/v/disks/data.qcow2" } }],
    "query-named-block-nodes": named,
  });
  t.same(await activeNode(s, "data"), { root: "d-data", node: "d-data", file: "/vms/v/disks/data.qcow2", throttled: false });
});

t.test("an image's file from the name qemu reports", async (t) => {
  t.equal(imageFile("/vms/v/disks/data.qcow2"), "/vms/v/disks/data.qcow2", "a plain path");
  t.equal(imageFile(named[1]!.file), "/vms/v/snapshots/data.2.qcow2", "an overlay added with backing null");
  const overFilter = 'json:{"driver": "qcow2", "file": {"driver": "throttle", "throttle-group": "throttle0", "file": {"driver": "file", "filename": "/vms/v/snapshots/data.1.qcow2"}}}';
  t.equal(imageFile(overFilter), "/vms/v/snapshots/data.1.qcow2", "an overlay over a throttle filter of its own");
  t.equal(imageFile("json:{not json"), undefined, "a name that cannot be read names nothing");
});
