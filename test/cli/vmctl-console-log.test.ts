// The console log past one page and past its cap, without booting a guest: the
// log files are what qemu would have appended (the daemon treats them as the
// truth), written here while the VM is stopped. vmctl reads every page; a
// restarted daemon brings a log found past its cap under it at adoption, for
// the console log and for qemu's own log, and positions count on.
import { spawn } from "node:child_process";
import { appendFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { defineGuestVm, startDaemon, vmctlJs, type TestDaemon } from "../helpers/daemon.js";

const VM = "pages";

function lines(from: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `LOG-${String(from + i).padStart(8, "0")}-${"x".repeat(50)}\n`).join(""); // 64 bytes
}

/** vmctl with no cap on its output (a log of several MiB). */
function vmctl(d: TestDaemon, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn(process.execPath, [vmctlJs, "--socket", d.socket, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on("data", (c: Buffer) => out.push(c));
  p.stderr.on("data", (c: Buffer) => err.push(c));
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  return new Promise((resolve) =>
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    }),
  );
}

async function sizes(file: string): Promise<number> {
  const s = await Promise.all([file, `${file}.1`].map((f) => stat(f).then((x) => x.size, () => 0)));
  return s[0]! + s[1]!;
}

t.test("console log pages and a cap enforced at adoption", async (t) => {
  const d = await startDaemon({ args: ["--console-log-max", "4M"] });
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, VM);
  const consoleLog = path.join(d.stateDir, "vms", VM, "console.log");
  const qemuLog = path.join(d.stateDir, "vms", VM, "qemu.log");

  // 1.5 MiB: more than one page, less than half the cap, so nothing rotates.
  await writeFile(consoleLog, lines(0, 24_576));
  const all = await vmctl(d, "console-log", VM);
  t.equal(all.code, 0, all.stderr);
  t.equal(all.stdout.length, 24_576 * 64, "vmctl printed every page");
  t.equal(all.stdout, lines(0, 24_576));
  const page = await d.api.request("GET", `/v1/vms/${VM}/console/log?offset=0`);
  t.equal(page.body.length, 1024 * 1024, "one answer is one page of 1 MiB");
  t.equal(page.headers["x-console-next-offset"], String(1024 * 1024));
  t.equal(page.headers["x-console-size"], String(24_576 * 64));

  // qemu went on writing while the daemon was down: 5 MiB more console, 3 MiB of qemu's own log.
  await d.kill();
  await appendFile(consoleLog, lines(24_576, 81_920));
  await writeFile(qemuLog, lines(0, 49_152));
  await d.restart(["--console-log-max", "4M"]);
  t.ok((await sizes(consoleLog)) <= 4 * 1024 * 1024, `console log under its cap after adoption (${await sizes(consoleLog)})`);
  t.ok((await sizes(qemuLog)) <= 1024 * 1024, `qemu's log under its 1 MiB cap after adoption (${await sizes(qemuLog)})`);

  const end = 106_496 * 64;
  const tail = await d.api.request("GET", `/v1/vms/${VM}/console/log?offset=${end - 128}`);
  t.equal(tail.body.toString(), lines(106_494, 2), "the newest lines sit at their positions in the whole log");
  t.equal(tail.headers["x-console-size"], String(end));
  t.equal(tail.headers["x-console-log-start"], String(end - 2 * 1024 * 1024), "half the cap kept");

  const from0 = await vmctl(d, "console-log", VM);
  t.equal(from0.code, 0, from0.stderr);
  t.match(from0.stderr, new RegExp(`${end - 2 * 1024 * 1024} bytes before offset ${end - 2 * 1024 * 1024} were rotated away`));
  t.equal(from0.stdout, lines(106_496 - 32_768, 32_768), "vmctl printed the kept log, both pages");
});
