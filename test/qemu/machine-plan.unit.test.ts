// The machine plan and its renderers, without qemu: the argv a start gives qemu,
// the QMP commands of a hot-plug, the files handed to qemu before it opens them,
// and the device layout a migration compares.
import { readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { distRoot } from "../helpers/dist-root.js";
import { buildMachinePlan, type PlanInputs } from "../../src/qemu/machine-plan.js";
import { renderArgv } from "../../src/qemu/qemu-argv.js";
import { planDisk, planNic } from "../../src/qemu/plan-devices.js";
import { planFiles } from "../../src/qemu/plan-files.js";
import { planDeviceLayout } from "../../src/qemu/plan-layout.js";
import { backendCommands, deviceAddCommand } from "../../src/qemu/plan-qmp.js";
import { runningDeviceIds, runningDeviceLayout } from "../../src/qemu/running-argv.js";
import { diskPath, vmPaths } from "../../src/store/vm-paths.js";
import { completeDefinition, vmCreateSchema, type DiskDefinition } from "../../src/definition/vm-definition.js";

const paths = vmPaths("/var/lib/vmhostd", "/run/vmhostd", "web-1");
const uuid = "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11";
const def = (input: Record<string, unknown>) =>
  completeDefinition(vmCreateSchema.parse({ name: "web-1", uuid, ...input }), new Date("2026-01-01T00:00:00Z"));

t.test("the snapshot VM: its plan renders to the snapshot argv", async (t) => {
  const inputs: PlanInputs = {
    def: def({
      vcpus: 2,
      memoryMiB: 256,
      boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: "console=ttyS0 quiet" },
      disks: [{ name: "root", sizeGiB: 1 }],
      nics: [{ mac: "52:54:00:aa:bb:cc" }],
    }),
    paths,
    accel: "tcg",
    files: { kernel: "/var/lib/vmhostd/images/vmlinuz", initrd: "/var/lib/vmhostd/images/initrd.img", disks: { root: "/var/lib/vmhostd/vms/web-1/disks/root.qcow2" } },
  };
  const plan = buildMachinePlan(inputs);
  const expected = JSON.parse(await readFile(path.join(distRoot, "..", "test/qemu/qemu-argv.snapshot.json"), "utf8")) as string[];
  t.same(renderArgv(plan), expected, "byte for byte the argv of the snapshot");
  t.equal(JSON.stringify(renderArgv(plan)), JSON.stringify(expected), "including the key order inside each JSON option");

  t.same(plan.kernel, { kernel: "/var/lib/vmhostd/images/vmlinuz", initrd: "/var/lib/vmhostd/images/initrd.img", cmdline: "console=ttyS0 quiet" });
  t.same(plan.serial, { id: "serial0", path: paths.consoleSocket, logfile: paths.consoleLog }, "the console is logged");
  const kinds = plan.entries.map((e) => (e.kind === "device" ? `device:${e.device.driver}` : e.kind));
  t.same(kinds.slice(0, 10), [
    "object", "netdev", "device:pcie-root-port", "device:virtio-net-pci",
    "object", "blockdev", "blockdev", "blockdev", "device:pcie-root-port", "device:virtio-blk-pci",
  ], "the throttle group first, then each device after what it rests on and its own root port");
  t.same(plan.entries[0], { kind: "object", object: { "qom-type": "throttle-group", id: "throttle0", limits: {} } }, "one throttle group, unlimited without disk limits");
  const disk = plan.entries.find((e) => e.kind === "device" && e.device.driver === "virtio-blk-pci");
  t.same(disk, {
    kind: "device",
    device: { driver: "virtio-blk-pci", id: "disk-root", drive: "t-root", serial: "root", iothread: "io-root", bus: "rp2" },
  }, "a typed object, no JSON string");
  const strings = (v: unknown): string[] =>
    typeof v === "string" ? [v] : v && typeof v === "object" ? Object.values(v).flatMap(strings) : [];
  t.notOk(strings(plan).some((s) => s.trimStart().startsWith("{")), "no value in the plan is JSON text");
  t.same(renderArgv(buildMachinePlan({ ...inputs, incoming: true })).slice(-2), ["-incoming", "defer"], "a migration's destination waits");
});

t.test("hot-plugging a disk: QMP commands from the plan, as the disk would be at start", async (t) => {
  const disk: DiskDefinition = def({ disks: [{ name: "data", sizeGiB: 2, cache: "writethrough" }] }).disks[0]!;
  const image = "/var/lib/vmhostd/vms/web-1/disks/data.qcow2";
  const part = planDisk(disk, image, { ioUring: true });
  t.same(backendCommands(part), [
    { command: "object-add", args: { "qom-type": "iothread", id: "io-data" } },
    {
      command: "blockdev-add",
      args: {
        driver: "file",
        "node-name": "f-data",
        filename: image,
        aio: "io_uring",
        cache: { direct: false, "no-flush": false },
        "auto-read-only": true,
        discard: "unmap",
      },
    },
    { command: "blockdev-add", args: { driver: "qcow2", "node-name": "d-data", file: "f-data", "read-only": false, discard: "unmap" } },
    { command: "blockdev-add", args: { driver: "throttle", "node-name": "t-data", "throttle-group": "throttle0", file: "d-data" } },
  ], "iothread, file node, format node, the VM's throttle filter over it: in the order they rest on each other");
  t.same(deviceAddCommand(part, "rp5"), {
    command: "device_add",
    args: { driver: "virtio-blk-pci", id: "disk-data", drive: "t-data", serial: "data", iothread: "io-data", "write-cache": "off", bus: "rp5" },
  }, "on the free root port, without a boot index");
  t.same(deviceAddCommand(part, undefined).args, { driver: "virtio-blk-pci", id: "disk-data", drive: "t-data", serial: "data", iothread: "io-data", "write-cache": "off" }, "pc: qemu picks the slot");
  t.notOk("bus" in part.device, "the plan itself is left without a bus");

  // The same disk in a VM that starts with it: the same backends and device (plus boot index and port).
  const started = buildMachinePlan({ def: def({ disks: [disk] }), paths, accel: "kvm", files: { disks: { data: image } }, ioUring: true });
  const atStart = started.entries.filter((e) => (e.kind === "object" || e.kind === "blockdev") && JSON.stringify(e).includes("data"));
  t.same(atStart, part.backends, "backends as at start");
  const dev = started.entries.find((e) => e.kind === "device" && e.device.id === "disk-data");
  t.same(dev, { kind: "device", device: { ...part.device, bootindex: 1, bus: "rp1" } });
});

t.test("hot-plugging a NIC: netdev_add then device_add", async (t) => {
  const nic = { model: "virtio-net" as const, mac: "52:54:00:00:00:07", network: { type: "bridge" as const, bridge: "br0" } };
  const tap = { nic: 1, name: "vmh0badcafe", bridge: "br0", queues: 2, alias: "vmhostd:web-1:1" };
  const part = planNic(nic, 1, tap, true);
  t.same(backendCommands(part), [
    { command: "netdev_add", args: { type: "tap", id: "net1", ifname: "vmh0badcafe", script: "no", downscript: "no", vhost: true, queues: 2 } },
  ]);
  t.same(deviceAddCommand(part, "rp6").args, { driver: "virtio-net-pci", id: "nic1", netdev: "net1", mac: "52:54:00:00:00:07", mq: true, vectors: 6, bus: "rp6" });
  t.same(backendCommands(planNic({ ...nic, network: { type: "user" as const } }, 0, undefined, false)), [{ command: "netdev_add", args: { type: "user", id: "net0" } }]);
});

t.test("the files handed to qemu: every kind of disk, CD-ROM, seed, UEFI, kernel, console log", async (t) => {
  const d = def({
    firmware: "uefi",
    boot: { kernel: "vmlinuz", initrd: "initrd.img" },
    cdrom: { image: "installer.iso" },
    cloudInit: { userData: "#cloud-config\n" },
    disks: [
      { name: "blank", sizeGiB: 1 },
      { name: "raw", sizeGiB: 1, format: "raw" },
      { name: "overlay", backingImage: "base.qcow2" },
      { name: "imported", importImage: "golden.img" },
      { name: "shared", image: "shared.raw", format: "raw" },
    ],
  });
  const pool = "/var/lib/vmhostd/images";
  const disks = Object.fromEntries(d.disks.map((x) => [x.name, x.image !== undefined ? `${pool}/${x.image}` : diskPath(paths, x)]));
  const plan = buildMachinePlan({
    def: d,
    paths,
    accel: "kvm",
    files: {
      kernel: `${pool}/vmlinuz`,
      initrd: `${pool}/initrd.img`,
      cdrom: `${pool}/installer.iso`,
      firmware: { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: paths.uefiVars },
      disks,
    },
  });
  t.same(planFiles(plan), {
    readWrite: [
      paths.uefiVars,
      `${paths.disksDir}/blank.qcow2`,
      `${paths.disksDir}/raw.raw`,
      `${paths.disksDir}/overlay.qcow2`,
      `${paths.disksDir}/imported.qcow2`,
      `${pool}/shared.raw`,
    ],
    readOnly: [`${pool}/vmlinuz`, `${pool}/initrd.img`, "/usr/share/OVMF/OVMF_CODE_4M.fd", `${pool}/installer.iso`, paths.cloudInitSeed],
    logs: [paths.consoleLog],
  }, "written files, read-only files and logs, each once");
  // An overlay's base is opened by qemu through the overlay's own header, which
  // the start checked: only the overlay is on the list.
  t.notOk(JSON.stringify(planFiles(plan)).includes("base.qcow2"));

  const bare = planFiles(buildMachinePlan({ def: def({ cdrom: {} }), paths, accel: "tcg", files: { disks: {} } }));
  t.same(bare, { readWrite: [], readOnly: [], logs: [paths.consoleLog] }, "an empty drive opens no file");
});

t.test("the device layout a migration compares", async (t) => {
  const d = def({ disks: [{ name: "root", sizeGiB: 1 }], nics: [{ mac: "52:54:00:aa:bb:cc" }], cloudInit: { userData: "x" }, cdrom: {} });
  const plan = buildMachinePlan({ def: d, paths, accel: "kvm", files: { disks: { root: "/r" } } });
  const layout = planDeviceLayout(plan);
  t.same(layout.slice(0, 4), ["pcie-root-port rp1 ", "virtio-net-pci nic0 rp1", "pcie-root-port rp2 ", "virtio-blk-pci disk-root rp2"]);
  t.ok(layout.includes("ide-cd cdrom0 ide.0"));
  t.ok(layout.includes("scsi-cd cidata0 cidata-scsi.0"));
  t.same(layout.slice(-4), ["VGA video0 ", "virtio-balloon-pci balloon0 ", "virtio-serial-pci vserial0 ", "virtserialport qga-port vserial0.0"]);
  // A qemu this daemon started: read back from its argv, the same lines.
  t.same(runningDeviceLayout(renderArgv(plan)), layout, "a running qemu of the same plan has the same layout");
  t.same(runningDeviceIds(renderArgv(plan)).filter((id) => /^(disk-|nic)/.test(id)), ["nic0", "disk-root"]);
  // A qemu started with a disk more (or by a daemon that laid devices out otherwise) differs.
  const more = buildMachinePlan({ def: { ...d, disks: [...d.disks, { ...d.disks[0]!, name: "extra" }] }, paths, accel: "kvm", files: { disks: { root: "/r", extra: "/e" } } });
  t.ok(planDeviceLayout(more).includes("virtio-blk-pci disk-extra rp3"));
  t.notSame(runningDeviceLayout(renderArgv(more)), layout);
  t.same(runningDeviceLayout(["-device", "VGA", "-m", "1"]), ["VGA"], "a legacy -device stays its own text");
});
