// A disk that uses an existing image in a pool is the operator's, not the VM's:
// it is opened in the format declared (a qcow2 must be one), and deleting the VM leaves it.
import { execFileSync } from "node:child_process";
import { stat, symlink } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { startDaemon } from "../helpers/daemon.js";

t.test("shared images are checked and survive the VM", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const images = path.join(d.stateDir, "images");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", path.join(images, "base.qcow2"), "64M"]);

  execFileSync("qemu-img", ["create", "-q", "-f", "raw", path.join(images, "plain.raw"), "64M"]);
  const mismatch = await d.api.request("POST", "/v1/vms", { name: "s", disks: [{ name: "root", image: "plain.raw", format: "qcow2" }] });
  t.equal(mismatch.status, 400, "a file declared qcow2 that is not one is refused");
  t.match(JSON.parse(mismatch.body.toString()), { code: "VMH_ERR_VALIDATION", field: "disks.0.format" });
  // The format is never read from content: a qcow2 file declared raw is raw bytes to the guest.
  const asRaw = await d.api.request("POST", "/v1/vms", { name: "r", disks: [{ name: "root", image: "base.qcow2", format: "raw" }] });
  t.equal(asRaw.status, 201, "a qcow2 file declared raw is used as raw");
  t.equal((await d.api.request("DELETE", "/v1/vms/r")).status, 204);

  // A link inside the pool that points out of it is refused after resolving it.
  await symlink("/etc/hostname", path.join(images, "escape.raw"));
  const escape = await d.api.request("POST", "/v1/vms", { name: "s", disks: [{ name: "root", image: "escape.raw", format: "raw" }] });
  t.equal(escape.status, 400);
  t.match(JSON.parse(escape.body.toString()), { code: "VMH_ERR_PATH_OUTSIDE_POOL", field: "disks.0.image" });

  const ok = await d.api.request("POST", "/v1/vms", { name: "s", disks: [{ name: "root", image: path.join(images, "base.qcow2") }] });
  t.equal(ok.status, 201, "an absolute path inside the pool is accepted");
  t.equal((await d.api.request("DELETE", "/v1/vms/s")).status, 204);
  t.ok((await stat(path.join(images, "base.qcow2"))).isFile(), "the shared image is still there");
});
