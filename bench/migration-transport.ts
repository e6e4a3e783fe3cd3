// The migration bench's transport mode (`--tls`): the same guest moved between
// two vmhostd daemons on loopback in clear, over mutual TLS, and over TLS with
// several RAM connections (--migration-channels), side by side: one pair of
// daemons per variant, rounds interleaved (one run of each variant per round,
// order rotating), only the guest being moved running. It reports total time,
// qemu's total-time, RAM sent and the throughput that makes.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { GuestBroken } from "./guest-console.js";
import type { GuestFiles } from "./guest-files.js";
import { summarize } from "./latency-stats.js";
import { BANDWIDTH_MIBPS, MAX_DOWNTIME_MS, type MigrationCase, type MigrationSample } from "./migration-case.js";
import type { BenchDaemon } from "./vmhostd-daemon.js";
import { launchDaemonPair, VmhostdGuest, type DaemonPeer } from "./vmhostd-migration.js";

export interface TransportVariant {
  label: string;
  slug: string;
  tls: boolean;
  channels: number;
}

export function transportVariants(channels: number, smoke: boolean): TransportVariant[] {
  const all: TransportVariant[] = [
    { label: "in clear", slug: "clear", tls: false, channels: 1 },
    { label: "TLS", slug: "tls", tls: true, channels: 1 },
    { label: `TLS, ${channels} channels`, slug: `tls-${channels}ch`, tls: true, channels },
    { label: `in clear, ${channels} channels`, slug: `clear-${channels}ch`, tls: false, channels },
  ];
  return smoke ? all.slice(0, 2) : all;
}

/**
 * The guest: RAM that is mostly data (qemu sends a zero page as a flag, so an idle
 * guest says little about a link), rewritten meanwhile, auto-converge on so it ends.
 */
export function transportCase(smoke: boolean): MigrationCase {
  const [memoryMiB, dirtyMiB] = smoke ? [256, 0] : [1024, 256];
  return {
    label: dirtyMiB ? `${memoryMiB} MiB, ${dirtyMiB} MiB dirtied` : `${memoryMiB} MiB idle`,
    slug: dirtyMiB ? `${memoryMiB}m-dirty` : `${memoryMiB}m-idle`,
    memoryMiB,
    dirtyMiB,
    settings: { maxDowntimeMs: MAX_DOWNTIME_MS, bandwidthMiBps: BANDWIDTH_MIBPS, autoConverge: dirtyMiB > 0 },
  };
}

interface Credentials {
  ca: string;
  hosts: { cert: string; key: string }[];
}

/** A throw-away CA and two host certificates for 127.0.0.1, as the README's TLS section makes them. */
async function makeCredentials(dir: string): Promise<Credentials> {
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const ca = path.join(dir, "ca.pem");
  const caKey = path.join(dir, "ca.key");
  openssl(["req", "-x509", "-new", ...ec, "-keyout", caKey, "-out", ca, "-days", "2", "-subj", "/CN=bench fleet CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  const ext = path.join(dir, "host.ext");
  await writeFile(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n");
  const hosts = [];
  for (const name of ["bench-a", "bench-b"]) {
    const [cert, key, csr] = ["pem", "key", "csr"].map((e) => path.join(dir, `${name}.${e}`)) as [string, string, string];
    openssl(["req", "-new", ...ec, "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
    openssl(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "2", "-extfile", ext, "-out", cert]);
    hosts.push({ cert, key });
  }
  return { ca, hosts };
}

interface VariantResult {
  v: TransportVariant;
  samples: MigrationSample[];
  failures: string[];
}

export interface TransportRun {
  mainJs: string;
  poolDir: string;
  certDir: string;
  guest: GuestFiles;
  /** The guest moved (transportCase, or one of migrationCases chosen with --case). */
  c: MigrationCase;
  runs: number;
  channels: number;
  smoke: boolean;
  own: (d: BenchDaemon) => void;
}

export async function runTransportBench(o: TransportRun): Promise<string> {
  const c = o.c;
  const creds = await makeCredentials(o.certDir);
  const log = (msg: string): boolean => process.stderr.write(`transport: ${msg}\n`);
  const sides: { r: VariantResult; peers: [DaemonPeer, DaemonPeer]; guest?: VmhostdGuest }[] = [];
  for (const v of transportVariants(o.channels, o.smoke)) {
    const args = (i: number) => [
      ...(v.tls ? ["--tls-cert", creds.hosts[i]!.cert, "--tls-key", creds.hosts[i]!.key, "--tls-ca", creds.ca] : []),
      "--migration-channels",
      String(v.channels),
    ];
    const peers = await launchDaemonPair(o.mainJs, o.poolDir, o.guest, o.own, { args, https: v.tls });
    sides.push({ r: { v, samples: [], failures: [] }, peers });
  }
  try {
    for (const s of sides) {
      log(`${s.r.v.label}: booting the guest (${c.label})`);
      s.guest = (await VmhostdGuest.boot(s.peers, c)).guest;
      await s.guest.pause();
    }
    for (let i = 0; i < o.runs; i++) {
      const line: string[] = [];
      for (let k = 0; k < sides.length; k++) {
        const s = sides[(i + k) % sides.length]!;
        const g = s.guest!;
        try {
          await g.resume();
          const out = await g.migrate();
          await g.checkAlive("after the migration");
          await g.pause();
          if (out.ok) s.r.samples.push(out.sample);
          else s.r.failures.push(out.why);
          line.push(`${s.r.v.slug} ${out.ok ? `${out.sample.totalMs.toFixed(0)} ms` : `FAILED ${out.why}`}`);
        } catch (err) {
          if (!(err instanceof GuestBroken)) throw err;
          s.r.failures.push(`guest broken: ${err.message}`);
          line.push(`${s.r.v.slug} guest broken`);
          await g.close().catch(() => undefined);
          s.guest = (await VmhostdGuest.boot(s.peers, c)).guest;
          await s.guest.pause();
        }
      }
      log(`run ${i + 1}/${o.runs}: ${line.join("; ")}`);
    }
  } finally {
    for (const s of sides) await s.guest?.close().catch(() => undefined);
  }
  return reportTransport(c, sides.map((s) => s.r), o.runs);
}

const MiB = 1024 * 1024;
const median = (xs: number[]): number | undefined => summarize(xs)?.median;
const fmt = (x: number | undefined, digits = 0): string => (x === undefined ? "-" : x.toFixed(digits));

/** A markdown table (what the README shows), medians over the runs that completed. */
export function reportTransport(c: MigrationCase, results: VariantResult[], runs: number): string {
  const lines = [
    `${c.label}, loopback, ${runs} run(s) per variant, medians:`,
    "",
    "| transport | n | total (POST → job ended) ms | qemu total-time ms | RAM sent MiB | throughput MiB/s | downtime ms |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const ok = r.samples.filter((s) => !s.figuresUnset);
    const rates = ok.filter((s) => s.ramBytes && s.qemuTotalMs > 0).map((s) => s.ramBytes! / MiB / (s.qemuTotalMs / 1000));
    lines.push(
      `| ${r.v.label} | ${r.samples.length} | ${fmt(median(r.samples.map((s) => s.totalMs)))} | ${fmt(median(ok.map((s) => s.qemuTotalMs)))} | ` +
        `${fmt(median(ok.filter((s) => s.ramBytes).map((s) => s.ramBytes! / MiB)))} | ${fmt(median(rates))} | ${fmt(median(ok.map((s) => s.downtimeMs)))} |`,
    );
  }
  for (const r of results) if (r.failures.length) lines.push(`\n${r.v.label}: ${r.failures.length} of ${runs} runs did not complete: ${[...new Set(r.failures)].join(" | ")}`);
  return lines.join("\n");
}
