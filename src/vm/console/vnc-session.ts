// One browser's VNC session: the RFB byte stream between a WebSocket (noVNC speaks
// RFB over it) and the VM's VNC Unix socket, passed through unchanged, except that
// a read-only session keeps only the client messages that ask for pictures
// (rfb-input-filter.ts). qemu's VNC server takes several clients at once, so each
// session has a connection of its own. Like the serial hub it takes no lock.
import net from "node:net";
import { VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";
import { ConsoleEnd } from "./console-hub.js";
import { RfbReadOnlyFilter } from "./rfb-input-filter.js";

export type VncMode = "ro" | "rw";

/** The browser's side as the session sees it; the HTTP layer adapts a WebSocket to this. */
export interface VncPeer {
  send(data: Buffer): void;
  end(code: number, reason: string): void;
  readonly backlog: number;
  pause(): void;
  resume(): void;
}

export interface VncSession {
  /** Bytes from the browser. */
  input(data: Buffer): void;
  /** The browser went away. */
  leave(): void;
}

/** Updates are pulled by the client, so a backlog this large is a client that stopped reading. */
const MAX_BACKLOG_BYTES = 16 * 1024 * 1024;

export const VncEnd = {
  ...ConsoleEnd,
  readOnlyViolation: { code: 4003, reason: "the read-only session sent a message that cannot be passed on safely" },
} as const;

/** Throws if the VM has no display to connect to now, so a refusal comes before a WebSocket upgrade. */
export function checkVnc(vm: Vm): void {
  const session = vm.session;
  if (!session) throw new VmStateConflict(vm.name, vm.state(), "open the screen of");
  if (!session.record.argv.includes("-vnc")) {
    throw new VmStateConflict(vm.name, "running without a display device (started by an older vmhostd)", "open the screen of");
  }
}

export function openVncSession(vm: Vm, mode: VncMode, peer: VncPeer): VncSession {
  checkVnc(vm);
  const qemu = vm.session!;
  const log = vm.log.child({ component: "vnc" });
  const filter = mode === "ro" ? new RfbReadOnlyFilter() : undefined;
  const socket = net.createConnection(vm.paths.vncSocket);
  let ended = false;
  const end = (why: { code: number; reason: string }): void => {
    if (ended) return;
    ended = true;
    socket.destroy();
    peer.end(why.code, why.reason);
  };
  socket.on("data", (data: Buffer) => {
    if (peer.backlog > MAX_BACKLOG_BYTES) return end(ConsoleEnd.tooSlow);
    peer.send(data);
  });
  socket.on("error", (err) => log.warn({ err: err.message }, "VNC socket error"));
  socket.on("close", () => {
    // qemu closes its sockets as it exits; the exit itself ends the session with the clearer reason.
    void Promise.race([qemu.gone, new Promise((r) => setTimeout(r, 1_500))]).then(() => end(vm.session === qemu ? ConsoleEnd.consoleLost : ConsoleEnd.vmStopped));
  });
  void qemu.gone.then(() => end(ConsoleEnd.vmStopped));
  log.info({ mode }, "VNC session opened");
  return {
    input(data) {
      if (ended) return;
      let bytes = data;
      if (filter) {
        const kept = filter.push(data);
        if ("error" in kept) {
          log.warn({ why: kept.error }, "read-only VNC session ended");
          return end(VncEnd.readOnlyViolation);
        }
        bytes = kept.pass;
        if (bytes.length === 0) return;
      }
      if (!socket.write(bytes)) {
        peer.pause();
        socket.once("drain", () => peer.resume());
      }
    },
    leave() {
      ended = true;
      socket.destroy();
      log.info("VNC session closed");
    },
  };
}
