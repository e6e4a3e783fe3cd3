// What the migration bench prints: one table for total time and one for downtime
// (every case, vmhostd beside by hand), the median ratios, and any run that failed.
import os from "node:os";
import { HAND_POLL_MS } from "./hand-migration.js";
import { formatTable, medianRatio, type Row } from "./latency-stats.js";
import { ALIVE_TICKS, BANDWIDTH_MIBPS, MAX_DOWNTIME_MS, MIGRATION_DEADLINE_MS, type CaseResult, type MigrationSample } from "./migration-case.js";

export interface MigrationReport {
  runs: number;
  results: CaseResult[];
  qemu: string;
}

const pick = (samples: MigrationSample[], f: (s: MigrationSample) => number | undefined): number[] =>
  samples.map(f).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
/** qemu's own figures, from the samples where they were read once computed. */
const pickQemu = (samples: MigrationSample[], f: (s: MigrationSample) => number): number[] =>
  pick(samples.filter((s) => !s.figuresUnset), f);

function totalRows(r: CaseResult): Row[] {
  const none = r.error ? `not measured: ${r.error}` : "no run completed";
  const v = r.vmhostd.samples;
  const h = r.hand.samples;
  return [
    { label: `${r.c.label}  vmhostd: POST migrate -> job ended`, samples: pick(v, (s) => s.totalMs), note: none },
    { label: `${r.c.label}  vmhostd: job result.totalTimeMs`, samples: pick(v, (s) => s.daemonTotalMs), note: none },
    { label: `${r.c.label}  vmhostd: qemu total-time`, samples: pickQemu(v, (s) => s.qemuTotalMs), note: none },
    { label: `${r.c.label}  by hand: spawn dest -> dest cont`, samples: pick(h, (s) => s.totalMs), note: none },
    { label: `${r.c.label}  by hand: qemu total-time`, samples: pick(h, (s) => s.qemuTotalMs), note: none },
  ];
}

function downtimeRows(r: CaseResult): Row[] {
  const none = r.error ? `not measured: ${r.error}` : "no run completed";
  return [
    { label: `${r.c.label}  vmhostd: job result.downtimeMs`, samples: pickQemu(r.vmhostd.samples, (s) => s.downtimeMs), note: none },
    { label: `${r.c.label}  by hand: query-migrate downtime`, samples: pick(r.hand.samples, (s) => s.downtimeMs), note: none },
  ];
}

function ratioLines(results: CaseResult[]): string[] {
  const head = "median ratios vmhostd/by hand";
  const width = Math.max(head.length, ...results.map((r) => r.c.label.length + 2));
  const lines = [`${head.padEnd(width)}  ${"total".padStart(8)}  ${"downtime".padStart(8)}`];
  for (const r of results) {
    const total = medianRatio(pick(r.vmhostd.samples, (s) => s.totalMs), pick(r.hand.samples, (s) => s.totalMs));
    const down = medianRatio(pickQemu(r.vmhostd.samples, (s) => s.downtimeMs), pickQemu(r.hand.samples, (s) => s.downtimeMs));
    lines.push(`${`  ${r.c.label}`.padEnd(width)}  ${total.padStart(8)}  ${down.padStart(8)}`);
  }
  return lines;
}

function failureLines(results: CaseResult[], runs: number): string[] {
  const lines: string[] = [];
  for (const r of results) {
    if (r.error) lines.push(`  ${r.c.label}: case stopped: ${r.error}`);
    for (const [name, side] of [["vmhostd", r.vmhostd], ["by hand", r.hand]] as const) {
      if (side.failures.length === 0) continue;
      const reasons = [...new Set(side.failures)].join(" | ");
      lines.push(`  ${r.c.label}, ${name}: ${side.failures.length} of ${runs} runs did not complete: ${reasons}`);
      if (side.broken) lines.push(`    ${side.broken} of them left the guest broken; a fresh guest was booted for the next run`);
    }
  }
  return lines.length ? ["runs that did not complete (not in the figures):", ...lines] : ["every run completed"];
}

/** vmhostd runs whose figures are in (a) but whose job says something worth knowing. */
function vmhostdNotes(results: CaseResult[]): string[] {
  const all = results.flatMap((r) => r.vmhostd.samples);
  const unset = all.filter((s) => s.figuresUnset).length;
  const unknown = all.filter((s) => s.outcomeUnknown).length;
  const lines: string[] = [];
  if (unset) {
    lines.push(
      `vmhostd: ${unset} of ${all.length} completed runs reported result.downtimeMs 0 with qemu total-time 0: qemu 7.2 sets status`,
      "         completed before it computes them and the daemon's query-migrate read them in between. Left out of (b) and of",
      '         "vmhostd: qemu total-time"; their wall times stay in (a). (By hand, figures are read once the source is postmigrate.)',
    );
  }
  if (unknown) lines.push(`vmhostd: ${unknown} of ${all.length} completed runs went through phase outcome-unknown (commit refused or unanswered)`);
  return lines;
}

export function reportMigration({ runs, results, qemu }: MigrationReport): string {
  const dirty = results.filter((r) => r.c.dirtyMiB > 0);
  return [
    `live migration over loopback (127.0.0.1): total time and downtime, ${runs} runs per row, rounds interleaved`,
    `guest: test fixture kernel + initrd, 1 vCPU, q35, TCG, no disks (storage "shared"); downtime-limit ${MAX_DOWNTIME_MS} ms, ` +
      `max-bandwidth ${BANDWIDTH_MIBPS} MiB/s on both sides`,
    dirty.length
      ? `dirty cases (${dirty.map((r) => r.c.label).join(", ")}): the guest copies N MiB of random data over and over in /dev/shm ` +
        `(vmh.dirty=N); AUTO-CONVERGE ON for them, on both sides (off in the idle cases)`
      : "no dirty cases run",
    `host: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? "?"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${qemu}; node ${process.version}`,
    "",
    "(a) total migration time",
    formatTable(results.flatMap(totalRows)),
    "",
    "(b) downtime: qemu's own measure (query-migrate `downtime` on the source)",
    formatTable(results.flatMap(downtimeRows)),
    "",
    ...ratioLines(results),
    "",
    ...failureLines(results, runs),
    ...vmhostdNotes(results).flatMap((l, i) => (i === 0 ? ["", l] : [l])),
    "",
    "vmhostd: two daemons on 127.0.0.1 sharing one `images` pool; POST /v1/vms/NAME/migrate {storage shared} to the other one",
    "         each run; total = from sending the POST to the job's endedAt (the job polled every 50 ms). result.totalTimeMs is",
    "         the daemon's own clock from the job's start to its end (after the destination resumed the guest and the source",
    "         qemu was ended); its query-migrate is polled every 250 ms.",
    `by hand: vmhostd's argv (per-VM paths moved), destination spawned with -incoming defer; QMP migrate-incoming, then on the`,
    `         source migrate-set-capabilities, migrate-set-parameters, migrate; query-migrate every ${HAND_POLL_MS} ms until completed`,
    "         on the source, then on the destination; destination cont. total = from spawning the destination to cont returning.",
    "both:    only the guest being migrated runs (the other is paused); a new VMH-TICK on its console after resuming starts",
    `         each run. A migration still going after ${MIGRATION_DEADLINE_MS / 1000} s is cancelled and listed above. After each`,
    `         migration (untimed) the guest must print ${ALIVE_TICKS} VMH-TICKs of the same boot_id, with no panic, BUG, Oops or`,
    "         corruption line: a run that leaves it broken is listed above, not counted, and a fresh guest is booted.",
  ].join("\n");
}
