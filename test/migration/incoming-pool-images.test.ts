// The destination side of a storage-copy migration makes the VM's pool images
// itself: never over an existing file, never through a directory that a symlink
// leads out of the pools, and an abort (or a restart that cuts it short)
// removes what it made.
import { lstat, mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";
import { installGuest, startDaemon } from "../helpers/daemon.js";

t.test("incoming pool images are made at the moment of use and removed on abort", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const g = await installGuest(d);
  const images = path.join(d.stateDir, "images");
  const outside = path.join(d.root, "outside");
  await mkdir(outside);
  await mkdir(path.join(images, "mig"));
  await symlink(outside, path.join(images, "escape"));

  const incoming = (name: string, relative: string, size = 64 * 1024 * 1024) => {
    const definition = completeDefinition(
      vmCreateSchema.parse({
        name,
        memoryMiB: 64,
        boot: { kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline },
        disks: [{ name: "root", image: relative }],
      }),
    );
    return d.api.request("POST", "/v1/incoming", {
      definition,
      storage: "copy",
      files: {
        "boot.kernel": { pool: "images", relative: g.kernel },
        "boot.initrd": { pool: "images", relative: g.initrd },
        "disks.0.image": { pool: "images", relative },
      },
      diskSizes: { root: size },
    });
  };

  const escaped = await incoming("esc", "escape/root.qcow2");
  t.equal(escaped.status, 400, "a pool directory that is a symlink out of the pools is not created through");
  t.match(JSON.parse(escaped.body.toString()), { code: "VMH_ERR_PATH_OUTSIDE_POOL", field: "disks.0.image" });
  t.same(await readdir(outside), [], "nothing was made outside");

  // The source names the sizes; qcow2 metadata is preallocated in proportion, so a huge one would fill the pool.
  const huge = await incoming("huge", "mig/huge.qcow2", 2 ** 52);
  t.equal(huge.status, 400, "a disk size past what a definition may ask for is refused");
  t.match(JSON.parse(huge.body.toString()), { code: "VMH_ERR_VALIDATION", field: "diskSizes.root" });
  t.notOk(await lstat(path.join(images, "mig/huge.qcow2")).then(() => true, () => false), "and nothing was made");

  await writeFile(path.join(images, "mig/taken.qcow2"), "not yours");
  const taken = await incoming("taken", "mig/taken.qcow2");
  t.equal(taken.status, 409, "an existing image is never overwritten");

  const ok = await incoming("inc", "mig/inc-root.qcow2");
  t.equal(ok.status, 201, `prepared: ${ok.body.toString().slice(0, 300)}`);
  t.ok((await lstat(path.join(images, "mig/inc-root.qcow2"))).isFile(), "the pool image was made");
  t.equal((await d.api.request("DELETE", "/v1/incoming/inc")).status, 204);
  t.same((await readdir(path.join(images, "mig"))).sort(), ["taken.qcow2"], "the abort removed the image it made, and only that");
  t.equal((await d.api.request("GET", "/v1/vms/inc")).status, 404, "and the VM");

  // A daemon killed while the image waits for RAM: the restarted one undoes the migration, image and all.
  t.equal((await incoming("inc2", "mig/inc2-root.qcow2")).status, 201);
  await d.kill();
  await d.restart();
  const gone = async (): Promise<boolean> => !(await lstat(path.join(images, "mig/inc2-root.qcow2")).then(() => true, () => false));
  for (let i = 0; i < 100 && !(await gone()); i++) await sleep(100);
  t.ok(await gone(), "after a restart the pool image made for the cut-short migration is removed");
  t.same(await readdir(path.join(images, "mig")), ["taken.qcow2"]);
});
