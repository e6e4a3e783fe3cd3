// A read-only VNC session: the browser's RFB stream towards qemu, cut into whole
// client messages so that input can be dropped without desynchronising the
// stream. noVNC's viewOnly is only the page's good manners; this is what holds
// when the browser is the attacker. Only messages that ask for pictures pass
// (pixel format, encodings, update requests, continuous updates, fences); keys,
// pointer, clipboard, desktop resizes and qemu's own key and audio messages are
// dropped; a message type not known here ends the session, since its length, and
// so where the next message begins, cannot be known (RFC 6143 §7.5 and the
// community extensions in rfbproto).

/** Client message types (RFC 6143 §7.5, rfbproto). */
const MSG = {
  setPixelFormat: 0,
  setEncodings: 2,
  framebufferUpdateRequest: 3,
  keyEvent: 4,
  pointerEvent: 5,
  clientCutText: 6,
  enableContinuousUpdates: 150,
  clientFence: 248,
  xvp: 250,
  setDesktopSize: 251,
  qemuClientMessage: 255,
} as const;

/** A cut-text payload above this is not a paste but an attempt to make the proxy buffer; qemu itself caps it lower. */
const MAX_CUT_TEXT_BYTES = 1024 * 1024;

export type RfbFilterResult = { pass: Buffer; dropped: number } | { error: string };

interface Sized {
  /** Bytes of the message if known from what is there, undefined if more are needed to tell. */
  length: number | undefined;
  forward: boolean;
}

/**
 * Cuts the client's half of an RFB stream into the handshake and whole messages and
 * keeps only those that do not act on the VM. The handshake accepted is the one
 * qemu's VNC server offers without a password: protocol 3.7 or 3.8 with security
 * type None; anything else ends the session.
 */
export class RfbReadOnlyFilter {
  private buffered: Buffer = Buffer.alloc(0);
  private phase: "version" | "security" | "clientInit" | "messages" = "version";

  push(chunk: Buffer): RfbFilterResult {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const out: Buffer[] = [];
    let dropped = 0;
    for (;;) {
      const step = this.next();
      if ("error" in step) return step;
      if (step.length === undefined || step.length > this.buffered.length) break;
      const message = this.buffered.subarray(0, step.length);
      this.buffered = this.buffered.subarray(step.length);
      if (step.forward) out.push(message);
      else dropped++;
    }
    return { pass: Buffer.concat(out), dropped };
  }

  private next(): Sized | { error: string } {
    const b = this.buffered;
    switch (this.phase) {
      case "version": {
        if (b.length < 12) return { length: undefined, forward: true };
        const version = b.toString("latin1", 0, 12);
        if (version !== "RFB 003.008\n" && version !== "RFB 003.007\n") return { error: `RFB version ${JSON.stringify(version)} is not taken read-only` };
        this.phase = "security";
        return { length: 12, forward: true };
      }
      case "security":
        if (b.length < 1) return { length: undefined, forward: true };
        if (b[0] !== 1) return { error: `security type ${b[0]} is not taken read-only (only None)` };
        this.phase = "clientInit";
        return { length: 1, forward: true };
      case "clientInit":
        if (b.length < 1) return { length: undefined, forward: true };
        this.phase = "messages";
        return { length: 1, forward: true };
      case "messages":
        return b.length < 1 ? { length: undefined, forward: true } : messageSize(b);
    }
  }
}

function messageSize(b: Buffer): Sized | { error: string } {
  const need = (n: number) => b.length >= n;
  switch (b[0]) {
    case MSG.setPixelFormat:
      return { length: 20, forward: true };
    case MSG.setEncodings:
      return { length: need(4) ? 4 + 4 * b.readUInt16BE(2) : undefined, forward: true };
    case MSG.framebufferUpdateRequest:
      return { length: 10, forward: true };
    case MSG.keyEvent:
      return { length: 8, forward: false };
    case MSG.pointerEvent:
      // The top bit of the button mask marks the 7-byte extended form (ExtendedMouseButtons).
      return { length: need(2) ? (b[1]! & 0x80 ? 7 : 6) : undefined, forward: false };
    case MSG.clientCutText: {
      if (!need(8)) return { length: undefined, forward: false };
      // A negative length is the extended clipboard's: its absolute value is the payload's size.
      const size = Math.abs(b.readInt32BE(4));
      if (size > MAX_CUT_TEXT_BYTES) return { error: `client cut text of ${size} bytes` };
      return { length: 8 + size, forward: false };
    }
    case MSG.enableContinuousUpdates:
      return { length: 10, forward: true };
    case MSG.clientFence:
      return { length: need(9) ? 9 + b[8]! : undefined, forward: true };
    case MSG.xvp:
      // Shutdown, reboot or reset of the VM.
      return { length: 4, forward: false };
    case MSG.setDesktopSize:
      // Changes the guest's display mode: an action on the VM.
      return { length: need(7) ? 8 + 16 * b[6]! : undefined, forward: false };
    case MSG.qemuClientMessage:
      return qemuMessageSize(b);
    default:
      return { error: `client message type ${b[0]} is not known to the read-only filter` };
  }
}

/** qemu's message 255: extended key events (subtype 0) and audio control (subtype 1); neither is for a viewer. */
function qemuMessageSize(b: Buffer): Sized | { error: string } {
  if (b.length < 2) return { length: undefined, forward: false };
  if (b[1] === 0) return { length: 12, forward: false };
  if (b[1] === 1) {
    if (b.length < 4) return { length: undefined, forward: false };
    const op = b.readUInt16BE(2);
    if (op === 0 || op === 1) return { length: 4, forward: false };
    if (op === 2) return { length: 10, forward: false };
    return { error: `qemu audio operation ${op}` };
  }
  return { error: `qemu client message subtype ${b[1]}` };
}
