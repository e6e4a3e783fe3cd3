// Human-readable rendering of API answers for vmctl.
export interface VmJson {
  name: string;
  uuid: string;
  state: string;
  pid?: number;
  qemuStatus?: string;
  unresponsive?: boolean;
  startedAt?: string;
  argv?: string[];
  operation?: { name: string; startedAt: string };
  error?: string;
  lastExit?: { at: string; reason: string; exitCode: number | null; signal: string | null; detail?: string };
  /** Fleet mode: the host holding the owner key and its revision (the fencing token). */
  owner?: { host: string; revision: string; since: string; ha: boolean };
  definition: { vcpus: number; memoryMiB: number; machine: string; firmware?: string; cdrom?: { image?: string }; autostart?: boolean; disks: { name: string; sizeGiB?: number; image?: string; format: string }[]; nics: { mac: string; network: { type: string; bridge?: string }; addresses?: string[]; filtering?: "strict" | "mac" | "off"; vlan?: number; trunk?: number[] }[] };
}

/** GET/POST/DELETE /v1/vms/{name}/cdrom. */
export interface CdromJson {
  drive: boolean;
  image: string | null;
  live?: { medium: string | null; trayOpen: boolean; locked: boolean };
}

export function formatCdrom(name: string, cd: CdromJson): string {
  if (!cd.drive) return `${name}: no CD-ROM drive`;
  const next = `${name}: cdrom ${cd.image ?? "(empty)"}`;
  if (!cd.live) return next;
  const now = cd.live.medium ?? "(empty)";
  return `${next}; now ${now}${cd.live.trayOpen ? ", tray open" : ""}${cd.live.locked ? ", locked by the guest" : ""}`;
}

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function formatVm(vm: VmJson): string {
  const d = vm.definition;
  const lines: [string, string][] = [
    ["name", vm.name],
    ["uuid", vm.uuid],
    ["state", vm.state + (vm.unresponsive ? " (qemu not answering)" : "")],
    ["vcpus", String(d.vcpus)],
    ["memory", `${d.memoryMiB} MiB`],
    ["machine", d.machine],
  ];
  if (d.firmware) lines.push(["firmware", d.firmware]);
  if (d.cdrom) lines.push(["cdrom", d.cdrom.image ?? "(empty)"]);
  if (vm.pid) lines.push(["pid", String(vm.pid)]);
  if (vm.owner) lines.push(["owner", `${vm.owner.host} (revision ${vm.owner.revision}${vm.owner.ha ? ", ha" : ""}) since ${vm.owner.since}`]);
  if (vm.startedAt) lines.push(["started", vm.startedAt]);
  if (vm.operation) lines.push(["operation", `${vm.operation.name} since ${vm.operation.startedAt}`]);
  for (const disk of d.disks) lines.push([`disk ${disk.name}`, disk.image ?? `${disk.sizeGiB} GiB ${disk.format}`]);
  d.nics.forEach((n, i) => lines.push([`nic ${i}`, `${n.mac} ${n.network.type}${n.network.bridge ? ` ${n.network.bridge}` : ""}${nicFilterText(n)}`]));
  if (vm.lastExit) {
    const e = vm.lastExit;
    lines.push(["last exit", `${e.reason} at ${e.at}${e.signal ? ` (signal ${e.signal})` : e.exitCode !== null ? ` (code ${e.exitCode})` : ""}`]);
  }
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n");
}

/** A job as the API shows it (a migration, a backup). */
export interface JobJson {
  id: string;
  state: string;
  phase: string;
  progress: Record<string, number | string | null>;
  result?: Record<string, unknown>;
  error?: { code: string; detail: string };
}

/** A bridged NIC's filtering, addresses and VLANs, when it has any to show. */
function nicFilterText(n: VmJson["definition"]["nics"][number]): string {
  if (n.network.type !== "bridge") return "";
  const parts = [`filtering ${n.filtering ?? "strict"}`];
  if (n.addresses?.length) parts.push(n.addresses.join(" "));
  if (n.vlan !== undefined) parts.push(`vlan ${n.vlan}`);
  if (n.trunk?.length) parts.push(`trunk ${n.trunk.join(",")}`);
  return `  ${parts.join("  ")}`;
}
