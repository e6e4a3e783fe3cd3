// vmctl against a running daemon: tables for people, JSON for scripts, and a
// non-zero exit with the daemon's message on failure.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { installGuest, runVmctl, startDaemon, waitForBoot, waitForConsole} from "../helpers/daemon.js";

const vmctl = runVmctl;

t.test("vmctl drives a VM through its life", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const guest = await installGuest(d);
  const file = path.join(d.root, "vm.json");
  await writeFile(file, JSON.stringify({ name: "cli", memoryMiB: 128, boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline } }));

  const created = await vmctl(d, "create", "-f", file, "--vcpus", "1");
  t.equal(created.code, 0, created.stderr);
  t.match(created.stdout, /created cli/);

  const flags = await vmctl(d, "create", "flagged", "--memory", "64", "--disk", "root:1");
  t.equal(flags.code, 0, flags.stderr);

  const list = await vmctl(d, "list");
  t.match(list.stdout, /^NAME\s+STATE/m);
  t.match(list.stdout, /^cli\s+stopped/m);
  t.match(list.stdout, /^flagged\s+stopped\s+1\s+64 MiB/m);

  const json = JSON.parse((await vmctl(d, "--json", "list")).stdout) as { name: string }[];
  t.same(json.map((v) => v.name), ["cli", "flagged"]);

  t.equal((await vmctl(d, "start", "cli")).stdout.trim(), "cli: running");
  await waitForConsole(d, "cli", /VMH-READY/);
  const show = await vmctl(d, "show", "cli");
  t.match(show.stdout, /state\s+running/);
  t.match(show.stdout, /pid\s+\d+/);
  t.match((await vmctl(d, "console-log", "cli")).stdout, /VMH-READY boot_id=/);
  t.equal((await vmctl(d, "pause", "cli")).stdout.trim(), "cli: paused");
  t.equal((await vmctl(d, "resume", "cli")).stdout.trim(), "cli: running");
  const first = await waitForBoot(d, "cli", 1);
  t.equal((await vmctl(d, "reset", "cli")).code, 0);
  const second = await waitForBoot(d, "cli", 2);
  t.not(second.bootId, first.bootId, "reset rebooted the guest");

  const refused = await vmctl(d, "delete", "cli");
  t.not(refused.code, 0, "deleting a running VM fails");
  t.match(refused.stderr, /VMH_ERR_VM_STATE/);

  t.equal((await vmctl(d, "shutdown", "cli", "--timeout", "60")).stdout.trim(), "cli: stopped");
  t.equal((await vmctl(d, "start", "cli")).code, 0);
  t.equal((await vmctl(d, "stop", "cli")).stdout.trim(), "cli: stopped");
  t.equal((await vmctl(d, "delete", "cli")).stdout.trim(), "deleted cli");

  const missing = await vmctl(d, "show", "cli");
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no VM named "cli".*VMH_ERR_VM_NOT_FOUND.*404/);

  const bad = await vmctl(d, "create", "BAD");
  t.equal(bad.code, 1);
  t.match(bad.stderr, /name/);

  const noDaemon = await vmctl({ ...d, socket: "/nonexistent.sock" }, "list");
  t.equal(noDaemon.code, 1);
  t.match(noDaemon.stderr, /cannot reach vmhostd/);
});
