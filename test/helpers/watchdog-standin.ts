// Plays a watchdog device for the fence tests, since a real /dev/watchdog or
// softdog would reboot the shared test machine. The device is a plain file the
// fence process opens for writing: each pet writes a byte, which the stand-in reads
// and clears. When no pet has come for the timeout, the stand-in "resets the host"
// the only way a test may: it SIGKILLs the host's ha qemus. A 'V' as the last byte
// is the magic close: it stands down, as a real device does.
import { readFile, truncate, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";

export interface WatchdogStandIn {
  device: string;
  /** Pets seen so far. */
  readonly pets: number;
  /** When it bit (ms since epoch), and which pids it killed. */
  readonly bitAt: number | undefined;
  readonly killed: number[];
  readonly magicClosed: boolean;
  /** Magic closes seen so far. */
  readonly closes: number;
  stop(): Promise<void>;
}

export async function startWatchdogStandIn(device: string, timeoutMs: number, runDir: string, haUuids: () => string[]): Promise<WatchdogStandIn> {
  await writeFile(device, "", { mode: 0o600 });
  let pets = 0;
  let lastPetAt = Date.now();
  let bitAt: number | undefined;
  let magicClosed = false;
  let closes = 0;
  const killed: number[] = [];
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped && i < 20 * 600; i++) {
      await sleep(50);
      // Read what was written since, then empty the file: a fence that reopens the device
      // writes at offset 0 again, and one that keeps it open writes past the end (a hole of NULs).
      const added = (await readFile(device, "latin1")).replace(/\0/g, "");
      if (added.length > 0) {
        await truncate(device, 0);
        pets += added.replace(/V/g, "").length;
        closes += added.length - added.replace(/V/g, "").length;
        magicClosed = added.endsWith("V");
        lastPetAt = Date.now();
        bitAt = undefined;
        continue;
      }
      if (pets === 0 || magicClosed || bitAt !== undefined || Date.now() - lastPetAt < timeoutMs) continue;
      // Petting stopped: the host would be reset now.
      bitAt = Date.now();
      const uuids = new Set(haUuids());
      for (const q of await findQemuProcesses(runDir)) {
        if (!q.uuid || !uuids.has(q.uuid)) continue;
        try {
          process.kill(q.pid, "SIGKILL");
          killed.push(q.pid);
        } catch {
          // gone
        }
      }
    }
  })();
  return {
    device,
    get pets() {
      return pets;
    },
    get bitAt() {
      return bitAt;
    },
    killed,
    get magicClosed() {
      return magicClosed;
    },
    get closes() {
      return closes;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
