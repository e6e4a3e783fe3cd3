// The seed's content and its drive, without a guest: meta-data defaults and an
// operator's keys, the drive beside an installer CD-ROM (boot order unchanged),
// and the ISO made again only when its content changes, removed with cloudInit.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { buildQemuArgv } from "../../src/qemu/qemu-argv.js";
import { vmPaths } from "../../src/store/vm-paths.js";
import { ensureCloudInitSeed, seedFiles } from "../../src/vm/guest/cloud-init-seed.js";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";

const uuid = "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11";
const def = (input: Record<string, unknown>) =>
  completeDefinition(vmCreateSchema.parse({ name: "web", uuid, ...input }), new Date("2026-01-01T00:00:00Z"));
const parsed = (argv: string[], opt: string) =>
  argv.filter((_, i) => argv[i - 1] === opt).map((a) => JSON.parse(a) as Record<string, unknown>);

t.test("meta-data: defaults from the VM unless the operator sets them", async (t) => {
  const d = def({});
  t.same(seedFiles(d, { userData: "#cloud-config\n" }), {
    "user-data": "#cloud-config\n",
    "meta-data": `instance-id: ${uuid}\nlocal-hostname: web\n`,
  }, "no network-config unless given");
  t.equal(seedFiles(d, { userData: "", metaData: "local-hostname: web.example.net" })["meta-data"], `instance-id: ${uuid}\nlocal-hostname: web.example.net\n`);
  t.equal(seedFiles(d, { userData: "", metaData: "instance-id: i-7\nlocal-hostname: h\n" })["meta-data"], "instance-id: i-7\nlocal-hostname: h\n");
  t.equal(seedFiles(d, { userData: "", networkConfig: "version: 2\n" })["network-config"], "version: 2\n");
});

t.test("the seed drive leaves an installer CD-ROM and the boot order as they were", async (t) => {
  const paths = vmPaths("/var/lib/vmhostd", "/run/vmhostd", "web");
  const base = { cdrom: { image: "installer.iso" }, disks: [{ name: "root", sizeGiB: 1 }], boot: { order: ["cdrom", "disk"] } };
  const files = { disks: { root: "/r.qcow2" }, cdrom: "/var/lib/vmhostd/images/installer.iso" };
  const plain = buildQemuArgv({ def: def(base), paths, accel: "tcg", files });
  const seeded = buildQemuArgv({ def: def({ ...base, cloudInit: { userData: "x" } }), paths, accel: "tcg", files });
  const devices = parsed(seeded, "-device");
  t.same(devices.find((x) => x.driver === "ide-cd"), parsed(plain, "-device").find((x) => x.driver === "ide-cd"), "the installer's drive is unchanged");
  t.same(devices.find((x) => x.driver === "scsi-cd"), { driver: "scsi-cd", id: "cidata0", bus: "cidata-scsi.0", drive: "cidata" }, "the seed: a CD-ROM not in the boot order");
  t.same(
    devices.filter((x) => "bootindex" in x).map((x) => [x.id, x.bootindex]),
    parsed(plain, "-device").filter((x) => "bootindex" in x).map((x) => [x.id, x.bootindex]),
    "boot order unchanged",
  );
  t.same(parsed(seeded, "-blockdev").find((x) => x["node-name"] === "cidata"), {
    driver: "raw",
    "node-name": "cidata",
    "read-only": true,
    file: { driver: "file", filename: paths.cloudInitSeed, "read-only": true },
  }, "read-only, from the VM's directory");
  const spare = (argv: string[]) => parsed(argv, "-device").filter((x) => x.driver === "pcie-root-port").length - parsed(argv, "-device").filter((x) => typeof x.bus === "string" && /^rp\d+$/.test(x.bus as string)).length;
  t.equal(spare(seeded), spare(plain), "as many spare ports for hot-plug");
});

t.test("the ISO: made when the content changes, removed with cloudInit", async (t) => {
  const state = await mkdtemp(path.join(os.tmpdir(), "vmh-seed-"));
  t.teardown(() => rm(state, { recursive: true, force: true }));
  const paths = vmPaths(state, path.join(state, "run"), "web");
  await mkdir(paths.dir, { recursive: true });
  const label = () => execFileSync("xorriso", ["-indev", paths.cloudInitSeed, "-pvd_info"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });

  await ensureCloudInitSeed(def({ cloudInit: { userData: "one" } }), paths);
  t.match(label(), /Volume Id\s*:\s*cidata/, "volume label cidata");
  const first = await stat(paths.cloudInitSeed);
  await ensureCloudInitSeed(def({ cloudInit: { userData: "one" } }), paths);
  t.equal((await stat(paths.cloudInitSeed)).ino, first.ino, "same content: the same file is kept");
  const digest = await readFile(`${paths.cloudInitSeed}.sha256`, "utf8");
  await ensureCloudInitSeed(def({ cloudInit: { userData: "two" } }), paths);
  t.not(await readFile(`${paths.cloudInitSeed}.sha256`, "utf8"), digest, "new content: a new seed");
  t.not((await stat(paths.cloudInitSeed)).ino, first.ino, "written aside and renamed into place");
  await ensureCloudInitSeed(def({}), paths);
  await t.rejects(stat(paths.cloudInitSeed), "no cloudInit: no seed");
  await t.rejects(stat(`${paths.cloudInitSeed}.sha256`), "and no digest");
  t.same((await readdir(paths.dir)).filter((n) => n.startsWith(".cidata")), [], "no work files left behind");
});
