// The serial console's one connection to qemu, shared by every viewer. qemu's
// chardev socket serves one client at a time, so the daemon holds at most one
// connection per VM and fans the guest's output out to all viewers; one of them
// at most (the writer) types into it.
//
// The connection is opened for the first viewer and closed after the last one
// leaves. Nothing is lost by that: qemu's own chardev logfile keeps every byte
// whoever is attached, and with no client qemu never waits to send. It also
// means a daemon restart or a new qemu needs no reconnection logic: the next
// viewer connects to whatever qemu runs then. The hub never takes the VM's
// operation lock: watching a console does not make the VM busy.
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { ConsoleBusy, TooManyClients, VmStateConflict } from "../../errors.js";
import type { QemuSession } from "../qemu-session.js";

export type ConsoleMode = "ro" | "rw";

/** Why the hub let a viewer go: WebSocket close codes (4000-4999 are the application's). */
export const ConsoleEnd = {
  vmStopped: { code: 4000, reason: "the VM stopped (qemu exited)" },
  consoleLost: { code: 4001, reason: "the connection to qemu's console was lost; attach again" },
  tooSlow: { code: 4002, reason: "the viewer fell too far behind the console's output" },
  writerTaken: { code: 4009, reason: "the console already has a writer" },
  tooManyViewers: { code: 4029, reason: "the console has as many viewers as it takes" },
} as const;

/**
 * Every viewer costs a copy of each output chunk and up to MAX_BACKLOG_BYTES of
 * queue, so their number per VM is capped (`--max-console-viewers`).
 */
export const DEFAULT_MAX_CONSOLE_VIEWERS = 8;

/** One viewer as the hub sees it; the HTTP layer adapts a WebSocket to this. */
export interface ConsoleViewer {
  /** Bytes from the guest. */
  send(data: Buffer): void;
  /** The hub is done with this viewer. */
  end(code: number, reason: string): void;
  /** Bytes queued towards the viewer and not yet sent. */
  readonly backlog: number;
  /** Stop and restart taking input: the writer is held back while qemu is not reading. */
  pause(): void;
  resume(): void;
}

export interface ConsoleAttachment {
  readonly mode: ConsoleMode;
  /** Bytes typed by the viewer; only the writer's reach the guest. */
  input(data: Buffer): void;
  /** The viewer went away (its socket closed). */
  leave(): void;
}

/** What the hub needs of its VM (the Vm class fits). */
export interface ConsoleHubVm {
  readonly name: string;
  readonly session: QemuSession | undefined;
  readonly paths: { consoleSocket: string };
  readonly log: Logger;
  state(): string;
}

/**
 * A viewer that has this much output queued is dropped rather than slowing the
 * others down; the hub never stops reading from qemu, so the guest never waits.
 */
const MAX_BACKLOG_BYTES = 8 * 1024 * 1024;

/** How long a hang-up of the console socket may precede the daemon noticing that qemu exited. */
const EXIT_NOTICE_MS = 1_500;

interface Link {
  session: QemuSession;
  socket: net.Socket;
}

export class ConsoleHub {
  private readonly viewers = new Map<ConsoleViewer, ConsoleAttachment>();
  private writer: ConsoleViewer | undefined;
  private link: Link | undefined;
  private watched: QemuSession | undefined;
  private readonly log: Logger;

  constructor(
    private readonly vm: ConsoleHubVm,
    private readonly maxViewers = DEFAULT_MAX_CONSOLE_VIEWERS,
  ) {
    this.log = vm.log.child({ component: "console" });
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Throws what `join` would throw, so a refusal can be answered before a WebSocket upgrade. */
  check(mode: ConsoleMode): QemuSession {
    const session = this.vm.session;
    if (!session) throw new VmStateConflict(this.vm.name, this.vm.state(), "attach to the console of");
    if (mode === "rw" && this.writer) throw new ConsoleBusy(this.vm.name);
    if (this.viewers.size >= this.maxViewers) {
      throw new TooManyClients(`the console of VM "${this.vm.name}" has ${this.viewers.size} viewers, the most it takes; close one and try again`, {
        vm: this.vm.name,
        scope: "console-viewers",
        limit: this.maxViewers,
      });
    }
    return session;
  }

  join(viewer: ConsoleViewer, mode: ConsoleMode): ConsoleAttachment {
    const session = this.check(mode);
    this.watch(session);
    if (this.link && this.link.session !== session) this.endAll(ConsoleEnd.vmStopped);
    this.link ??= this.open(session);
    if (mode === "rw") this.writer = viewer;
    const attachment: ConsoleAttachment = {
      mode,
      input: (data) => this.input(viewer, data),
      leave: () => this.leave(viewer),
    };
    this.viewers.set(viewer, attachment);
    this.log.info({ mode, viewers: this.viewers.size }, "console viewer attached");
    return attachment;
  }

  private open(session: QemuSession): Link {
    const socket = net.createConnection(this.vm.paths.consoleSocket);
    const link: Link = { session, socket };
    socket.on("data", (data: Buffer) => this.broadcast(data));
    socket.on("error", (err) => this.log.warn({ err: err.message }, "console socket error"));
    socket.on("close", () => void this.onHangUp(link));
    return link;
  }

  /** Each qemu is watched once: when it exits, its viewers are told and let go. */
  private watch(session: QemuSession): void {
    if (this.watched === session) return;
    this.watched = session;
    void session.gone.then(() => {
      if (this.link?.session === session) this.endAll(ConsoleEnd.vmStopped);
    });
  }

  private async onHangUp(link: Link): Promise<void> {
    if (this.link !== link) return; // closed by the hub itself
    // qemu closes the socket as it exits, often before the daemon has seen the exit.
    const exited = await Promise.race([link.session.gone.then(() => true), sleep(EXIT_NOTICE_MS, false)]);
    if (this.link !== link) return;
    if (!exited) this.log.warn("qemu closed the console connection while it runs");
    this.endAll(exited ? ConsoleEnd.vmStopped : ConsoleEnd.consoleLost);
  }

  private broadcast(data: Buffer): void {
    for (const viewer of [...this.viewers.keys()]) {
      if (viewer.backlog > MAX_BACKLOG_BYTES) {
        this.log.warn("console viewer too slow; dropped");
        this.remove(viewer);
        viewer.end(ConsoleEnd.tooSlow.code, ConsoleEnd.tooSlow.reason);
        continue;
      }
      viewer.send(data);
    }
  }

  private input(viewer: ConsoleViewer, data: Buffer): void {
    const link = this.link;
    if (viewer !== this.writer || !link || link.socket.destroyed) return;
    // The guest reads its UART at its own pace: hold the writer back rather than buffer without end.
    if (!link.socket.write(data)) {
      viewer.pause();
      link.socket.once("drain", () => viewer.resume());
    }
  }

  private leave(viewer: ConsoleViewer): void {
    if (!this.viewers.has(viewer)) return;
    this.remove(viewer);
    this.log.info({ viewers: this.viewers.size }, "console viewer left");
  }

  private remove(viewer: ConsoleViewer): void {
    this.viewers.delete(viewer);
    if (this.writer === viewer) this.writer = undefined;
    if (this.viewers.size === 0) this.closeLink();
  }

  private endAll(why: { code: number; reason: string }): void {
    const viewers = [...this.viewers.keys()];
    this.viewers.clear();
    this.writer = undefined;
    this.closeLink();
    for (const v of viewers) v.end(why.code, why.reason);
  }

  private closeLink(): void {
    const link = this.link;
    this.link = undefined;
    link?.socket.destroy();
  }
}
