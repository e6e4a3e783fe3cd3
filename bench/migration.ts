// Live migration over loopback, total time and downtime, for guests of 256 MiB
// and 1 GiB, idle and dirtying memory: through two vmhostd daemons, and by hand
// over QMP with vmhostd's argv and settings (the floor). Each run moves the guest
// to the other side. Rounds are interleaved (one vmhostd and one by-hand run per
// round, order alternating) and only the guest being migrated runs: the other one
// is paused, so on a small host the two do not compete for CPUs.
//
//   node dist/bench/migration.js [--runs N] [--case SLUG]... [--smoke]
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

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bench = new BenchRun("migration");

interface Options {
  runs: number;
  cases: MigrationCase[];
}

function parseOptions(): Options {
  const all = migrationCases();
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "5" },
      case: { type: "string", multiple: true },
      smoke: { type: "boolean", default: false },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: node dist/bench/migration.js [--runs N] [--case ${all.map((c) => c.slug).join("|")}]... [--smoke]\n`);
    process.exit(0);
  }
  // Smoke: one round of the smallest case, both sides.
  if (values.smoke) return { runs: 1, cases: all.filter((c) => c.slug === "256m-idle") };
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs must be an integer 1-50, not ${values.runs}`);
  const wanted = values.case ?? [];
  const unknown = wanted.filter((w) => !all.some((c) => c.slug === w));
  if (unknown.length) throw new Error(`unknown --case ${unknown.join(", ")}; known: ${all.map((c) => c.slug).join(", ")}`);
  return { runs, cases: wanted.length ? all.filter((c) => wanted.includes(c.slug)) : all };
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
  if (opts.cases.some((c) => c.dirtyMiB > 0)) await checkDirtySupport(guest);
  const poolDir = await mkdtemp("/tmp/vmhb-pool-");
  bench.defer(() => rm(poolDir, { recursive: true, force: true }));
  const handRoot = await mkdtemp("/tmp/vmhb-hand-");
  bench.defer(() => rm(handRoot, { recursive: true, force: true }));
  bench.defer(async () => killRawQemus());
  // mkdtemp makes it 0700: the by-hand qemus run as the VM's uid and must pass through.
  await chmod(handRoot, 0o711);
  const handDirs: [string, string] = [path.join(handRoot, "a"), path.join(handRoot, "b")];
  for (const dir of handDirs) await mkdir(dir);

  const vmNames = opts.cases.map((c) => `mig-${c.slug}`);
  const mainJs = daemonEntry(repoRoot);
  const peers = await launchDaemonPair(mainJs, poolDir, guest, (d) => bench.defer(() => d.shutdown(vmNames)));

  const results: CaseResult[] = [];
  for (const c of opts.cases) results.push(await runCase(c, peers, handDirs, opts.runs));
  const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  process.stdout.write(reportMigration({ runs: opts.runs, results, qemu }) + "\n");
}

await bench.run(main);
