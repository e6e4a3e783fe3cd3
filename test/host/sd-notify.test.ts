// sd_notify through the perl helper, checked against a datagram socket of our own
// standing in for systemd's: READY=1 once the API answers, WATCHDOG=1 at half the
// period, STOPPING=1 on SIGTERM, and abstract sockets and multi-line messages.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { pino } from "pino";
import t from "tap";
import { SystemdNotifier } from "../../src/host/sd-notify.js";
import { startDaemon } from "../helpers/daemon.js";

/**
 * Binds a datagram socket (a leading "@" for an abstract one) in a perl child (perl-base
 * is on every Debian host, like the helper's), which prints "bound" and then each
 * datagram hex-encoded on a line of its own: a message may hold newlines.
 */
const RECEIVER = String.raw`
use strict;
use Socket qw(AF_UNIX SOCK_DGRAM pack_sockaddr_un);
(my $path = $ARGV[0]) =~ s/^@/\0/;
socket(my $sock, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!\n";
bind($sock, pack_sockaddr_un($path)) or die "bind $ARGV[0]: $!\n";
$| = 1;
print "bound\n";
while (defined(recv($sock, my $buf, 65536, 0))) { print unpack("H*", $buf), "\n"; }
`;

class NotifyReceiver {
  readonly messages: string[] = [];
  private wake: () => void = () => {};

  private constructor(private readonly proc: ChildProcess) {}

  static async bind(name: string): Promise<NotifyReceiver> {
    const proc = spawn("perl", ["-e", RECEIVER, name], { stdio: ["ignore", "pipe", "inherit"] });
    const r = new NotifyReceiver(proc);
    const bound = new Promise<void>((resolve, reject) => {
      proc.once("error", reject);
      proc.once("exit", (code) => reject(new Error(`receiver exited (${code}) before binding`)));
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        if (line === "bound") return resolve();
        r.messages.push(Buffer.from(line, "hex").toString("utf8"));
        r.wake();
      });
    });
    await bound;
    return r;
  }

  /** Resolves once `count` messages match, or fails at the deadline. */
  async waitFor(match: (m: string) => boolean, count = 1, timeoutMs = 10_000): Promise<string[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hits = this.messages.filter(match);
      if (hits.length >= count) return hits;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`wanted ${count} matching messages, got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => (clearTimeout(timer), resolve());
      });
    }
  }

  close(): void {
    this.proc.kill();
  }
}

/** The daemon's sd_notify helper: its child named vmhostd-sd-notify. */
async function findHelper(parentPid: number): Promise<number | undefined> {
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (ppid === parentPid && cmdline.startsWith("vmhostd-sd-notify")) return Number(pid);
  }
  return undefined;
}

/** Gone, or a zombie nobody reaps (PID 1 in a container may not). */
async function processEnded(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat === undefined || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
}

t.test("the daemon notifies READY, pings the watchdog and notifies STOPPING", async (t) => {
  const dir = await mkdtemp("/tmp/vmh-notify-");
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = path.join(dir, "notify.sock");
  const rx = await NotifyReceiver.bind(socket);
  t.teardown(() => rx.close());

  const d = await startDaemon({ env: { NOTIFY_SOCKET: socket, WATCHDOG_USEC: "400000" } });
  t.teardown(() => d.cleanup());

  // The API may answer before READY=1: readiness waits for every VM to be adopted.
  const [ready] = await rx.waitFor((m) => m.startsWith("READY=1"));
  t.match(ready, /^READY=1\nSTATUS=[^\n]*vmhostd\.sock[^\n]*$/, "READY=1 and STATUS in one datagram");

  const before = Date.now();
  await rx.waitFor((m) => m === "WATCHDOG=1", 4);
  t.ok(Date.now() - before < 3000, "WATCHDOG=1 every 200 ms (half of WATCHDOG_USEC)");

  const helper = await findHelper(d.proc.pid!);
  t.ok(helper, "one long-lived helper child");
  const environ = await readFile(`/proc/${helper}/environ`, "utf8");
  t.notMatch(environ, /NOTIFY_SOCKET=|WATCHDOG_USEC=/, "children of the daemon do not inherit the notify variables");

  const exited = new Promise<number | null>((resolve) => d.proc.once("exit", resolve));
  d.proc.kill("SIGTERM");
  await rx.waitFor((m) => m === "STOPPING=1");
  t.pass("STOPPING=1 on SIGTERM");
  t.equal(await exited, 0, "the daemon exits cleanly");
  const until = Date.now() + 5000;
  while (!(await processEnded(helper!)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.ok(await processEnded(helper!), "the helper ends with the daemon");
});

t.test("abstract socket, escaping, and the environment", async (t) => {
  const name = `@vmh-notify-test-${process.pid}`;
  const rx = await NotifyReceiver.bind(name);
  t.teardown(() => rx.close());
  const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: name, WATCHDOG_USEC: "100000", WATCHDOG_PID: "1", KEEP: "me" };
  const n = SystemdNotifier.fromEnv(env, pino({ level: "silent" }));
  t.ok(n, "a notifier when NOTIFY_SOCKET is set");
  t.same(env, { KEEP: "me" }, "NOTIFY_SOCKET and WATCHDOG_* removed, nothing else");
  t.teardown(() => n!.close());

  // WATCHDOG_PID names another process: the watchdog is not ours to ping.
  n!.startWatchdog();
  n!.ready("line one\nline two");
  n!.status(String.raw`back\slash \n literal`);
  n!.stopping();
  await rx.waitFor((m) => m === "STOPPING=1");
  t.same(rx.messages, ["READY=1\nSTATUS=line one line two", String.raw`STATUS=back\slash \n literal`, "STOPPING=1"]);

  t.equal(SystemdNotifier.fromEnv({}, pino({ level: "silent" })), undefined, "no notifier without NOTIFY_SOCKET");
});
