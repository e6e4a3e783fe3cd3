// The floor: the very argv vmhostd used, started by hand with nothing around it
// (spawn, QMP connect, cont, query-status). Whatever vmhostd adds on top of this
// is its own overhead. The launcher (spawnRawQemu, quitRawQemu) is shared with
// the migration bench's by-hand side.
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, chown, mkdir, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { MiniQmp } from "./mini-qmp.js";

/** Where the daemon kept one VM's files, to be swapped for the bench's own directory. */
export interface VmDirs {
  runDir: string;
  stateDir: string;
}

/**
 * The daemon's argv with its per-VM socket, pidfile and log paths moved to `dir`,
 * so the hand-started qemu cannot collide with anything the daemon owns.
 */
export function relocateArgv(argv: string[], from: VmDirs, dir: string): string[] {
  const prefixes = [from.runDir, from.stateDir].map((d) => d.replace(/\/?$/, "/"));
  return argv.map((arg) => prefixes.reduce((a, p) => a.split(p).join(dir + "/"), arg));
}

/** The uid and gid a qemu runs as; undefined means root. */
export interface RawIdentity {
  uid: number;
  gid: number;
}

/**
 * Who the daemon ran this VM's qemu as: the owner of the VM's qemu run directory
 * (qemu-files.ts gives it to the VM's uid). The hand-started qemu runs as the same
 * uid, so both sides pay for the same sandbox and neither can use root's rights.
 */
export async function identityOfVm(vmRunDir: string): Promise<RawIdentity | undefined> {
  const st = await stat(path.join(vmRunDir, "qemu"));
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

/** Every file path the argv names (socket, log, pidfile, VNC socket). */
function pathsIn(argv: string[]): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    for (const m of a.matchAll(/(?:^|,)(?:path|logfile)=([^,]+)/g)) out.push(m[1]!);
    if (a.startsWith("unix:")) out.push(a.slice("unix:".length));
    if (argv[i - 1] === "-pidfile") out.push(a);
  });
  return out;
}

/**
 * Makes the directories the relocated argv names below `dir` (the daemon keeps its
 * sockets in a `qemu/` subdirectory), owned by `identity` as the daemon's are, so an
 * unprivileged qemu can create its sockets, pidfile and console log there.
 */
export async function prepareRawDir(argv: string[], dir: string, identity: RawIdentity | undefined): Promise<void> {
  const dirs = new Set([dir, ...pathsIn(argv).filter((p) => p.startsWith(dir + "/")).map((p) => path.dirname(p))]);
  for (const d of [...dirs].sort()) {
    await mkdir(d, { recursive: true, mode: 0o700 });
    if (identity) await chown(d, identity.uid, identity.gid);
    await chmod(d, 0o700);
  }
}

/** The last lines qemu wrote to its log, for an error message. */
export async function logTail(file: string, lines = 5): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** The QMP socket path from `-chardev socket,id=qmp,path=...`. */
export function qmpSocketOf(argv: string[]): string {
  for (let i = 0; i < argv.length - 1; i++) {
    const opt = argv[i + 1]!;
    if (argv[i] === "-chardev" && /(^|,)id=qmp(,|$)/.test(opt)) {
      const m = /(?:^|,)path=([^,]+)/.exec(opt);
      if (m) return m[1]!;
    }
  }
  throw new Error("argv has no '-chardev socket,id=qmp,path=...'");
}

/** The files in `dir` qemu creates itself and refuses to (or should not) reuse. */
function staleFiles(argv: string[], dir: string): string[] {
  return argv.flatMap((a) => [...a.matchAll(/(?:^|,)path=([^,]+)/g)].map((m) => m[1]!)).filter((p) => p.startsWith(dir));
}

/** Removes the sockets an earlier qemu left in `dir`, before a new one is spawned there. */
export async function clearStaleFiles(argv: string[], dir: string): Promise<void> {
  await Promise.all(staleFiles(argv, dir).map((f) => rm(f, { force: true })));
  // The daemon's qemu keeps its sockets and pidfile in a directory of its own (<vm run dir>/qemu): made here too.
  const escaped = dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const files = argv.flatMap((a) => [...a.matchAll(new RegExp(`${escaped}/[^,]+`, "g"))].map((m) => m[0]));
  await Promise.all([...new Set(files.map((f) => path.dirname(f)))].map((d) => mkdir(d, { recursive: true })));
}

/** The hand-started qemus still running, for killRawQemus on an interrupted bench. */
const live = new Set<ChildProcess>();

export function killRawQemus(): void {
  for (const child of live) child.kill("SIGKILL");
}

/** A qemu started by hand: its process, whether it has gone, and a promise of its end. */
export interface RawQemu {
  child: ChildProcess;
  exited(): boolean;
  exit: Promise<void>;
}

/**
 * Spawns qemu with the same launch shape as the daemon: own session, stdio to
 * `logFd`, argv array. It is killed by killRawQemus until it exits.
 */
export function spawnRawQemu(argv: string[], logFd: number, identity?: RawIdentity): RawQemu {
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", logFd, logFd], ...(identity ?? {}) });
  live.add(child);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    const done = (): void => (live.delete(child), (exited = true), resolve());
    child.once("exit", done);
    child.once("error", done); // could not spawn: no exit event will follow
  });
  return { child, exited: () => exited, exit };
}

/** Asks qemu to quit over QMP and waits for it to go, SIGKILL after `ms`. */
export async function quitRawQemu(q: RawQemu, qmp: MiniQmp, ms = 10_000): Promise<void> {
  await qmp.quit();
  await exitWithin(q.exit, ms, () => q.child.kill("SIGKILL"));
}

/**
 * One timed start: spawn → QMP up → cont → query-status says running.
 * Returns milliseconds; qemu is told to quit (untimed) before returning.
 */
export async function timeRawStart(argv: string[], dir: string, identity?: RawIdentity): Promise<number> {
  await clearStaleFiles(argv, dir);
  const logFile = path.join(dir, "qemu.log");
  const log = await open(logFile, "a");
  const t0 = performance.now();
  const q = spawnRawQemu(argv, log.fd, identity);
  let qmp: MiniQmp | undefined;
  try {
    qmp = await MiniQmp.connect(qmpSocketOf(argv), 30_000, () => !q.exited());
    await qmp.execute("cont");
    while (((await qmp.execute("query-status")) as { status: string }).status !== "running") {
      // cont is synchronous in qemu, so this loop normally runs once.
    }
    const ms = performance.now() - t0;
    await quitRawQemu(q, qmp);
    return ms;
  } catch (err) {
    qmp?.close();
    q.child.kill("SIGKILL");
    await q.exit;
    const tail = await logTail(logFile);
    throw tail ? new Error(`${(err as Error).message}; qemu's log ends:\n${tail}`, { cause: err }) : err;
  } finally {
    await log.close();
  }
}

async function exitWithin(exit: Promise<void>, ms: number, onTimeout: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
  if ((await Promise.race([exit, timedOut])) === "late") {
    onTimeout();
    await exit;
  }
  clearTimeout(timer);
}
