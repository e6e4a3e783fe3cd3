// sd_notify(3) without a native addon: tells systemd (Type=notify) when the
// daemon is ready, when it is stopping, and that it is alive (the watchdog).
//
// systemd's NOTIFY_SOCKET is an AF_UNIX datagram socket, which Node cannot open.
// Running `systemd-notify` once per message is racy: systemd attributes a message
// by the sender's pid and cgroup, and a process that has already exited may not
// be attributed to the unit at all. So one long-lived helper, `perl` (perl-base is
// essential on Debian and carries Socket), reads one message per line on its
// stdin and sends each as one datagram. It lives exactly as long as its stdin:
// when the daemon exits or dies, the pipe closes and the helper ends. Because the
// helper is not the main pid, the unit needs NotifyAccess=all.
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { spawnChild } from "./child-process.js";

/** The variables systemd passes for notification; none of them is meant for our children. */
const NOTIFY_ENV = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] as const;

/**
 * The helper. The socket path is its first argument, not an environment variable,
 * so that the daemon can unset NOTIFY_SOCKET for everything else it runs.
 * Messages arrive with "\n" and "\\" escaped, one per line, since a message of
 * several assignments (READY=1, STATUS=...) must still be a single datagram.
 * It ignores HUP, INT and TERM: a Ctrl-C to the process group or a signal to the
 * unit's processes must not lose STOPPING=1; the end of stdin is its only way out.
 */
const HELPER_SCRIPT = String.raw`
use strict;
use warnings;
use Socket qw(AF_UNIX SOCK_DGRAM pack_sockaddr_un);
$SIG{$_} = "IGNORE" for qw(HUP INT TERM PIPE);
# What ps and /proc/PID/cmdline show instead of this script.
$0 = "vmhostd-sd-notify";
my $name = shift @ARGV;
# A leading "@" names a Linux abstract socket, whose address starts with a NUL byte.
(my $path = $name) =~ s/^@/\0/;
socket(my $sock, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!\n";
my $addr = pack_sockaddr_un($path);
while (defined(my $line = <STDIN>)) {
  chomp $line;
  $line =~ s/\\(.)/$1 eq "n" ? "\n" : $1/ge;
  # Not connect(): sendto() each time keeps working if systemd re-creates the socket.
  send($sock, $line, 0, $addr) or warn "send to $name: $!\n";
}
`;

export class SystemdNotifier {
  private watchdog: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly helper: ChildProcess,
    private readonly watchdogUsec: number | undefined,
    private readonly log: Logger,
  ) {}

  /**
   * A notifier when systemd asked for notifications (NOTIFY_SOCKET is set), else
   * undefined. Like sd_notify's unset_environment, it removes NOTIFY_SOCKET and
   * WATCHDOG_* from `env`: with NotifyAccess=all, any qemu or tool the daemon
   * starts that speaks sd_notify could otherwise report READY or STOPPING for it.
   */
  static fromEnv(env: NodeJS.ProcessEnv, log: Logger): SystemdNotifier | undefined {
    const socket = env.NOTIFY_SOCKET;
    const watchdogUsec = Number(env.WATCHDOG_USEC);
    const watchdogPid = env.WATCHDOG_PID;
    for (const name of NOTIFY_ENV) delete env[name];
    if (!socket) return undefined;
    const childLog = log.child({ component: "sd-notify" });
    // An argv array, no shell: the socket path is passed as it is.
    const helper = spawnChild("perl", ["-e", HELPER_SCRIPT, socket], { stdio: ["pipe", "ignore", "pipe"] });
    helper.on("error", (err) => childLog.warn({ err: err.message }, "cannot run perl for sd_notify; systemd will not hear from vmhostd"));
    // A write after the helper died fails with EPIPE; without a listener that would end the daemon.
    helper.stdin!.on("error", (err) => childLog.warn({ err: err.message }, "sd_notify helper's stdin failed"));
    helper.stderr!.on("data", (c: Buffer) => childLog.warn({ helper: c.toString().trim() }, "sd_notify helper says"));
    const self = new SystemdNotifier(
      helper,
      Number.isInteger(watchdogUsec) && watchdogUsec > 0 && (!watchdogPid || Number(watchdogPid) === process.pid) ? watchdogUsec : undefined,
      childLog,
    );
    helper.on("exit", (code, signal) => {
      if (!self.closed) childLog.warn({ code, signal }, "sd_notify helper exited; systemd will not hear from vmhostd");
    });
    return self;
  }

  /** The API listens and every VM has been adopted. */
  ready(status?: string): void {
    this.send(status === undefined ? "READY=1" : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  status(text: string): void {
    this.send(`STATUS=${oneLine(text)}`);
  }

  stopping(): void {
    this.send("STOPPING=1");
  }

  /**
   * Pings systemd's watchdog at half its period, as sd_watchdog_enabled(3) advises.
   * The ping comes from a timer on the event loop, so a daemon whose loop is stuck
   * stops pinging and systemd restarts it. The timer is unref'd: it never keeps
   * the daemon alive on its own.
   */
  startWatchdog(): void {
    if (this.watchdogUsec === undefined || this.watchdog) return;
    const periodMs = Math.max(1, Math.floor(this.watchdogUsec / 2000));
    this.watchdog = setInterval(() => this.send("WATCHDOG=1"), periodMs).unref();
    this.log.debug({ periodMs }, "watchdog pings started");
  }

  /** Stops the pings and ends the helper once it has sent what it was given. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    this.helper.stdin?.end();
  }

  private send(message: string): void {
    if (this.closed || !this.helper.stdin?.writable) return;
    this.helper.stdin.write(message.replace(/\\/g, "\\\\").replace(/\n/g, "\\n") + "\n");
  }
}

/** systemd reads a message as newline-separated assignments; a STATUS text must not add one. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
