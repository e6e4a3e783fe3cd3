// How a migration's guest RAM and disks may travel: over TLS when this host has
// mutual TLS configured, in clear only on loopback or when the operator said so
// (--insecure-migration); and only to the destination's own address, the host of
// the URL the source called, never to one the destination merely names.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { InsecureMigrationRefused, MigrationAddressRefused } from "../errors.js";
import type { IncomingReply } from "./migration-schema.js";

/** 127.0.0.0/8, ::1, localhost: traffic that never leaves the machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export interface ClearPolicy {
  /** This host migrates over TLS (--tls-cert, --tls-key and --tls-ca). */
  tls: boolean;
  insecureMigration: boolean;
}

/**
 * Throws InsecureMigrationRefused when a migration in clear would cross the
 * network at `address` (the destination's) without --insecure-migration.
 * Returns whether it goes in clear across the network (to be logged as a warning).
 */
export function checkClearMigration(policy: ClearPolicy, address: string, where: "source" | "destination"): boolean {
  if (policy.tls || isLoopbackHost(address)) return false;
  if (policy.insecureMigration) return true;
  const self = where === "source" ? "this source host" : "this destination host";
  throw new InsecureMigrationRefused(
    `the migration to ${address} would send guest RAM and disks in clear: ${self} has no TLS for migrations ` +
      `(give --tls-cert, --tls-key and --tls-ca on both hosts), or start both daemons with --insecure-migration to allow it`,
  );
}

/** `tcp:HOST:PORT` (HOST may be [v6]) → HOST, PORT; undefined for anything else. */
export function parseTcpUri(uri: string): { host: string; port: number } | undefined {
  const m = /^tcp:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(uri);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1]!.replace(/^\[|\]$/g, ""), port } : undefined;
}

export type Resolve = (name: string) => Promise<string[]>;

const resolveAll: Resolve = async (name) => (await lookup(name, { all: true })).map((a) => a.address);

/**
 * Every address the destination answered with (the RAM `uri`, the NBD server)
 * must be the host the source called: the URL's address itself, or, for a
 * name, one of the addresses it resolves to. A destination that names another
 * host would have the source send the guest there.
 */
export async function checkAnsweredAddresses(destination: string, reply: IncomingReply, resolve: Resolve = resolveAll): Promise<void> {
  const called = new URL(destination).hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const own = new Set([called]);
  if (!isIP(called)) for (const a of await resolve(called).catch(() => [])) own.add(a.toLowerCase());
  const ram = parseTcpUri(reply.uri);
  if (!ram) throw new MigrationAddressRefused(`the destination answered with a migration uri this host does not send to: ${JSON.stringify(reply.uri)} (only tcp:HOST:PORT)`);
  const named: [string, string][] = [["uri", ram.host]];
  if (reply.nbd) named.push(["nbd.host", reply.nbd.host]);
  for (const [field, host] of named) {
    if (!own.has(host.replace(/^\[|\]$/g, "").toLowerCase())) {
      throw new MigrationAddressRefused(
        `the destination ${destination} answered with ${field} ${host}, which is not its own address (${[...own].join(", ")}): ` +
          `nothing was sent there, the guest runs on here. Its --migration-host must be the address this host calls it at`,
        { field, answered: host },
      );
    }
  }
}
