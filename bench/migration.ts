// Live migration over loopback, total time and downtime, for guests of 256 MiB
// and 1 GiB, idle and dirtying memory: through two vmhostd daemons, and by hand
// over QMP with vmhostd's argv and settings (the floor). Each run moves the guest
// to the other side. Rounds are interleaved (one vmhostd and one by-hand run per
// round, order alternating) and only the guest being migrated runs: the other one
// is paused, so on a small host the two do not compete for CPUs.
//
// With --tls, the transport mode instead (migration-transport.ts): in clear
// against TLS against TLS with --channels RAM connections. --smoke: one short
// run of the chosen mode, to check the bench still works (npm test runs it).
//
//   node dist/bench/migration.js [--runs N] [--case SLUG]... [--tls [--channels N]] [--smoke]
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { ensureGuest, type GuestFiles } from "./guest-files.js";
import { migrationCases, type CaseResult, type MigrationCase } from "./migration-case.js";
import { reportMigration } from "./migration-report.js";
import { runCase } from "./migration-rounds.js";
import { BenchRun } from "./bench-run.js";
import { killRawQemus } from "./raw-qemu.js";
import { daemonEntry } from "./vmhostd-daemon.js";
import { launchDaemonPair } from "./vmhostd-migration.js";
import { runTransportBench, transportCase } from "./migration-transport.js";
import type { BenchDaemon } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bench = new BenchRun("migration");

interface Options {
  runs: number;
  cases: MigrationCase[];
  tls: boolean;
  channels: number;
  smoke: boolean;
  /** --case given: the transport mode moves that guest instead of its own. */
  chosen: boolean;
}

function parseOptions(): Options {
  const all = migrationCases();
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "5" },
      case: { type: "string", multiple: true },
      tls: { type: "boolean", default: false },
      channels: { type: "string", default: "4" },
      smoke: { type: "boolean", default: false },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: node dist/bench/migration.js [--runs N] [--case ${all.map((c) => c.slug).join("|")}]... [--tls [--channels N]] [--smoke]\n`);
    process.exit(0);
  }
  const smoke = values.smoke === true;
  const channels = Number(values.channels);
  if (!Number.isInteger(channels) || channels < 2 || channels > 16) throw new Error(`--channels must be an integer 2-16, not ${values.channels}`);
  const runs = smoke ? 1 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs must be an integer 1-50, not ${values.runs}`);
  const wanted = values.case ?? [];
  const unknown = wanted.filter((w) => !all.some((c) => c.slug === w));
  if (unknown.length) throw new Error(`unknown --case ${unknown.join(", ")}; known: ${all.map((c) => c.slug).join(", ")}`);
  const cases = smoke ? all.filter((c) => c.slug === "256m-idle") : wanted.length ? all.filter((c) => wanted.includes(c.slug)) : all;
  return { runs, cases, tls: values.tls === true, channels, smoke, chosen: wanted.length > 0 };
}

/** A guest built from an init without vmh.dirty would only time out waiting for VMH-DIRTY: say so at once. */
async function checkDirtySupport(guest: GuestFiles): Promise<void> {
  const cpio = gunzipSync(await readFile(guest.initrd));
  if (!cpio.includes("vmh.dirty=")) {
    throw new Error(`${guest.initrd} has no vmh.dirty support: test/fixtures/guest/init lacks it (edited meanwhile?)`);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const guest = ensureGuest(repoRoot);
  if (opts.cases.some((c) => c.dirtyMiB > 0) || (opts.tls && !opts.smoke && !opts.chosen)) await checkDirtySupport(guest);
  const poolDir = await mkdtemp("/tmp/vmhb-pool-");
  bench.defer(() => rm(poolDir, { recursive: true, force: true }));
  const mainJs = daemonEntry(repoRoot);
  if (opts.tls) {
    const certDir = await mkdtemp("/tmp/vmhb-tls-");
    bench.defer(() => rm(certDir, { recursive: true, force: true }));
    const c = opts.chosen && !opts.smoke ? opts.cases[0]! : transportCase(opts.smoke);
    const own = (d: BenchDaemon) => bench.defer(() => d.shutdown([`mig-${c.slug}`]));
    const report = await runTransportBench({ mainJs, poolDir, certDir, guest, c, runs: opts.runs, channels: opts.channels, smoke: opts.smoke, own });
    const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
    process.stdout.write(`${report}\n\n${qemu}\n`);
    return;
  }
  const handRoot = await mkdtemp("/tmp/vmhb-hand-");
  bench.defer(() => rm(handRoot, { recursive: true, force: true }));
  bench.defer(async () => killRawQemus());
  // mkdtemp makes it 0700: the by-hand qemus run as the VM's uid and must pass through.
  await chmod(handRoot, 0o711);
  const handDirs: [string, string] = [path.join(handRoot, "a"), path.join(handRoot, "b")];
  for (const dir of handDirs) await mkdir(dir);

  const vmNames = opts.cases.map((c) => `mig-${c.slug}`);
  const peers = await launchDaemonPair(mainJs, poolDir, guest, (d) => bench.defer(() => d.shutdown(vmNames)));

  const results: CaseResult[] = [];
  for (const c of opts.cases) results.push(await runCase(c, peers, handDirs, opts.runs));
  const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  process.stdout.write(reportMigration({ runs: opts.runs, results, qemu }) + "\n");
}

await bench.run(main);
