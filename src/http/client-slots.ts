// Counting what clients hold open (event streams, consoles, connections that
// have not yet shown a token) against a cap for the whole listener and one per
// peer address, so that one noisy client cannot take every place.
import net from "node:net";
import { TooManyClients } from "../errors.js";

export interface SlotLimits {
  /** For the whole listener. */
  total: number;
  /** Per peer address; absent: not counted by peer (the Unix socket has no peer address). */
  perPeer?: number;
}

export type SlotScope = "listener" | "peer";

export class ClientSlots {
  private open = 0;
  private readonly byPeer = new Map<string, number>();

  constructor(readonly limits: SlotLimits) {}

  get size(): number {
    return this.open;
  }

  heldBy(peer: string): number {
    return this.byPeer.get(peer) ?? 0;
  }

  /** Which cap one more slot for this peer would pass, if any. */
  refusal(peer: string | undefined): SlotScope | undefined {
    if (this.open >= this.limits.total) return "listener";
    if (peer !== undefined && this.limits.perPeer !== undefined && this.heldBy(peer) >= this.limits.perPeer) return "peer";
    return undefined;
  }

  /** Takes a slot, or returns undefined if a cap is reached. The release gives it back once, however often it is called. */
  take(peer: string | undefined): (() => void) | undefined {
    if (this.refusal(peer) !== undefined) return undefined;
    this.open++;
    if (peer !== undefined) this.byPeer.set(peer, this.heldBy(peer) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
      if (peer === undefined) return;
      const left = this.heldBy(peer) - 1;
      if (left > 0) this.byPeer.set(peer, left);
      else this.byPeer.delete(peer);
    };
  }

  /** Takes a slot or throws the 429 that says which cap is reached. */
  takeOrRefuse(peer: string | undefined, what: string): () => void {
    const release = this.take(peer);
    if (release) return release;
    throw this.refusalError(peer, what);
  }

  refusalError(peer: string | undefined, what: string): TooManyClients {
    const scope = this.refusal(peer) ?? "listener";
    const limit = scope === "peer" ? this.limits.perPeer! : this.limits.total;
    const whose = scope === "peer" ? `from ${peer}` : "on this listener";
    return new TooManyClients(`too many ${what} ${whose} (limit ${limit}); close one and try again`, { scope, limit });
  }
}

/**
 * The address a per-peer cap counts by: an IPv4 client seen on a dual-stack
 * socket (`::ffff:192.0.2.1`) is the same peer as on an IPv4 one. Undefined for
 * the Unix socket.
 */
export function peerAddress(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1];
  return net.isIP(address) ? address.toLowerCase() : undefined;
}
