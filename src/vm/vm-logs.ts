// A VM's two logs on disk: the serial console's (qemu's chardev logfile) and
// qemu's own stdout/stderr, each kept to its newest bytes. Only a live qemu
// writes to them, so they are watched while it runs and brought under their caps
// when it ends or when the daemon adopts it.
import type { Logger } from "pino";
import { BoundedLog } from "../store/bounded-log.js";
import type { VmPaths } from "../store/vm-paths.js";

/** qemu's own stdout/stderr: a few lines per run, unless something keeps it talking. */
export const QEMU_LOG_MAX = 1024 * 1024;
/** The serial console log's cap when none is configured (`--console-log-max`'s default). */
const DEFAULT_CONSOLE_LOG_MAX = 8 * 1024 * 1024;

export class VmLogs {
  readonly console: BoundedLog;
  readonly qemu: BoundedLog;
  private watching: AbortController | undefined;

  constructor(
    paths: Pick<VmPaths, "consoleLog" | "qemuLog">,
    private readonly log: Logger,
    consoleLogMax = DEFAULT_CONSOLE_LOG_MAX,
  ) {
    this.console = new BoundedLog(paths.consoleLog, consoleLogMax, log);
    this.qemu = new BoundedLog(paths.qemuLog, QEMU_LOG_MAX, log);
  }

  /** A qemu now runs: both logs are kept under their caps as it writes. */
  watch(): void {
    this.watching?.abort();
    const watch = (this.watching = new AbortController());
    void this.console.watch(watch.signal);
    void this.qemu.watch(watch.signal);
  }

  /** qemu ended: the watch stops, and both logs are brought under their caps once more. */
  qemuEnded(): void {
    this.watching?.abort();
    void this.bound();
  }

  /** Brings both logs under their caps now (at adoption: qemu may have written much while the daemon was down). */
  async bound(): Promise<void> {
    await Promise.all([this.console.enforce(), this.qemu.enforce()]).catch((err: Error) => this.log.error({ err }, "cannot rotate the VM's logs"));
  }
}
