import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { distRoot } from "../helpers/dist-root.js";
import { buildQemuArgv } from "../../src/qemu/qemu-argv.js";
import { vmPaths } from "../../src/store/vm-paths.js";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";

const fixed = new Date("2026-01-01T00:00:00Z");
const paths = vmPaths("/var/lib/vmhostd", "/run/vmhostd", "web-1");

function def(input: unknown) {
  return completeDefinition(vmCreateSchema.parse(input), fixed);
}

t.test("a direct-boot VM with a disk, a NIC and rng", async (t) => {
  const d = def({
    name: "web-1",
    uuid: "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11",
    vcpus: 2,
    memoryMiB: 256,
    boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: "console=ttyS0 quiet" },
    disks: [{ name: "root", sizeGiB: 1 }],
    nics: [{ mac: "52:54:00:aa:bb:cc" }],
  });
  const argv = buildQemuArgv({
    def: d,
    paths,
    accel: "tcg",
    files: { kernel: "/var/lib/vmhostd/images/vmlinuz", initrd: "/var/lib/vmhostd/images/initrd.img", disks: { root: "/var/lib/vmhostd/vms/web-1/disks/root.qcow2" } },
  });
  // The expected argv is a file beside this test: UPDATE_SNAPSHOTS=1 rewrites it after a deliberate change.
  const expectedFile = path.join(distRoot, "..", "test/qemu/qemu-argv.snapshot.json");
  if (process.env.UPDATE_SNAPSHOTS) await writeFile(expectedFile, JSON.stringify(argv, null, 2) + "\n");
  t.same(argv, JSON.parse(await readFile(expectedFile, "utf8")), "argv matches the snapshot");
  // Deterministic: the same definition gives the same argv.
  t.same(buildQemuArgv({ def: d, paths, accel: "tcg", files: { kernel: "/k", initrd: "/i", disks: { root: "/r" } } }),
    buildQemuArgv({ def: d, paths, accel: "tcg", files: { kernel: "/k", initrd: "/i", disks: { root: "/r" } } }));
});

t.test("a path with commas cannot break the block options", async (t) => {
  const d = def({ name: "web-1", uuid: "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11", disks: [{ name: "data", image: "x" }] });
  const evil = "/var/lib/vmhostd/images/a,file.driver=ssh,b.qcow2";
  const argv = buildQemuArgv({ def: d, paths, accel: "kvm", files: { disks: { data: evil } } });
  const blockdevs = argv.filter((_, i) => argv[i - 1] === "-blockdev").map((s) => JSON.parse(s) as Record<string, unknown>);
  t.equal(blockdevs[0]?.filename, evil, "the whole path is one JSON string");
  t.equal(blockdevs[0]?.driver, "file");
  t.ok(argv.includes("host"), "KVM defaults to -cpu host");
});

t.test("boot order puts the disk first", async (t) => {
  const d = def({ name: "web-1", uuid: "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11", boot: { order: ["network", "disk"] }, disks: [{ name: "root", sizeGiB: 1 }] });
  const argv = buildQemuArgv({ def: d, paths, accel: "tcg", files: { disks: { root: "/r" } } });
  const dev = argv.map((a) => (a.startsWith("{") ? (JSON.parse(a) as Record<string, unknown>) : undefined)).find((o) => o?.driver === "virtio-blk-pci");
  t.equal(dev?.bootindex, 101);
});
