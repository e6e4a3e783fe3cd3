// The facts about this host's programs the daemon needs before its first VM
// start: qemu's version, the accelerator (`--accel auto` probes KVM against
// TCG) and whether qemu can use io_uring. Answered from the probe cache
// (probe-cache.ts) when the programs and the kernel are unchanged, so a restart
// runs no child process before the API answers; probed again in the background.
import path from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config.js";
import { resolveAccel } from "../qemu/accel-probe.js";
import type { Accel } from "../qemu/qemu-argv.js";
import { readQemuVersion } from "../qemu/qemu-binary.js";
import { probeIoUring } from "../storage/io-uring-probe.js";
import { ProbeCache } from "./probe-cache.js";

/** After start-up and adoption: the re-probes (the accelerator's boots two tiny guests) must not compete with them. */
const REFRESH_AFTER_MS = 30_000;

export interface HostProbes {
  qemuVersion: string;
  accel: Accel;
  ioUring: boolean;
}

export const PROBE_CACHE_FILE = "probe-cache.json";

export async function readHostProbes(config: Config, log: Logger): Promise<HostProbes> {
  const cache = new ProbeCache(path.join(config.stateDir, PROBE_CACHE_FILE), log);
  const [qemuVersion, ioUring] = await Promise.all([
    cache.get("qemu-version", config.qemu, () => readQemuVersion(config.qemu)),
    cache.get("io-uring", config.qemuImg, () => probeIoUring(config.qemuImg)),
  ]);
  // Alone, not beside the others: it compares how fast two guests boot.
  const accel = config.accel === "auto" ? await cache.get("accel-auto", config.qemu, () => resolveAccel("auto", config.qemu, log)) : config.accel;
  setTimeout(() => void cache.refresh(), REFRESH_AFTER_MS).unref();
  return { qemuVersion, accel, ioUring };
}
