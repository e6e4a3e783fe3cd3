// Memory admission at start: a VM starts only if its memory fits in what the
// host has free (MemAvailable) less what it keeps for itself (--reserve-memory)
// less what is already promised. A guest's memory is taken lazily, as the guest
// touches it, so MemAvailable alone would let two starts (or a start beside a
// guest still booting) pass on the same free memory. Promised is therefore:
// the whole memoryMiB of every VM whose start is under way (claimed at the
// check, synchronously, so two concurrent starts see each other), plus, for each
// running VM, the part of its memoryMiB its qemu has not yet made resident.
import { readFile } from "node:fs/promises";
import { InsufficientMemory } from "../errors.js";

export interface AdmissionFigures {
  memoryMiB: number;
  /** MemAvailable of /proc/meminfo. */
  memAvailableMiB: number;
  reserveMiB: number;
  /** Memory of VMs starting, and not yet resident memory of VMs running. */
  promisedMiB: number;
}

/** What a start may take: never negative. */
export function admissibleMiB(f: Omit<AdmissionFigures, "memoryMiB">): number {
  return Math.max(0, f.memAvailableMiB - f.reserveMiB - f.promisedMiB);
}

export function fits(f: AdmissionFigures): boolean {
  return f.memoryMiB <= admissibleMiB(f);
}

/** The part of a running VM's memory its qemu has not touched yet; resident memory beyond memoryMiB (qemu's own) counts nothing. */
export function untouchedMiB(memoryMiB: number, residentMiB: number): number {
  return Math.max(0, memoryMiB - residentMiB);
}

export async function readMemAvailableMiB(): Promise<number> {
  const text = await readFile("/proc/meminfo", "utf8");
  const kib = /^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1];
  if (kib === undefined) throw new Error("no MemAvailable in /proc/meminfo");
  return Math.floor(Number(kib) / 1024);
}

/** VmRSS of a process in MiB; a process gone counts as having touched everything. */
export async function readResidentMiB(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(text)?.[1];
  return kib === undefined ? Number.POSITIVE_INFINITY : Math.floor(Number(kib) / 1024);
}

export interface RunningVmMemory {
  name: string;
  memoryMiB: number;
  pid: number;
}

export class MemoryAdmission {
  /** VMs whose start is under way, with the memory each claimed. */
  private readonly starting = new Map<string, number>();

  constructor(
    private readonly reserveMiB: number,
    private readonly running: () => RunningVmMemory[],
    private readonly memAvailableMiB: () => Promise<number> = readMemAvailableMiB,
    private readonly residentMiB: (pid: number) => Promise<number> = readResidentMiB,
  ) {}

  /**
   * Claims `memoryMiB` for the start of `vm`, or throws 409 InsufficientMemory.
   * The claim holds until the returned release is called (the start ended, either way).
   */
  async admit(vm: string, memoryMiB: number): Promise<() => void> {
    const others = this.running().filter((r) => r.name !== vm && !this.starting.has(r.name));
    const [memAvailableMiB, resident] = await Promise.all([this.memAvailableMiB(), Promise.all(others.map((r) => this.residentMiB(r.pid)))]);
    // From here to the claim nothing awaits: a concurrent admit sees this claim, or this one sees its.
    const runningPromised = others.reduce((sum, r, i) => sum + untouchedMiB(r.memoryMiB, resident[i]!), 0);
    const startingPromised = [...this.starting.values()].reduce((a, b) => a + b, 0);
    const figures: AdmissionFigures = { memoryMiB, memAvailableMiB, reserveMiB: this.reserveMiB, promisedMiB: runningPromised + startingPromised };
    if (!fits(figures)) {
      const availableMiB = admissibleMiB(figures);
      throw new InsufficientMemory(
        `VM "${vm}" needs ${memoryMiB} MiB (memoryMiB) and the host can give ${availableMiB} MiB: ` +
          `${memAvailableMiB} MiB available, less ${this.reserveMiB} MiB kept for the host (--reserve-memory), ` +
          `less ${figures.promisedMiB} MiB promised to VMs starting or running and not yet in use`,
        { field: "memoryMiB", vm, neededMiB: memoryMiB, availableMiB, memAvailableMiB, reserveMiB: this.reserveMiB, promisedMiB: figures.promisedMiB },
      );
    }
    this.starting.set(vm, memoryMiB);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.starting.delete(vm);
    };
  }
}
