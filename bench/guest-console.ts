// The test guest's serial console, followed from a byte offset wherever it is
// read from (a file, the daemon's console/log API), so a bench can wait for the
// guest's marker lines (VMH-READY, VMH-DIRTY, VMH-TICK; see test/fixtures/guest/init).
import { open } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** The console's bytes from `offset` on; empty when there are none yet. */
export type ConsoleReader = (offset: number) => Promise<Buffer>;

const POLL_MS = 100;

/** The guest did not do what it should have (a failure line, or nothing in time): it cannot be used further. */
export class GuestBroken extends Error {
  override readonly name = "GuestBroken";
}

/**
 * Lines that mean a running guest is broken: it booted again (a panic reboots it,
 * panic=-1), the kernel found its own memory corrupt, or init reported a failure.
 */
export const GUEST_TROUBLE = /VMH-ERROR|VMH-BOOT|Kernel panic|kernel BUG|BUG:|Oops|general protection fault|corruption/;

export class ConsoleTail {
  private offset = 0;
  /** Read but not yet consumed by a match. */
  private pending = "";
  /** The last complete line read, for a message when a wait times out. */
  private lastLine = "";

  constructor(private readonly read: ConsoleReader) {}

  /**
   * Resolves with the first line matching `pattern` in output not consumed yet,
   * consuming everything up to it. A line matching `failOn` fails the wait, as
   * does the deadline, with GuestBroken.
   */
  async waitFor(pattern: RegExp, deadlineMs: number, what: string, failOn = /VMH-ERROR/): Promise<string> {
    const until = performance.now() + deadlineMs;
    for (;;) {
      await this.catchUp();
      const lines = this.pending.split("\n");
      // The last piece may be a line still being written: leave it for the next read.
      for (let i = 0; i < lines.length - 1; i++) {
        const line = lines[i]!;
        if (failOn.test(line)) throw new GuestBroken(`guest: ${JSON.stringify(line.trim().slice(0, 160))} (while waiting for ${what})`);
        if (pattern.test(line)) {
          this.pending = lines.slice(i + 1).join("\n");
          return line.trim();
        }
      }
      if (lines.length > 1) this.lastLine = lines[lines.length - 2]!.trim();
      this.pending = lines[lines.length - 1]!;
      if (performance.now() > until) {
        throw new GuestBroken(`no ${what} on the guest's console in ${deadlineMs / 1000} s (last line: ${JSON.stringify(this.lastLine.slice(-120))})`);
      }
      await sleep(POLL_MS);
    }
  }

  /** Marks everything printed so far as seen: a later waitFor looks only at newer output. */
  async skipToEnd(): Promise<void> {
    await this.catchUp();
    this.pending = "";
  }

  private async catchUp(): Promise<void> {
    for (;;) {
      const bytes = await this.read(this.offset);
      if (bytes.length === 0) return;
      this.offset += bytes.length;
      // The markers are ASCII; latin1 maps every byte to one character, whatever the rest holds.
      this.pending += bytes.toString("latin1");
    }
  }
}

/** The boot_id= of a VMH-READY or VMH-TICK line. */
export function bootIdOf(line: string): string {
  const id = /boot_id=(\S+)/.exec(line)?.[1];
  if (!id) throw new Error(`no boot_id in ${JSON.stringify(line)}`);
  return id;
}

/**
 * Waits for the guest's next `ticks` VMH-TICK lines and checks they come from boot
 * `bootId`: the guest runs, and runs on from where it was (a migration that
 * corrupted it shows here as a panic, a reboot or silence).
 */
export async function untilTicking(tail: ConsoleTail, bootId: string, deadlineMs: number, what: string, ticks = 1): Promise<void> {
  for (let i = 0; i < ticks; i++) {
    const line = await tail.waitFor(/VMH-TICK/, deadlineMs, what, GUEST_TROUBLE);
    if (bootIdOf(line) !== bootId) throw new GuestBroken(`guest booted again (boot_id ${bootIdOf(line)}, was ${bootId}) (while waiting for ${what})`);
  }
}

/** Reads a console log file that qemu writes itself; a missing file is an empty console. */
export function fileConsole(file: string): ConsoleReader {
  return async (offset) => {
    const fh = await open(file, "r").catch(() => undefined);
    if (!fh) return Buffer.alloc(0);
    try {
      const { size } = await fh.stat();
      if (offset >= size) return Buffer.alloc(0);
      const buf = Buffer.alloc(Math.min(size - offset, 1 << 20));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  };
}
