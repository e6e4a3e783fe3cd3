// One-time console tickets: a secret a control panel mints for a customer's
// browser, which opens one console session of one VM and nothing else. They live
// in this process's memory only, so a daemon restart invalidates every ticket
// (the safe side: a panel mints a new one in a second). The store is bounded: a
// panel that mints and drops tickets in a loop cannot grow the daemon's memory.
import { randomBytes } from "node:crypto";
import { ConsoleTicketRefused, ConsoleTicketSpent, TooManyClients } from "../../errors.js";

export const consoleKinds = ["vnc", "serial"] as const;
export type ConsoleKind = (typeof consoleKinds)[number];
export type ConsoleTicketMode = "ro" | "rw";

export const CONSOLE_TICKET_TTL = { defaultSec: 30, maxSec: 300 } as const;
/** Tickets minted and not yet expired (used ones count until they expire, so a reuse is told apart from a stranger). */
export const DEFAULT_MAX_CONSOLE_TICKETS = 1024;
/** 32 random bytes: 256 bits, URL-safe base64 (43 characters). */
const TICKET_BYTES = 32;
const TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface ConsoleTicketGrant {
  vm: string;
  kind: ConsoleKind;
  mode: ConsoleTicketMode;
}

export interface MintedTicket extends ConsoleTicketGrant {
  ticket: string;
  expiresAt: Date;
}

interface Entry extends ConsoleTicketGrant {
  expiresAtMs: number;
  used: boolean;
}

export class ConsoleTicketStore {
  private readonly tickets = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly maxLive = DEFAULT_MAX_CONSOLE_TICKETS,
    private readonly now: () => number = Date.now,
  ) {
    // Besides the sweep on each mint, so an idle daemon also lets expired ones go.
    this.sweeper = setInterval(() => this.sweep(), 10_000);
    this.sweeper.unref();
  }

  /** Tickets held: live ones and used ones not yet expired. */
  get size(): number {
    return this.tickets.size;
  }

  mint(grant: ConsoleTicketGrant, ttlSec: number = CONSOLE_TICKET_TTL.defaultSec): MintedTicket {
    this.sweep();
    if (this.tickets.size >= this.maxLive) {
      throw new TooManyClients(`${this.tickets.size} console tickets are live, the most the daemon holds; let some expire`, {
        scope: "console-tickets",
        limit: this.maxLive,
      });
    }
    const ticket = randomBytes(TICKET_BYTES).toString("base64url");
    const ttl = Math.min(Math.max(1, ttlSec), CONSOLE_TICKET_TTL.maxSec);
    const expiresAtMs = this.now() + ttl * 1000;
    this.tickets.set(ticket, { ...grant, expiresAtMs, used: false });
    return { ticket, ...grant, expiresAt: new Date(expiresAtMs) };
  }

  /** What the ticket grants, if it could still open a session; throws why not. Does not use it up. */
  peek(ticket: string): ConsoleTicketGrant {
    const entry = TICKET_PATTERN.test(ticket) ? this.tickets.get(ticket) : undefined;
    if (!entry) throw new ConsoleTicketRefused();
    if (entry.used) throw new ConsoleTicketSpent("used");
    // Kept until the next sweep, so that a late browser is told "expired" rather than "never issued".
    if (this.now() >= entry.expiresAtMs) throw new ConsoleTicketSpent("expired");
    return { vm: entry.vm, kind: entry.kind, mode: entry.mode };
  }

  /** Uses the ticket up: the session it opens is the only one it ever opens. */
  redeem(ticket: string): ConsoleTicketGrant {
    const grant = this.peek(ticket);
    this.tickets.get(ticket)!.used = true;
    return grant;
  }

  /** The daemon is stopping. */
  close(): void {
    clearInterval(this.sweeper);
    this.tickets.clear();
  }

  private sweep(): void {
    const now = this.now();
    for (const [ticket, entry] of this.tickets) if (now >= entry.expiresAtMs) this.tickets.delete(ticket);
  }
}
