// One Server-Sent Events client: frames are written at once while its socket
// keeps up, queued while it does not, and past a bound the client is dropped.
// Nothing here ever waits: the bus delivers to every client synchronously, so a
// slow reader costs the daemon at most its bounded queue, never time.
import type { ServerResponse } from "node:http";

export interface SseLimits {
  /** Frames queued behind a full socket before the client is dropped. */
  maxQueuedFrames: number;
  /** Bytes queued (ours plus the socket's own buffer) before the client is dropped. */
  maxQueuedBytes: number;
  /** How long a dropped client is given to read its last frames before the socket is destroyed. */
  dropGraceMs: number;
}

export const defaultSseLimits: SseLimits = { maxQueuedFrames: 1000, maxQueuedBytes: 1024 * 1024, dropGraceMs: 30_000 };

export class SseClient {
  private readonly queue: { frame: string; id: number | undefined }[] = [];
  /** The id of the last event handed to the socket: what a dropped client will have seen at most. */
  lastWrittenId: number | undefined;
  private queuedBytes = 0;
  private waitingForDrain = false;
  private ended = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly limits: SseLimits,
  ) {}

  get closed(): boolean {
    return this.ended || this.res.destroyed;
  }

  /** Queues or writes one frame; returns false if the client is (now) gone. */
  send(frame: string, id?: number): boolean {
    if (this.closed) return false;
    if (this.waitingForDrain) {
      const bytes = Buffer.byteLength(frame);
      if (
        this.queue.length >= this.limits.maxQueuedFrames ||
        this.queuedBytes + bytes + this.res.writableLength > this.limits.maxQueuedBytes
      ) {
        return false;
      }
      this.queue.push({ frame, id });
      this.queuedBytes += bytes;
      return true;
    }
    this.write(frame, id);
    return true;
  }

  /**
   * Ends the stream with a last frame: what is queued is discarded, the frame goes
   * after what the socket already holds, and a client that still does not read is
   * cut off after the grace period.
   */
  end(lastFrame?: string): void {
    if (this.closed) return;
    this.ended = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.res.end(lastFrame);
    const timer = setTimeout(() => this.res.destroy(), this.limits.dropGraceMs);
    timer.unref();
    this.res.once("close", () => clearTimeout(timer));
  }

  private write(frame: string, id: number | undefined): void {
    if (id !== undefined) this.lastWrittenId = id;
    if (this.res.write(frame)) return;
    // The socket's buffer is past its high-water mark: hold frames until it drains.
    this.waitingForDrain = true;
    this.res.once("drain", () => this.flush());
  }

  private flush(): void {
    this.waitingForDrain = false;
    while (this.queue.length > 0 && !this.waitingForDrain && !this.closed) {
      const { frame, id } = this.queue.shift()!;
      this.queuedBytes -= Buffer.byteLength(frame);
      this.write(frame, id);
    }
  }
}
