// Reads what the metrics report of each VM's qemu: CPU time from /proc, NIC
// counters from its taps in /sys, disk counters and the balloon over QMP. qemu's
// counters change all the time and no event says so, so a scrape does not wait
// for them: while the metrics are being scraped, every running qemu is asked in
// the background every few seconds, and a scrape serves its last answer. Only a
// VM with no recent answer (the first scrape, a new qemu) is asked there and then,
// and never waited on beyond a short deadline: a qemu that misses it, or leaves
// a background question unanswered past it, keeps its last values, marked stale.
import { readFile } from "node:fs/promises";
import { execChild } from "../host/child-process.js";
import type { BlockStatsEntry } from "../qmp/block-commands.js";
import { vmTaps } from "../net/vm-taps.js";
import type { Vm } from "../vm/vm.js";

/** How long a scrape waits for each VM's QMP answers; also how long a question may go unanswered before its VM is stale. */
export const QMP_SAMPLE_DEADLINE_MS = 250;
/** While being scraped, how often every running qemu is asked for its counters: the most a served figure lags. */
export const QMP_SAMPLE_EVERY_MS = 5_000;
/** A scrape serves an answer up to this old without asking (one background round may be late on a busy host). */
const QMP_SAMPLE_MAX_AGE_MS = 2 * QMP_SAMPLE_EVERY_MS;
/** Background sampling stops when no scrape came for this long (longer than any usual scrape interval). */
const KEEP_SAMPLING_MS = 120_000;

export interface DiskSample {
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
  flushOps: number;
  readSeconds: number;
  writeSeconds: number;
  flushSeconds: number;
}

export interface NicSample {
  /** From the guest's side, as libvirt reports them: what the guest received is what its tap sent. */
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** What qemu said over QMP, as of its last answer. */
export interface QmpSample {
  disks: Map<string, DiskSample>;
  balloonBytes: number | undefined;
}

export interface VmSample {
  cpuSeconds: number | undefined;
  nics: Map<number, NicSample>;
  qmp: QmpSample | undefined;
  /** qemu did not answer within the deadline (or has no monitor): `qmp` is from an earlier scrape. */
  stale: boolean;
}

interface QmpCache {
  /** The qemu the sample came from: a new qemu starts from nothing. */
  pid: number;
  last: QmpSample | undefined;
  /** When `last` was answered (performance.now()). */
  at: number;
  /** A query still waiting for qemu: no second one is sent while it waits. */
  inFlight: Promise<QmpSample> | undefined;
  /** When the query in flight was sent. */
  sentAt: number;
  /** The last question failed (timed out, no monitor): stale until an answer comes. */
  failed: boolean;
}

export class VmSampler {
  private readonly cache = new Map<string, QmpCache>();
  private clockTicks: Promise<number> | undefined;
  /** The VMs of the last scrape, which background rounds ask. */
  private scraped: Vm[] = [];
  private lastScrapeAt = 0;
  private rounds: NodeJS.Timeout | undefined;

  /** Samples every VM that has a qemu, all at once. */
  async sample(vms: Vm[]): Promise<Map<string, VmSample>> {
    const live = vms.filter((vm) => vm.session);
    for (const name of this.cache.keys()) if (!live.some((vm) => vm.name === name)) this.cache.delete(name);
    this.scraped = live;
    this.lastScrapeAt = performance.now();
    this.rounds ??= setInterval(() => this.backgroundRound(), QMP_SAMPLE_EVERY_MS).unref();
    const ticks = await (this.clockTicks ??= readClockTicks());
    const samples = await Promise.all(live.map(async (vm) => [vm.name, await this.sampleVm(vm, ticks)] as const));
    return new Map(samples.filter((s): s is readonly [string, VmSample] => s[1] !== undefined));
  }

  private async sampleVm(vm: Vm, ticks: number): Promise<VmSample | undefined> {
    const session = vm.session;
    if (!session) return undefined;
    const [cpuSeconds, nics, qmp] = await Promise.all([
      readCpuSeconds(session.pid, ticks),
      readNics(vm),
      this.sampleQmp(vm, session.pid),
    ]);
    return { cpuSeconds, nics, qmp: qmp.sample, stale: qmp.stale };
  }

  /** Asks every qemu of the last scrape, until scrapes stop coming. */
  private backgroundRound(): void {
    if (performance.now() - this.lastScrapeAt > KEEP_SAMPLING_MS) {
      clearInterval(this.rounds);
      this.rounds = undefined;
      this.scraped = [];
      return;
    }
    for (const vm of this.scraped) if (vm.session) void this.ask(vm, vm.session.pid).catch(() => {});
  }

  private entryOf(vm: Vm, pid: number): QmpCache {
    let entry = this.cache.get(vm.name);
    if (!entry || entry.pid !== pid) {
      entry = { pid, last: undefined, at: 0, inFlight: undefined, sentAt: 0, failed: false };
      this.cache.set(vm.name, entry);
    }
    return entry;
  }

  /** The question in flight to this qemu, sent now if none is. */
  private ask(vm: Vm, pid: number): Promise<QmpSample> {
    const cached = this.entryOf(vm, pid);
    if (!cached.inFlight) {
      cached.sentAt = performance.now();
      cached.inFlight = queryQmp(vm);
      // Settles on qemu's answer, or at the command's own QMP timeout for a hung qemu.
      void cached.inFlight.then(
        (s) => {
          cached.last = s;
          cached.at = performance.now();
          cached.inFlight = undefined;
          cached.failed = false;
        },
        () => {
          cached.inFlight = undefined;
          cached.failed = true;
        },
      );
    }
    return cached.inFlight;
  }

  private async sampleQmp(vm: Vm, pid: number): Promise<{ sample: QmpSample | undefined; stale: boolean }> {
    const cached = this.entryOf(vm, pid);
    const now = performance.now();
    const unanswered = cached.inFlight !== undefined && now - cached.sentAt > QMP_SAMPLE_DEADLINE_MS;
    if (cached.last && now - cached.at <= QMP_SAMPLE_MAX_AGE_MS) return { sample: cached.last, stale: unanswered || cached.failed };
    const asked = this.ask(vm, pid);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), QMP_SAMPLE_DEADLINE_MS)));
    const fresh = await Promise.race([asked.catch(() => undefined), deadline]);
    clearTimeout(timer);
    return fresh ? { sample: fresh, stale: false } : { sample: cached.last, stale: true };
  }
}

async function queryQmp(vm: Vm): Promise<QmpSample> {
  const session = vm.session;
  if (!session?.connected) throw new Error("no QMP connection");
  const [stats, balloon] = await Promise.all([
    session.execute("query-blockstats", {}),
    // A guest without the balloon driver makes qemu refuse: then there is no balloon figure.
    vm.definition.balloon ? session.execute("query-balloon").then((b) => b.actual, () => undefined) : undefined,
  ]);
  return { disks: mapDisks(stats, vm.definition.disks.map((d) => d.name)), balloonBytes: balloon };
}

/**
 * qemu names a disk's backend by the device it is attached to (`qdev`: the QOM
 * path `/machine/peripheral/disk-<name>/virtio-backend`, or the id `disk-<name>`)
 * and by its root node (`d-<name>`); the legacy `device` is empty with -blockdev.
 * Entries of no disk of the definition (the CD-ROM drive) are left out.
 */
export function mapDisks(entries: BlockStatsEntry[], diskNames: string[]): Map<string, DiskSample> {
  const names = new Set(diskNames);
  const disks = new Map<string, DiskSample>();
  for (const e of entries) {
    const byQdev = /(?:^|\/)disk-([^/]+)(?:\/|$)/.exec(e.qdev ?? "")?.[1];
    const byNode = /^d-(.+)$/.exec(e["node-name"] ?? "")?.[1];
    const name = [byQdev, byNode].find((n): n is string => n !== undefined && names.has(n));
    if (!name) continue;
    const s = e.stats;
    disks.set(name, {
      readBytes: s.rd_bytes,
      writeBytes: s.wr_bytes,
      readOps: s.rd_operations,
      writeOps: s.wr_operations,
      flushOps: s.flush_operations,
      readSeconds: s.rd_total_time_ns / 1e9,
      writeSeconds: s.wr_total_time_ns / 1e9,
      flushSeconds: s.flush_total_time_ns / 1e9,
    });
  }
  return disks;
}

/** utime + stime of the process (fields 14 and 15 of /proc/<pid>/stat, after the command name). */
async function readCpuSeconds(pid: number, ticks: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!stat) return undefined;
  // The command name may hold spaces and parentheses: the fields start after its last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / ticks : undefined;
}

/** Only bridged NICs have a tap; a user-mode NIC's traffic is qemu's own sockets and is not counted. */
async function readNics(vm: Vm): Promise<Map<number, NicSample>> {
  const nics = new Map<number, NicSample>();
  await Promise.all(
    vmTaps(vm.definition).map(async (tap) => {
      const dir = `/sys/class/net/${tap.name}/statistics`;
      const read = (f: string): Promise<number> => readFile(`${dir}/${f}`, "utf8").then(Number);
      try {
        const [tapRxBytes, tapTxBytes, tapRxPackets, tapTxPackets] = await Promise.all(
          ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"].map(read),
        );
        nics.set(tap.nic, { rxBytes: tapTxBytes!, txBytes: tapRxBytes!, rxPackets: tapTxPackets!, txPackets: tapRxPackets! });
      } catch {
        // The tap is gone (qemu exiting): no figures for it this time.
      }
    }),
  );
  return nics;
}

/** USER_HZ: 100 on every mainstream Linux, but asked of the system once rather than assumed. */
async function readClockTicks(): Promise<number> {
  try {
    const { stdout } = await execChild("getconf", ["CLK_TCK"], { timeout: 2000 });
    const n = Number(stdout.trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
