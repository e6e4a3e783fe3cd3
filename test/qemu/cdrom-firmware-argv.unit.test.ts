// The argv parts for the CD-ROM drive and UEFI firmware, and the definition rules
// they rest on. (The snapshot in qemu-argv.test.ts covers a BIOS VM without a CD.)
import t from "tap";
import { buildQemuArgv } from "../../src/qemu/qemu-argv.js";
import { vmPaths } from "../../src/store/vm-paths.js";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";

const paths = vmPaths("/var/lib/vmhostd", "/run/vmhostd", "inst");
const uuid = "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11";
const def = (input: Record<string, unknown>) =>
  completeDefinition(vmCreateSchema.parse({ name: "inst", uuid, ...input }), new Date("2026-01-01T00:00:00Z"));
const parsed = (argv: string[], opt: string) =>
  argv.filter((_, i) => argv[i - 1] === opt).map((a) => JSON.parse(a) as Record<string, unknown>);

t.test("an installer VM: CD first, then the disk", async (t) => {
  const d = def({ cdrom: { image: "installer.iso" }, disks: [{ name: "root", sizeGiB: 1 }], boot: { order: ["cdrom", "disk"] } });
  const argv = buildQemuArgv({ def: d, paths, accel: "tcg", files: { disks: { root: "/r.qcow2" }, cdrom: "/var/lib/vmhostd/images/installer.iso" } });
  const cd = parsed(argv, "-device").find((x) => x.driver === "ide-cd");
  t.same(cd, { driver: "ide-cd", id: "cdrom0", bus: "ide.0", drive: "cd0", bootindex: 1 }, "on the built-in controller, first to boot");
  t.equal(parsed(argv, "-device").find((x) => x.driver === "virtio-blk-pci")?.bootindex, 101, "the disk after it");
  t.same(parsed(argv, "-blockdev").find((x) => x["node-name"] === "cd0"), {
    driver: "raw",
    "node-name": "cd0",
    "read-only": true,
    file: { driver: "file", filename: "/var/lib/vmhostd/images/installer.iso", "read-only": true },
  }, "the disc is one read-only node");
  t.notOk(argv.some((a) => a.includes("pflash")), "BIOS: no flash devices");
  t.notOk(argv.includes("-drive"), "no -drive anywhere");
});

t.test("an empty drive; a CD not in the boot order; direct kernel boot", async (t) => {
  let argv = buildQemuArgv({ def: def({ cdrom: {} }), paths, accel: "tcg", files: { disks: {} } });
  t.same(parsed(argv, "-device").find((x) => x.driver === "ide-cd"), { driver: "ide-cd", id: "cdrom0", bus: "ide.0" });
  t.notOk(parsed(argv, "-blockdev").some((x) => x["node-name"] === "cd0"), "no medium node");
  argv = buildQemuArgv({ def: def({ cdrom: { image: "x.iso" }, boot: { kernel: "k" } }), paths, accel: "tcg", files: { kernel: "/k", disks: {}, cdrom: "/x.iso" } });
  t.notOk("bootindex" in parsed(argv, "-device").find((x) => x.driver === "ide-cd")!, "kernel boot: no boot index");
  argv = buildQemuArgv({ def: def({ cdrom: {} }), paths, accel: "tcg", files: { disks: {} } });
  t.equal(parsed(argv, "-device").filter((x) => x.driver === "ide-cd").length, 1);
  argv = buildQemuArgv({ def: def({}), paths, accel: "tcg", files: { disks: {} } });
  t.notOk(parsed(argv, "-device").some((x) => x.driver === "ide-cd"), "no cdrom field: no drive");
});

t.test("UEFI: OVMF on the two flash devices through -blockdev", async (t) => {
  const d = def({ firmware: "uefi" });
  const argv = buildQemuArgv({
    def: d,
    paths,
    accel: "tcg",
    files: { disks: {}, firmware: { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: paths.uefiVars } },
  });
  t.equal(argv[argv.indexOf("-machine") + 1], "q35,accel=tcg,pflash0=fw-code,pflash1=fw-vars");
  const nodes = parsed(argv, "-blockdev");
  t.same(nodes.find((n) => n["node-name"] === "fw-code-file"), { driver: "file", "node-name": "fw-code-file", filename: "/usr/share/OVMF/OVMF_CODE_4M.fd", "read-only": true });
  t.equal(nodes.find((n) => n["node-name"] === "fw-code")?.["read-only"], true, "CODE read-only");
  t.equal(nodes.find((n) => n["node-name"] === "fw-vars-file")?.filename, "/var/lib/vmhostd/vms/inst/uefi-vars.fd", "the VM's own VARS");
  t.equal(nodes.find((n) => n["node-name"] === "fw-vars")?.["read-only"], false, "VARS writable");
  t.throws(() => buildQemuArgv({ def: d, paths, accel: "tcg", files: { disks: {} } }), /UEFI firmware/);
});

t.test("definition rules", async (t) => {
  t.notOk(vmCreateSchema.safeParse({ name: "a", machine: "pc", firmware: "uefi" }).success, "uefi needs q35");
  t.ok(vmCreateSchema.safeParse({ name: "a", machine: "pc-q35-7.2", firmware: "uefi" }).success, "a versioned q35 will do");
  t.notOk(vmCreateSchema.safeParse({ name: "a", firmware: "efi" }).success, "bios or uefi only");
  t.notOk(vmCreateSchema.safeParse({ name: "a", cdrom: { image: "" } }).success, "an empty path");
  t.notOk(vmCreateSchema.safeParse({ name: "a", cdrom: { image: "x.iso", readOnly: false } }).success, "unknown cdrom field");
  t.equal(def({}).cdrom, undefined, "no drive unless asked for");
});
