// A guest writes to its serial port flat out: the console log on disk stays
// within twice --console-log-max at every sample, the daemon's memory stays
// flat, console/log keeps answering with the newest lines, an offset from
// before a rotation gets the retained start, and a daemon killed during the
// flood finds the log grown past its cap and brings it back under it.
import { stat, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { defineShellVm, startDaemon, waitForConsole, type TestDaemon } from "../helpers/daemon.js";
import { openConsole } from "../helpers/console-socket.js";

const VM = "flood";
const CAP = 256 * 1024;
const FLOOD_MS = Number(process.env.VMH_FLOOD_MS ?? 60_000);

interface Page {
  status: number;
  text: string;
  start: number;
  from: number;
  skipped: number;
  next: number;
  size: number;
}

async function readLog(d: TestDaemon, offset: number, limit?: number): Promise<Page> {
  const res = await d.api.request("GET", `/v1/vms/${VM}/console/log?offset=${offset}${limit ? `&limit=${limit}` : ""}`);
  const h = (n: string): number => Number(res.headers[n]);
  return {
    status: res.status,
    text: res.body.toString("latin1"),
    start: h("x-console-log-start"),
    from: h("x-console-offset"),
    skipped: h("x-console-skipped"),
    next: h("x-console-next-offset"),
    size: h("x-console-size"),
  };
}

/** Bytes of console log on disk: the live file and its one rotated file. */
async function onDisk(d: TestDaemon): Promise<number> {
  const base = path.join(d.stateDir, "vms", VM, "console.log");
  const sizes = await Promise.all([base, `${base}.1`].map((f) => stat(f).then((s) => s.size, () => 0)));
  return sizes[0]! + sizes[1]!;
}

async function rssKiB(pid: number): Promise<number> {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1]);
}

/**
 * The numbers of the flood lines in `text`. Under TCG qemu's serial log repeats a
 * byte now and then ("FLOOD-12334-..."), so a number counts only if a neighbour
 * (n - 1 or n + 1) is there too: a mangled number stands alone.
 */
function floodNumbers(text: string): number[] {
  const all = [...text.matchAll(/^FLOOD-(\d+)-/gm)].map((m) => Number(m[1]));
  const seen = new Set(all);
  return all.filter((n) => seen.has(n - 1) || seen.has(n + 1));
}

/** The newest flood line number in the last page of the log. */
async function newestLine(d: TestDaemon): Promise<{ n: number; end: number }> {
  const end = (await readLog(d, Number.MAX_SAFE_INTEGER)).next;
  const tail = await readLog(d, Math.max(0, end - 4096));
  return { n: Math.max(0, ...floodNumbers(tail.text)), end };
}

t.test("a guest flooding its serial port cannot fill the host", async (t) => {
  const d = await startDaemon({ args: ["--console-log-max", "256K"] });
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForConsole(d, VM, /vmh# /, 120_000);
  const pid = d.proc.pid!;

  // Warm the paths the flood will use before taking the baseline.
  for (let i = 0; i < 20; i++) await readLog(d, 0);
  const rssBefore = await rssKiB(pid);

  const writer = await openConsole(d, VM, "rw");
  writer.type('i=0; while :; do i=$((i+1)); echo "FLOOD-$i-abcdefghijklmnopqrstuvwxyz0123456789"; done\n');
  await waitForConsole(d, VM, /^FLOOD-\d+-/m, 30_000);
  // The writer stays attached but is not read from here on; a viewer watches for a while.
  const viewer = await openConsole(d, VM, "ro");

  let most = 0;
  let samples = 0;
  let early: { offset: number; text: string } | undefined;
  const newest: number[] = [];
  const began = Date.now();
  for (let s = 0; Date.now() - began < FLOOD_MS && s < FLOOD_MS / 1000 + 30; s++) {
    await sleep(1000);
    most = Math.max(most, await onDisk(d));
    samples++;
    if (s === 3) {
      const page = await readLog(d, (await readLog(d, Number.MAX_SAFE_INTEGER)).next - 2048);
      early = { offset: page.from, text: page.text };
    }
    if (s === 10) {
      await viewer.waitFor(/FLOOD-\d+-/, 5_000);
      viewer.ws.close();
      await viewer.closed;
    }
    if (s % 10 === 9) newest.push((await newestLine(d)).n);
  }
  const rssAfter = await rssKiB(pid);
  t.comment(`flood: ${samples} samples, most on disk ${most} bytes (cap ${CAP}), RSS ${rssBefore} → ${rssAfter} KiB`);
  t.ok(most <= 2 * CAP, `console log files never above twice the cap (most ${most})`);
  t.ok(rssAfter - rssBefore < 10 * 1024, `daemon RSS grew ${rssAfter - rssBefore} KiB (< 10 MiB)`);

  const last = await newestLine(d);
  t.comment(`newest line FLOOD-${last.n}, log end ${last.end} bytes`);
  t.ok(last.end > 4 * CAP, "the guest wrote many times the cap");
  t.ok(newest.every((n, i) => n > (newest[i - 1] ?? 0)), `each look found newer lines: ${newest.join(", ")}`);
  t.ok(last.n >= newest.at(-1)!, "console/log answers with the newest lines");

  const gone = await readLog(d, early!.offset);
  t.ok(gone.start > early!.offset, "an offset from early in the flood was rotated away");
  t.equal(gone.from, gone.start, "reading it answers from the retained start");
  t.equal(gone.skipped, gone.start - early!.offset, "and says how many bytes are gone");
  t.ok(floodNumbers(early!.text).length > 0, "the early page held flood lines");

  // The whole retained log, paged: every line in order, numbered upwards, one byte range after the other.
  let offset = 0;
  let text = "";
  let first: Page | undefined;
  for (let i = 0; i < 100; i++) {
    const page = await readLog(d, offset, 64 * 1024);
    first ??= page;
    t.ok(page.text.length <= 64 * 1024, "a page holds at most `limit` bytes");
    text += page.text;
    t.equal(page.next, page.from + page.text.length, "the next page starts where this one ended");
    if (page.text.length < 64 * 1024) break;
    offset = page.next;
  }
  t.equal(first!.skipped, first!.start, "offset 0 is long gone");
  const nums = floodNumbers(text);
  let gaps = 0;
  for (let i = 1; i < nums.length; i++) if (nums[i] !== nums[i - 1]! + 1) gaps++;
  t.ok(nums.every((n, i) => i === 0 || n > nums[i - 1]!), "the retained lines are in order");
  t.comment(`retained ${text.length} bytes, ${nums.length} lines, ${gaps} gaps`);
  t.ok(text.length <= 2 * CAP, "the retained log is bounded too");

  const big = await d.api.request("GET", `/v1/vms/${VM}/console/log?limit=${2 * 1024 * 1024}`);
  t.equal(big.status, 400, "a page larger than 1 MiB is refused");
  t.match(JSON.parse(big.body.toString()), { code: "VMH_ERR_VALIDATION", detail: /limit/ });

  // The daemon dies while the guest floods; qemu fills the log unwatched.
  const before = await readLog(d, Number.MAX_SAFE_INTEGER);
  await d.kill();
  const unwatched = Date.now();
  while ((await stat(path.join(d.stateDir, "vms", VM, "console.log"))).size <= 2 * CAP && Date.now() - unwatched < 60_000) await sleep(200);
  const grown = await onDisk(d);
  t.ok(grown > 2 * CAP, `with no daemon the log grew past twice the cap (${grown} bytes)`);
  await d.restart();
  // Adoption rotates before the API opens (or soon after, if adoption is slow); the watch keeps it there.
  let afterRestart = await onDisk(d);
  for (let i = 0; i < 50 && afterRestart > 2 * CAP; i++) {
    await sleep(100);
    afterRestart = await onDisk(d);
  }
  t.ok(afterRestart <= 2 * CAP, `after the restart the log is back under the cap (${afterRestart} bytes)`);
  const resumed = await readLog(d, before.next);
  t.ok(resumed.start > before.next, "the offset from before the restart was rotated away");
  t.ok(resumed.size > before.size + CAP, "positions went on counting what qemu wrote while the daemon was down");
  t.equal(resumed.from, resumed.start, "reading it answers from the retained start");
  t.equal(resumed.skipped, resumed.start - before.next, "and says how many bytes are gone");
  const newer = await newestLine(d);
  t.ok(newer.n > last.n, `the newest lines are there (FLOOD-${newer.n})`);

  await d.api.json("POST", `/v1/vms/${VM}/stop`);
});
