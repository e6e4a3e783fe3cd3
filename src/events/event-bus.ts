// The daemon's event bus: VM state changes, operation progress and the guest
// events qemu reports, each with a monotonically increasing id. A bounded ring
// keeps the most recent ones for readers that join late or reconnect. Every type
// and its payload are declared in the event catalogue; publishing anything else
// does not compile.
import { EventEmitter } from "node:events";
import type { BusEventType, EventPayload } from "./event-catalogue.js";

export interface DaemonEvent<K extends BusEventType = BusEventType> {
  id: number;
  time: string;
  type: K;
  vm?: string;
  data: EventPayload<K>;
}

/** The payload argument: optional only for a type whose payload has no required field. */
export type PayloadArg<K extends BusEventType> = Record<string, never> extends EventPayload<K> ? [data?: EventPayload<K>] : [data: EventPayload<K>];

export class EventBus {
  private nextId = 1;
  private readonly ring: DaemonEvent[] = [];
  private readonly emitter = new EventEmitter();

  constructor(private readonly capacity = 4096) {
    this.emitter.setMaxListeners(0);
  }

  publish<K extends BusEventType>(type: K, vm: string | undefined, ...[data]: PayloadArg<K>): DaemonEvent<K> {
    const payload = (data ?? {}) as EventPayload<K>;
    const event: DaemonEvent<K> = { id: this.nextId++, time: new Date().toISOString(), type, ...(vm ? { vm } : {}), data: payload };
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
