// A live backup copies a running disk into a new image in a pool; a cancelled
// one leaves no file; targets outside the pools or already there are refused.
import { execFileSync } from "node:child_process";
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { startDaemon, defineGuestVm, vmctlJs, waitForBoot } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";
import { waitJob } from "../helpers/migration.js";



t.test("live backup and cancel", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const images = path.join(d.stateDir, "images");
  await defineGuestVm(d, "bk", { disks: [{ name: "root", sizeGiB: 1 }] });
  const disk = path.join(d.stateDir, "vms", "bk", "disks", "root.qcow2");
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x3c 4M 1M", disk]);

  const stopped = await d.api.request("POST", "/v1/vms/bk/disks/root/backup", { target: "early.qcow2" });
  t.equal(stopped.status, 409, "a stopped VM's disk is not backed up live");

  await d.api.json("POST", "/v1/vms/bk/start");
  await waitForBoot(d, "bk", 1);

  const outside = await d.api.request("POST", "/v1/vms/bk/disks/root/backup", { target: "/tmp/escape.qcow2" });
  t.equal(outside.status, 400);
  t.match(JSON.parse(outside.body.toString()), { code: "VMH_ERR_PATH_OUTSIDE_POOL", field: "target" });
  await writeFile(path.join(images, "taken.qcow2"), "x");
  const taken = await d.api.request("POST", "/v1/vms/bk/disks/root/backup", { target: "taken.qcow2" });
  t.equal(taken.status, 409);
  t.match(JSON.parse(taken.body.toString()), { code: "VMH_ERR_FILE_EXISTS", field: "target" });

  const res = await d.api.request("POST", "/v1/vms/bk/disks/root/backup", { target: "backup1.qcow2" });
  t.equal(res.status, 202, "a backup answers 202 with its job");
  const job = JSON.parse(res.body.toString()) as JobView;
  t.equal(res.headers.location, `/v1/jobs/${job.id}`);
  const done = await waitJob(d, job.id, (j) => j.state !== "running", 60_000);
  t.equal(done.state, "succeeded", JSON.stringify(done));
  t.equal(done.progress.bytesTotal, 1024 ** 3);
  const target = path.join(images, "backup1.qcow2");
  const check = execFileSync("qemu-io", ["-r", "-f", "qcow2", "-c", "read -P 0x3c 4M 1M", target], { encoding: "utf8" });
  t.match(check, /read 1048576\/1048576/);
  t.notMatch(check, /fail/i, "the backup holds what the disk held");
  t.match((await d.api.json<{ state: string }>("GET", "/v1/vms/bk")).state, "running", "the guest ran on");

  // Throttled so it is still copying when cancelled.
  const slow = await d.api.json<JobView>("POST", "/v1/vms/bk/disks/root/backup", { target: "backup2.raw", format: "raw", speedMiBps: 1 });
  await waitJob(d, slow.id, (j) => j.phase === "copying" && Number(j.progress.bytesTotal) > 0, 60_000);
  t.ok((await stat(path.join(images, "backup2.raw"))).isFile(), "the target exists while copying");
  const busy = await d.api.request("POST", "/v1/vms/bk/disks/root/backup", { target: "backup3.qcow2" });
  t.equal(busy.status, 409, "one backup at a time per VM");
  t.equal((await d.api.request("POST", `/v1/jobs/${slow.id}/cancel`)).status, 202);
  const cancelled = await waitJob(d, slow.id, (j) => j.state !== "running", 30_000);
  t.equal(cancelled.state, "cancelled");
  await t.rejects(stat(path.join(images, "backup2.raw")), "the partial target is removed");
  await t.rejects(stat(path.join(images, "backup3.qcow2")), "the refused one made nothing");
  const cli = execFileSync(process.execPath, [vmctlJs, "--socket", d.socket, "backup", "bk", "root", "backup4.qcow2"], { encoding: "utf8" });
  t.match(cli, /bk: disk root backed up to .*backup4\.qcow2/, "vmctl backup waits for the job");
  t.ok((await stat(path.join(images, "backup4.qcow2"))).isFile());
  await d.api.json("POST", "/v1/vms/bk/stop");
  await checkHeldEvents(t, d, ["job.progress", "job.ended", "vm.disk-backed-up"]);
});
