// The watchdog device the fence process pets (--watchdog). Any write pets it; a
// 'V' written just before close is the "magic close" that disarms it on an
// orderly stop (a driver built with nowayout ignores it and keeps counting). Pets
// carry '.', never 'V', so a pet never arms the magic close by accident. A real
// /dev/watchdog (or softdog) reboots the whole host once petting stops.
import { closeSync, constants, openSync, writeSync } from "node:fs";

const RETRY_MS = 10_000;

export class FenceWatchdog {
  private fd: number | undefined;
  private openedDevice: string | undefined;
  private failedAt = 0;
  error: string | undefined;

  constructor(private readonly log: (msg: string, fields?: Record<string, unknown>) => void) {}

  get device(): string | undefined {
    return this.openedDevice;
  }

  get isOpen(): boolean {
    return this.fd !== undefined;
  }

  /** Opens `device` (write only, never created: a missing device is an error, not a new file). */
  use(device: string | undefined): void {
    // A device that could not be opened is tried again now and then (a module loaded late).
    if (device === this.openedDevice && (this.fd !== undefined || (this.error && Date.now() - this.failedAt < RETRY_MS))) return;
    this.close();
    this.openedDevice = device;
    this.error = undefined;
    if (!device) return;
    try {
      this.fd = openSync(device, constants.O_WRONLY);
      this.log("watchdog opened", { device });
    } catch (err) {
      this.error = `cannot open ${device}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      this.failedAt = Date.now();
      this.log("refusing to arm: the watchdog cannot be opened", { device, error: this.error, level: "error" });
    }
  }

  pet(): void {
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, ".");
    } catch (err) {
      this.error = `cannot pet ${this.openedDevice}: ${(err as Error).message}`;
    }
  }

  /** Orderly stop: the magic close, so the device stops counting. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, "V");
    } catch {
      // the close below still happens
    }
    try {
      closeSync(this.fd);
    } catch {
      // nothing more to do
    }
    this.log("watchdog closed (magic close)", { device: this.openedDevice });
    this.fd = undefined;
  }
}
