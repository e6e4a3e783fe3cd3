// How long to wait for qemu's reply to each command, after Incus's QMP monitor:
// queries answer from memory and should be quick, so a slow one means qemu is
// stuck; commands that drain I/O, touch storage or talk to the guest's hardware
// legitimately take longer. A timeout leaves the connection up (qemu may still
// answer late); the caller decides what a timeout means for the VM.

/** For any command not in the table: queries and other cheap commands. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;

const SLOW_MS = 30_000;
const MIGRATION_MS = 60_000;

export const COMMAND_TIMEOUTS_MS: Readonly<Record<string, number>> = Object.freeze({
  // stop drains in-flight block I/O before it returns; cont may re-activate
  // block nodes after an incoming migration.
  stop: SLOW_MS,
  cont: SLOW_MS,
  system_reset: 10_000,
  // quit flushes and closes every block device before qemu replies or hangs up.
  quit: SLOW_MS,

  // Hotplug waits on the guest-visible bus and on backends opening files.
  device_add: SLOW_MS,
  device_del: SLOW_MS,
  netdev_add: SLOW_MS,
  netdev_del: SLOW_MS,
  "chardev-add": SLOW_MS,
  "object-add": SLOW_MS,

  // Storage: opening images (and their backing chains, maybe on network storage).
  "blockdev-add": SLOW_MS,
  "blockdev-del": SLOW_MS,
  "blockdev-create": SLOW_MS,
  "blockdev-snapshot-sync": SLOW_MS,
  block_resize: SLOW_MS,

  // Block jobs: starting, completing or cancelling one drains the affected nodes.
  "block-commit": SLOW_MS,
  "block-stream": SLOW_MS,
  "blockdev-mirror": SLOW_MS,
  "blockdev-backup": SLOW_MS,
  "drive-mirror": SLOW_MS,
  "block-job-cancel": SLOW_MS,
  "block-job-complete": SLOW_MS,
  "job-cancel": SLOW_MS,
  "job-complete": SLOW_MS,
  "job-finalize": SLOW_MS,
  "job-dismiss": SLOW_MS,

  // Writes the whole framebuffer to a file.
  screendump: SLOW_MS,

  // Migration commands return once the migration has started, but setting up
  // the channel (and, on the destination, listening) can take a while.
  migrate: MIGRATION_MS,
  "migrate-incoming": MIGRATION_MS,
  migrate_cancel: SLOW_MS,
  "migrate-continue": SLOW_MS,
  "migrate-set-capabilities": 10_000,
  "migrate-set-parameters": 10_000,
});

/** Valid timeouts are positive; Infinity means "wait as long as the connection lives". */
function checkTimeout(ms: number, where: string): number {
  if (!(ms > 0)) throw new RangeError(`QMP timeout for ${where} must be a positive number of ms, got ${ms}`);
  return ms;
}

/**
 * The timeout for one call of `command`: the call's own value, else the client's
 * override for that command, else the table, else the default.
 */
export function commandTimeoutMs(
  command: string,
  perCall: number | undefined,
  perClient: Partial<Record<string, number>> | undefined,
): number {
  if (perCall !== undefined) return checkTimeout(perCall, command);
  const clientValue = perClient?.[command];
  if (clientValue !== undefined) return checkTimeout(clientValue, command);
  return COMMAND_TIMEOUTS_MS[command] ?? DEFAULT_COMMAND_TIMEOUT_MS;
}
