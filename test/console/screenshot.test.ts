// The graphical console: a screenshot of a booting VM is a real, non-blank PNG
// (SeaBIOS prints its banner in VGA text mode), through the API and vmctl; a VM
// that is not running has nothing to show.
import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import t from "tap";
import { defineGuestVm, startDaemon, vmctlJs, waitForBoot } from "../helpers/daemon.js";
import { decodePng, distinctPixels, PNG_SIGNATURE } from "../helpers/png.js";

const run = promisify(execFile);
const VM = "shot";

t.test("screenshot of a running VM, through the API and vmctl", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, VM);

  const early = await d.api.request("GET", `/v1/vms/${VM}/screenshot`);
  t.equal(early.status, 409, "a stopped VM has no screen");
  t.equal(JSON.parse(early.body.toString()).code, "VMH_ERR_VM_STATE");

  const vm = await d.api.json<{ argv: string[] }>("POST", `/v1/vms/${VM}/start`);
  t.ok(vm.argv.includes("-vnc"), "the display is served over VNC");
  t.ok(vm.argv.includes(`unix:${path.join(d.runDir, "vms", VM, "qemu", "vnc.sock")}`), "on the VM's own Unix socket");

  const res = await d.api.request("GET", `/v1/vms/${VM}/screenshot`);
  t.equal(res.status, 200);
  t.equal(res.headers["content-type"], "image/png");
  t.ok(res.body.subarray(0, 8).equals(PNG_SIGNATURE), "PNG signature");
  const img = decodePng(res.body);
  t.ok(img.width > 0 && img.height > 0, `IHDR gives a size (${img.width}x${img.height})`);
  // Right after the start it may still be qemu's own "Guest has not initialized the display".
  t.ok(distinctPixels(img) > 1, `not blank (${distinctPixels(img)} distinct pixel values)`);

  // The guest's own screen: SeaBIOS switches to VGA text mode (80x25 cells of 9x16 pixels) and prints its banner.
  const guestScreen = await until(async () => {
    const shot = decodePng((await d.api.request("GET", `/v1/vms/${VM}/screenshot`)).body);
    return shot.width === 720 && shot.height === 400 ? shot : undefined;
  });
  t.ok(distinctPixels(guestScreen) > 1, "the guest's text-mode screen is not blank");

  await waitForBoot(d, VM, 1);
  const file = path.join(d.root, "out.png");
  const cli = await run(process.execPath, [vmctlJs, "--socket", d.socket, "screenshot", VM, file]);
  t.match(cli.stdout, new RegExp(`^${VM}: \\d+x\\d+ PNG written to `), "vmctl says what it wrote");
  const fromCli = decodePng(await readFile(file));
  t.ok(fromCli.width > 0 && fromCli.height > 0 && distinctPixels(fromCli) > 1, "vmctl wrote a non-blank PNG");

  const runFiles = await readdir(path.join(d.runDir, "vms", VM, "qemu"));
  t.same(runFiles.filter((f) => f.startsWith("screendump-")), [], "no temporary file is left in the run directory");

  const doc = await d.api.json<{ paths: Record<string, unknown> }>("GET", "/openapi.json");
  t.ok(doc.paths["/v1/vms/{name}/screenshot"] && doc.paths["/v1/vms/{name}/console"], "both consoles are in the OpenAPI document");

  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  const cliStopped = await run(process.execPath, [vmctlJs, "--socket", d.socket, "screenshot", VM, file]).catch((e: { code: number; stderr: string }) => e);
  t.equal((cliStopped as { code: number }).code, 1, "vmctl fails for a stopped VM");
  t.match((cliStopped as { stderr: string }).stderr, /VMH_ERR_VM_STATE, HTTP 409/);
});

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(200);
  }
}
