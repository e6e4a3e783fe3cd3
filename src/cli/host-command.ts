// `vmctl host`: the host's inventory from GET /v1/host, one "Field: value" line
// each, as `virsh nodeinfo` prints it: what an operator checks before placing a VM.
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";

/** The fields of GET /v1/host that `vmctl host` prints; the daemon sends more (--json shows all). */
export interface HostJson {
  hostname?: string;
  daemonVersion?: string;
  qemu?: { binary?: string; version?: string };
  accel?: string;
  cpu?: { model?: string; cores?: number; logical?: number };
  memory?: { totalBytes?: number; availableBytes?: number; reservedBytes?: number };
  pools?: { name: string; dir?: string; freeBytes: number | null; totalBytes: number | null }[];
  maintenance?: boolean;
  vms?: { defined?: number; running?: number };
  state?: { dir?: string; writable?: boolean; error?: string };
}

const gib = (b: number | null | undefined): string => (typeof b === "number" ? `${(b / 2 ** 30).toFixed(1)} GiB` : "-");
const text = (v: string | number | undefined): string => (v === undefined || v === "" ? "-" : String(v));

export function formatHost(h: HostJson): string {
  const pools = (h.pools ?? []).map((p) => `${p.name} ${gib(p.freeBytes)} free of ${gib(p.totalBytes)}${p.dir ? ` (${p.dir})` : ""}`);
  const rows: [string, string][] = [
    ["Hostname", text(h.hostname)],
    ["Daemon version", text(h.daemonVersion)],
    ["CPU model", text(h.cpu?.model)],
    ["CPUs", `${text(h.cpu?.logical)} logical, ${text(h.cpu?.cores)} cores`],
    ["Memory", `${gib(h.memory?.availableBytes)} available of ${gib(h.memory?.totalBytes)}, ${gib(h.memory?.reservedBytes)} reserved for the host`],
    ["qemu", `${text(h.qemu?.version)} (${text(h.qemu?.binary)})`],
    ["Accelerator", text(h.accel)],
    ["VMs", `${text(h.vms?.defined)} defined, ${text(h.vms?.running)} running`],
    ["Maintenance", h.maintenance ? "yes" : "no"],
    ["State directory", h.state ? `${text(h.state.dir)} (${h.state.writable ? "writable" : `NOT writable: ${text(h.state.error)}`})` : "-"],
    ...pools.map((p, i): [string, string] => [i === 0 ? "Pools" : "", p]),
  ];
  if (pools.length === 0) rows.push(["Pools", "-"]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${(k ? `${k}:` : "").padEnd(width)}${v}`).join("\n");
}

export function registerHostCommand(program: Command, io: CliIo): void {
  program
    .command("host")
    .description("show the host's inventory: CPUs, memory, pools, qemu, accelerator, VM counts")
    .action(async () => {
      const host = await io.client().json<HostJson>("GET", "/v1/host");
      io.out(io.json() ? JSON.stringify(host, null, 2) : formatHost(host));
    });
}
