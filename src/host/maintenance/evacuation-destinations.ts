// The hosts an evacuation may send VMs to, with the memory each has for them.
// Fleet mode: the live hosts of the registry (etcd), all but this one and those in
// maintenance themselves, or those of them named in `to` (by host id, as
// `vmctl hosts` lists them). Outside fleet mode `to` is required and names each
// destination by its API URL, as `vmctl migrate` does; each is asked for its
// memory (GET /v1/host).
import { ValidationFailed } from "../../errors.js";
import type { FleetMember } from "../../fleet/fleet-member.js";
import type { PeerClient } from "../../migration/peer-client.js";
import type { Destination } from "./evacuation-plan.js";

const MiB = 1024 * 1024;

/** The part of a registry entry or GET /v1/host answer the evacuation reads. */
interface HostFigures {
  id?: unknown;
  apiUrl?: unknown;
  maintenance?: unknown;
  memory?: { availableBytes?: unknown; reservedBytes?: unknown };
}

/** Memory a host can take: available less what it keeps for itself; nothing if it does not say. */
export function roomOf(h: HostFigures): number {
  const available = typeof h.memory?.availableBytes === "number" ? h.memory.availableBytes : 0;
  const reserved = typeof h.memory?.reservedBytes === "number" ? h.memory.reservedBytes : 0;
  return Math.max(0, Math.floor((available - reserved) / MiB));
}

export async function fleetDestinations(fleet: FleetMember, to: string[] | undefined): Promise<Destination[]> {
  const entries = (await fleet.hosts()) as HostFigures[];
  const usable = (h: HostFigures): h is HostFigures & { id: string; apiUrl: string } =>
    typeof h.id === "string" && h.id !== fleet.hostId && typeof h.apiUrl === "string" && h.maintenance !== true;
  if (!to) return entries.filter(usable).map((h) => ({ id: h.id, url: h.apiUrl, roomMiB: roomOf(h) }));
  return to.map((name, i) => {
    const field = `to.${i}`;
    if (name === fleet.hostId) throw refused(field, `${name} is this host`);
    const h = entries.find((e) => e.id === name);
    if (!h) throw refused(field, `no live host ${name} in the fleet registry (vmctl hosts lists them)`);
    if (!usable(h)) throw refused(field, `host ${name} ${h.maintenance === true ? "is in maintenance itself" : "has no API URL (--listen)"}`);
    return { id: h.id, url: h.apiUrl, roomMiB: roomOf(h) };
  });
}

/** `peerOf` makes a client of a URL with this host's credentials (PeerClient.of). */
export async function listedDestinations(to: string[], peerOf: (url: string) => PeerClient): Promise<Destination[]> {
  return await Promise.all(
    to.map(async (url, i) => {
      const field = `to.${i}`;
      if (!/^https?:\/\/[^/]+\/?$/.test(url)) throw refused(field, `expected a destination's base URL (http://HOST:PORT), got "${url}"`);
      const peer = peerOf(url);
      const reply = await peer.request<HostFigures>("GET", "/v1/host", undefined, 10_000).catch((err: Error) => ({ status: 0, body: err.message }));
      if (reply.status !== 200 || typeof reply.body !== "object") {
        throw refused(field, `cannot ask ${peer.url} for its memory: ${reply.status ? `HTTP ${reply.status}` : String(reply.body)}`);
      }
      if (reply.body.maintenance === true) throw refused(field, `${peer.url} is in maintenance itself`);
      return { id: peer.url, url: peer.url, roomMiB: roomOf(reply.body) };
    }),
  );
}

function refused(field: string, message: string): ValidationFailed {
  return new ValidationFailed(`${field}: ${message}`, [{ field, message }]);
}
