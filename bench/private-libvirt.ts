// A libvirtd of the bench's own, leaving the host's libvirt (if any) untouched.
//
// As root, libvirtd's qemu driver always runs "privileged", and a privileged
// driver has its directories compiled in (/etc/libvirt, /run/libvirt,
// /var/lib/libvirt, ...): no flag or config moves them. So the daemons run in a
// private mount namespace (unshare -m) where those directories are bind mounts of
// a temp dir; only the sockets, reached through the temp dir, are shared with us.
// No systemd here, so virtlogd and libvirtd are started by hand and killed by pid.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { access, mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

const PACKAGES = ["libvirt-daemon-driver-qemu", "libvirt-clients", "libvirt-daemon"];

/** The privileged driver's fixed directories, each replaced by <root>/<key> in the namespace. */
const MOUNTS = {
  etc: "/etc/libvirt",
  run: "/run/libvirt",
  lib: "/var/lib/libvirt",
  cache: "/var/cache/libvirt",
  log: "/var/log/libvirt",
} as const;

// qemu runs as root: the guest files sit in 0700 temp dirs, and as root libvirt
// does not chown (relabel) them on every start. The rest are libvirt's defaults.
const QEMU_CONF = `user = "root"\ngroup = "root"\n`;
// Only we can reach the socket (0700 in a 0700 dir), so no polkit/SASL is needed.
const LIBVIRTD_CONF = `unix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n`;

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore", env: withSbin() }).status === 0;
}

/** sbin is where libvirtd and virtlogd live, and not always on a non-login PATH. */
function withSbin(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin` };
}

/** apt-get installs the three packages when virsh, libvirtd or virtlogd is missing. */
export function ensureLibvirtInstalled(): void {
  if (["virsh", "libvirtd", "virtlogd", "unshare"].every(which)) return;
  process.stderr.write(`installing ${PACKAGES.join(" ")} with apt-get\n`);
  const env = { ...withSbin(), DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args: string[]): number | null => spawnSync("apt-get", args, { stdio: ["ignore", 2, 2], env }).status;
  if (apt(["update", "-q"]) !== 0) throw new Error("apt-get update failed");
  if (apt(["install", "-y", "-q", "--no-install-recommends", ...PACKAGES]) !== 0) throw new Error("apt-get install failed");
}

/**
 * The qemu driver resolves its compiled-in default account (Debian: user
 * libvirt-qemu, group libvirt-qemu) before it reads qemu.conf, and refuses to
 * start when it does not exist. libvirt-daemon-system would create it; that
 * package also wants systemd, so the accounts are made here.
 */
export function ensureQemuAccounts(): string[] {
  const made: string[] = [];
  const has = (db: string, name: string): boolean => spawnSync("getent", [db, name], { stdio: "ignore" }).status === 0;
  const must = (cmd: string, args: string[]): void => {
    const r = spawnSync(cmd, args, { stdio: ["ignore", 2, 2], env: withSbin() });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed`);
  };
  for (const group of ["kvm", "libvirt-qemu"]) {
    if (!has("group", group)) must("groupadd", ["--system", group]), made.push(`group ${group}`);
  }
  if (!has("passwd", "libvirt-qemu")) {
    must("useradd", ["--system", "--no-create-home", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin", "-g", "libvirt-qemu", "-G", "kvm", "libvirt-qemu"]);
    made.push("user libvirt-qemu");
  }
  return made;
}

export class PrivateLibvirt {
  private exited = false;
  private readonly madeMountPoints: string[] = [];

  private constructor(
    readonly root: string,
    private readonly proc: ChildProcess,
  ) {
    proc.once("exit", () => (this.exited = true));
  }

  get uri(): string {
    return `qemu:///system?socket=${path.join(this.root, "run", "libvirt-sock")}`;
  }

  /**
   * Spawns virtlogd and libvirtd; call waitReady next. Nothing after the spawn
   * awaits, so a caller registers the cleanup before a signal handler can run.
   */
  static async launch(): Promise<PrivateLibvirt> {
    const root = await mkdtemp("/tmp/vmhb-libvirt-");
    for (const key of Object.keys(MOUNTS)) await mkdir(path.join(root, key), { recursive: true });
    await writeFile(path.join(root, "etc", "qemu.conf"), QEMU_CONF);
    await writeFile(path.join(root, "etc", "libvirtd.conf"), LIBVIRTD_CONF);
    // A bind mount needs an existing mount point on the host; empty ones made here are removed at the end.
    const made: string[] = [];
    for (const dir of Object.values(MOUNTS)) {
      if (!(await exists(dir))) await mkdir(dir, { recursive: true }), made.push(dir);
    }
    const binds = Object.entries(MOUNTS).map(([key, dir]) => `mount --bind '${path.join(root, key)}' '${dir}'`);
    const script = [
      "set -e",
      ...binds,
      `virtlogd -d -p '${root}/virtlogd.pid'`,
      // exec: unshare does not fork and neither does this, so the child's pid is libvirtd's.
      `exec libvirtd -f /etc/libvirt/libvirtd.conf -p '${root}/libvirtd.pid'`,
    ].join("\n");
    const log = openSync(path.join(root, "libvirtd.log"), "a");
    const proc = spawn("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", script], {
      stdio: ["ignore", log, log],
      env: withSbin(),
      // Own process group: a Ctrl-C reaches only the bench, which destroys the domain before ending libvirtd.
      detached: true,
    });
    closeSync(log);
    const lv = new PrivateLibvirt(root, proc);
    lv.madeMountPoints.push(...made);
    return lv;
  }

  /** Runs virsh against this libvirtd; rejects with virsh's stderr on failure. */
  async virsh(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run("virsh", ["-q", "-c", this.uri, ...args], { env: withSbin() });
      return stdout.trim();
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`virsh ${args.join(" ")}: ${(e.stderr ?? e.message).trim()}`);
    }
  }

  async log(): Promise<string> {
    return readFile(path.join(this.root, "libvirtd.log"), "utf8").catch(() => "");
  }

  /** Destroys running domains, ends libvirtd and virtlogd (by their pids), removes the temp dir and mount points made. */
  async shutdown(): Promise<void> {
    // qemu outlives libvirtd, so any domain still running is destroyed first.
    if (!this.exited) {
      const running = await this.virsh("list", "--name").catch(() => "");
      for (const name of running.split("\n").filter(Boolean)) await this.virsh("destroy", name).catch(() => undefined);
    }
    if (!this.exited) {
      const gone = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      const late = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
      await gone;
      clearTimeout(late);
    }
    // virtlogd daemonised itself; its pidfile is the only record of its pid.
    const pid = Number((await readFile(path.join(this.root, "virtlogd.pid"), "utf8").catch(() => "")).trim());
    if (pid > 0) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
    for (const dir of this.madeMountPoints) await rmdir(dir).catch(() => undefined);
    await rm(this.root, { recursive: true, force: true });
  }

  /** Resolves once virsh gets an answer; the first one waits for libvirtd to probe qemu (seconds). */
  async waitReady(deadlineMs = 120_000): Promise<void> {
    const until = performance.now() + deadlineMs;
    const sock = path.join(this.root, "run", "libvirt-sock");
    while (performance.now() < until) {
      if (this.exited) throw new Error(`libvirtd exited at start:\n${(await this.log()).slice(-3000)}`);
      if ((await exists(sock)) && (await this.virsh("version").then(() => true, () => false))) return;
      await sleep(100);
    }
    throw new Error(`libvirtd not ready in ${deadlineMs} ms:\n${(await this.log()).slice(-3000)}`);
  }
}
