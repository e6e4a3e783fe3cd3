// The by-hand side of the migration bench, the floor vmhostd is measured against:
// vmhostd's own argv (per-VM paths moved to the bench's two directories), a source
// qemu started and `cont`ed, and for each run a destination qemu spawned with
// `-incoming defer`, then the same QMP commands the daemon sends, with nothing around them.
import { open, rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ConsoleTail, fileConsole, untilTicking } from "./guest-console.js";
import {
  ALIVE_TICKS,
  MIGRATION_DEADLINE_MS,
  RESUME_DEADLINE_MS,
  untilBooted,
  type MigratingGuest,
  type MigrationCase,
  type MigrationOutcome,
} from "./migration-case.js";
import { MiniQmp } from "./mini-qmp.js";
import {
  clearStaleFiles,
  identityOfVm,
  prepareRawDir,
  qmpSocketOf,
  quitRawQemu,
  relocateArgv,
  spawnRawQemu,
  type RawIdentity,
  type RawQemu,
  type VmDirs,
} from "./raw-qemu.js";
import { freePort } from "./vmhostd-migration.js";

/** How often query-migrate is asked; the daemon asks every 250 ms. */
export const HAND_POLL_MS = 20;

interface QueryMigrate {
  status?: string;
  downtime?: number;
  "total-time"?: number;
  "error-desc"?: string;
}

/** One of the two places the guest moves between: a directory (sockets, pidfile, logs) and the argv that uses it. */
interface Side {
  dir: string;
  argv: string[];
  /** The uid the daemon ran this VM's qemu as: the by-hand qemu runs as it too. */
  identity: RawIdentity | undefined;
}

/** The qemu the guest runs in now, on side `side`. */
interface Running {
  side: number;
  qemu: RawQemu;
  qmp: MiniQmp;
}

/** The serial console's logfile= from vmhostd's argv. */
function consoleLogOf(argv: string[]): string {
  for (const a of argv) {
    const m = /(?:^|,)logfile=([^,]+)/.exec(a);
    if (m) return m[1]!;
  }
  throw new Error("argv has no chardev with logfile=: cannot follow the console");
}

/** Readies a side's directory for a new qemu (no old sockets, an empty console log); untimed. */
async function prepare(side: Side): Promise<FileHandle> {
  await prepareRawDir(side.argv, side.dir, side.identity);
  await clearStaleFiles(side.argv, side.dir);
  await rm(consoleLogOf(side.argv), { force: true });
  return open(path.join(side.dir, "qemu.log"), "a");
}

/** Spawns qemu with its stdio to `log`, which the child keeps: the parent's copy is closed. */
async function spawnWithLog(argv: string[], log: FileHandle, identity: RawIdentity | undefined): Promise<RawQemu> {
  const qemu = spawnRawQemu(argv, log.fd, identity);
  await log.close();
  return qemu;
}

/**
 * The source's downtime and total-time once qemu has computed them. qemu 7.2 sets the
 * status to completed before it does (migration_completion, then
 * migration_iteration_finish), and reports zeros in between; runstate postmigrate
 * is set after they are computed.
 */
async function finalFigures(qmp: MiniQmp): Promise<{ downtime: number; "total-time": number }> {
  for (let i = 0; i < 500; i++) {
    const { status } = (await qmp.execute("query-status")) as { status: string };
    if (status === "postmigrate") {
      const info = (await qmp.execute("query-migrate")) as QueryMigrate;
      if (typeof info.downtime !== "number" || typeof info["total-time"] !== "number") {
        throw new Error(`query-migrate completed without downtime/total-time: ${JSON.stringify(info)}`);
      }
      return { downtime: info.downtime, "total-time": info["total-time"] };
    }
    await sleep(10);
  }
  throw new Error("the source qemu did not reach postmigrate in 5 s after completing");
}

export class HandGuest implements MigratingGuest {
  private tail: ConsoleTail;
  private bootId = "";

  private constructor(
    private readonly sides: [Side, Side],
    private readonly c: MigrationCase,
    private running: Running,
  ) {
    this.tail = new ConsoleTail(fileConsole(consoleLogOf(sides[running.side]!.argv)));
  }

  /** Starts the source qemu in `dirs[0]` from vmhostd's argv, `cont`s it and waits until the guest is up. */
  static async boot(daemonArgv: string[], from: VmDirs, dirs: [string, string], c: MigrationCase): Promise<HandGuest> {
    const identity = await identityOfVm(from.runDir);
    const sides = dirs.map((dir) => ({ dir, argv: relocateArgv(daemonArgv, from, dir), identity })) as [Side, Side];
    if (!qmpSocketOf(sides[0].argv).startsWith(dirs[0])) throw new Error(`QMP socket not under ${from.runDir}: cannot relocate argv`);
    const qemu = await spawnWithLog(sides[0].argv, await prepare(sides[0]), identity);
    try {
      const qmp = await MiniQmp.connect(qmpSocketOf(sides[0].argv), 30_000, () => !qemu.exited());
      const g = new HandGuest(sides, c, { side: 0, qemu, qmp });
      await qmp.execute("cont");
      g.bootId = await untilBooted(g.tail, c, "by-hand guest");
      return g;
    } catch (err) {
      qemu.child.kill("SIGKILL");
      await qemu.exit;
      throw err;
    }
  }

  async pause(): Promise<void> {
    await this.running.qmp.execute("stop");
  }

  async resume(): Promise<void> {
    await this.tail.skipToEnd();
    await this.running.qmp.execute("cont");
    await untilTicking(this.tail, this.bootId, RESUME_DEADLINE_MS, "VMH-TICK after cont");
  }

  async checkAlive(what: string): Promise<void> {
    await untilTicking(this.tail, this.bootId, RESUME_DEADLINE_MS, `VMH-TICK ${what}`, ALIVE_TICKS);
  }

  async migrate(): Promise<MigrationOutcome> {
    const src = this.running;
    const destSide = 1 - src.side;
    const side = this.sides[destSide]!;
    const argv = [...side.argv, "-incoming", "defer"];
    const log = await prepare(side);
    const s = this.c.settings;
    const t0 = performance.now();
    const qemu = await spawnWithLog(argv, log, side.identity);
    let qmp: MiniQmp | undefined;
    try {
      qmp = await MiniQmp.connect(qmpSocketOf(argv), 30_000, () => !qemu.exited());
      const uri = `tcp:127.0.0.1:${await freePort()}`;
      await qmp.execute("migrate-incoming", { uri });
      await src.qmp.execute("migrate-set-capabilities", {
        capabilities: [
          { capability: "events", state: true },
          { capability: "auto-converge", state: s.autoConverge },
          { capability: "postcopy-ram", state: false },
        ],
      });
      await src.qmp.execute("migrate-set-parameters", { "downtime-limit": s.maxDowntimeMs, "max-bandwidth": s.bandwidthMiBps * 1024 * 1024 });
      await src.qmp.execute("migrate", { uri });
      await this.untilCompleted(src.qmp, t0);
      // The source is done when it has sent everything; the destination may still be
      // loading it, and a `cont` then only arms autostart and returns before the guest
      // runs. So, as vmhostd's commit does, wait for the destination to be done too.
      await this.untilCompleted(qmp, t0);
      await qmp.execute("cont");
      const totalMs = performance.now() - t0;
      // Untimed from here.
      const info = await finalFigures(src.qmp);
      await quitRawQemu(src.qemu, src.qmp);
      this.running = { side: destSide, qemu, qmp };
      this.tail = new ConsoleTail(fileConsole(consoleLogOf(side.argv)));
      return { ok: true, sample: { totalMs, downtimeMs: info.downtime, qemuTotalMs: info["total-time"] } };
    } catch (err) {
      // As the daemon does before RAM has arrived: cancel, drop the destination, run on here.
      await src.qmp.execute("migrate_cancel").catch(() => undefined);
      await this.untilSettled(src.qmp);
      qmp?.close();
      qemu.child.kill("SIGKILL");
      await qemu.exit;
      return { ok: false, why: (err as Error).message };
    }
  }

  private async untilCompleted(qmp: MiniQmp, t0: number): Promise<void> {
    for (;;) {
      const info = (await qmp.execute("query-migrate")) as QueryMigrate;
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new Error(`qemu: migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
      }
      if (performance.now() - t0 > MIGRATION_DEADLINE_MS) throw new Error(`cancelled after ${MIGRATION_DEADLINE_MS / 1000} s (qemu: ${info.status})`);
      await sleep(HAND_POLL_MS);
    }
  }

  /** After a cancel: waits for qemu to leave the migration and makes sure the guest runs. */
  private async untilSettled(qmp: MiniQmp): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const st = ((await qmp.execute("query-migrate").catch(() => ({}))) as QueryMigrate).status;
      if (st !== "active" && st !== "cancelling" && st !== "setup" && st !== "device") break;
      await sleep(100);
    }
    const status = ((await qmp.execute("query-status").catch(() => ({}))) as { status?: string }).status;
    if (status !== "running") await qmp.execute("cont").catch(() => undefined);
  }

  async close(): Promise<void> {
    await quitRawQemu(this.running.qemu, this.running.qmp);
  }
}
