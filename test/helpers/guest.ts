// The test guest every integration test boots (built by test/fixtures/build-guest.sh),
// and the reading of the marker lines its /init prints on the serial console.
import { execFile } from "node:child_process";
import { access } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface GuestFiles {
  kernel: string;
  initrd: string;
  cmdline: string;
}

/**
 * Kernel messages stay off the console except errors (loglevel=4), so the
 * markers are easy to read. panic=-1 reboots at once rather than hanging, and a
 * test sees the new boot id. cryptomgr.notests skips the crypto self-tests,
 * about half a second of a TCG boot.
 */
export const GUEST_CMDLINE = "console=ttyS0 loglevel=4 panic=-1 cryptomgr.notests";

/** The fixture's first build downloads a kernel; later test processes may wait on its lock. */
const BUILD_TIMEOUT_MS = 15 * 60_000;

let built: Promise<GuestFiles> | undefined;

/**
 * Builds the guest into the cache if it is missing or stale, once per process;
 * the script itself holds a lock so parallel test processes build it only once.
 */
export function ensureGuest(): Promise<GuestFiles> {
  built ??= buildGuest().catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function buildGuest(): Promise<GuestFiles> {
  const script = await findBuildScript();
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("bash", [script], { timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, out, errOut) => {
      if (err) reject(new Error(`${script} failed: ${err.message}\n${errOut.slice(-4000)}`));
      else resolve(out);
    });
  });
  const paths = Object.fromEntries(
    stdout
      .split("\n")
      .map((line) => /^(kernel|initrd)=(.+)$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1], m[2]]),
  );
  if (!paths.kernel || !paths.initrd) throw new Error(`${script} printed no kernel= and initrd= lines:\n${stdout}`);
  return { kernel: paths.kernel, initrd: paths.initrd, cmdline: GUEST_CMDLINE };
}

/** Tests run from dist/test/helpers, which tsc fills without the shell script: look upwards for it. */
async function findBuildScript(): Promise<string> {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "test/fixtures/build-guest.sh");
    if (await access(candidate).then(() => true, () => false)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`test/fixtures/build-guest.sh not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export interface GuestMarkers {
  /** The latest boot's id (from VMH-BOOT or VMH-READY), undefined before the guest got that far. */
  bootId: string | undefined;
  /** Every boot id in the text, oldest first: a console log is appended to across restarts. */
  bootIds: string[];
  /** Whether the latest boot printed VMH-READY. */
  ready: boolean;
  /** The latest boot's VMH-TICK counters, in order. */
  ticks: number[];
  /** The latest boot's virtio disks by device name, in bytes, as last reported (hot-plug and resize included). */
  disks: Record<string, number>;
  /** The latest boot saw the ACPI power button. */
  poweroff: boolean;
  /** The latest boot's VMH-ERROR lines. */
  errors: string[];
}

const BOOT_ID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})";
const MARKERS: Array<[RegExp, (m: RegExpExecArray, s: GuestMarkers) => void]> = [
  [new RegExp(`VMH-BOOT boot_id=${BOOT_ID}$`), (m, s) => startBoot(s, m[1]!)],
  [
    new RegExp(`VMH-READY boot_id=${BOOT_ID}$`),
    (m, s) => {
      // A log without VMH-BOOT (cut at its start) still splits at READY; the
      // disks before it are this boot's when no earlier boot was seen.
      if (s.bootId !== m[1]) {
        const disks = s.bootId === undefined ? s.disks : {};
        startBoot(s, m[1]!);
        s.disks = disks;
      }
      s.ready = true;
    },
  ],
  [
    new RegExp(`VMH-TICK (\\d+) boot_id=${BOOT_ID}$`),
    (m, s) => {
      if (m[2] === s.bootId) s.ticks.push(Number(m[1]));
    },
  ],
  [/VMH-DISK (\S+) (\d+)$/, (m, s) => void (s.disks[m[1]!] = Number(m[2]))],
  [/VMH-DISK-GONE (\S+)$/, (m, s) => void delete s.disks[m[1]!]],
  [/VMH-POWEROFF$/, (_m, s) => void (s.poweroff = true)],
  [/VMH-ERROR (.*)$/, (m, s) => void s.errors.push(m[1]!)],
];

function startBoot(s: GuestMarkers, bootId: string): void {
  s.bootId = bootId;
  s.bootIds.push(bootId);
  s.ready = false;
  s.ticks = [];
  s.disks = {};
  s.poweroff = false;
  s.errors = [];
}

/**
 * Reads the guest's markers from console text. Only complete lines count: a log
 * read while the guest writes may end inside a line, and "VMH-DISK vda 10737"
 * must not be taken for a size.
 */
export function parseGuestMarkers(text: string): GuestMarkers {
  const s: GuestMarkers = { bootId: undefined, bootIds: [], ready: false, ticks: [], disks: {}, poweroff: false, errors: [] };
  const lines = text.split("\n");
  lines.pop();
  for (const raw of lines) {
    const line = raw.replace(/\r$/, "");
    for (const [re, apply] of MARKERS) {
      const m = re.exec(line);
      if (m) {
        apply(m, s);
        break;
      }
    }
  }
  return s;
}
