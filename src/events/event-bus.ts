// The daemon's event bus: VM state changes, operation progress and the guest
// events qemu reports, each with a monotonically increasing id. A bounded ring
// keeps the most recent ones for readers that join late or reconnect.
import { EventEmitter } from "node:events";

export interface DaemonEvent {
  id: number;
  time: string;
  type: string;
  vm?: string;
  data: Record<string, unknown>;
}

export class EventBus {
  private nextId = 1;
  private readonly ring: DaemonEvent[] = [];
  private readonly emitter = new EventEmitter();

  constructor(private readonly capacity = 4096) {
    this.emitter.setMaxListeners(0);
  }

  publish(type: string, vm: string | undefined, data: Record<string, unknown> = {}): DaemonEvent {
    const event: DaemonEvent = { id: this.nextId++, time: new Date().toISOString(), type, ...(vm ? { vm } : {}), data };
    this.ring.push(event);
    if (this.ring.length > this.capacity) this.ring.shift();
    this.emitter.emit("event", event);
    return event;
  }

  /** The id of the newest event published so far (0 before the first). */
  get lastId(): number {
    return this.nextId - 1;
  }

  /** The id of the oldest event the ring still holds (lastId + 1 when it is empty). */
  get oldestId(): number {
    return this.ring[0]?.id ?? this.nextId;
  }

  /** Events after `afterId` still held in the ring. */
  since(afterId: number): DaemonEvent[] {
    return this.ring.filter((e) => e.id > afterId);
  }

  subscribe(listener: (e: DaemonEvent) => void, signal?: AbortSignal): void {
    this.emitter.on("event", listener);
    signal?.addEventListener("abort", () => this.emitter.off("event", listener), { once: true });
  }
}
