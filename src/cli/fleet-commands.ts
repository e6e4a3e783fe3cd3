// vmctl's fleet commands: the hosts registered in etcd, and the operator's takeover
// of a VM whose owning host is known to be down.
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";

interface HostEntry {
  id: string;
  apiUrl?: string | null;
  qemu?: { version?: string; accel?: string };
  cpus?: number;
  memory?: { totalBytes?: number; availableBytes?: number };
  pools?: { name: string; freeBytes: number | null }[];
  vms?: string[];
  updatedAt?: string;
}

const gib = (b: number | null | undefined): string => (typeof b === "number" ? `${(b / 2 ** 30).toFixed(1)}G` : "-");

export function registerFleetCommands(program: Command, d: CliIo): void {
  program
    .command("hosts")
    .description("list the fleet's live hosts (fleet mode)")
    .action(async () => {
      const { hosts } = await d.client().json<{ hosts: HostEntry[] }>("GET", "/v1/fleet/hosts");
      if (d.json()) return d.out(JSON.stringify(hosts, null, 2));
      d.out(
        d.table(
          ["HOST", "API", "ACCEL", "CPUS", "MEM FREE/TOTAL", "POOLS FREE", "VMS"],
          hosts.map((h) => [
            h.id,
            h.apiUrl ?? "-",
            h.qemu?.accel ?? "-",
            String(h.cpus ?? "-"),
            `${gib(h.memory?.availableBytes)}/${gib(h.memory?.totalBytes)}`,
            (h.pools ?? []).map((p) => `${p.name}=${gib(p.freeBytes)}`).join(",") || "-",
            (h.vms ?? []).join(",") || "-",
          ]),
        ),
      );
    });

  program
    .command("takeover <name>")
    .description("take a VM's owner key for this host after making sure its owning host is down")
    .option("--force", "confirm that the owning host is down (required)")
    .action(async (name: string, o: { force?: boolean }) => {
      if (!o.force) throw new Error("takeover needs --force: first make sure the owning host is down");
      const vm = await d.client().json<{ owner?: { host: string; revision: string } }>(
        "POST",
        `/v1/vms/${encodeURIComponent(name)}/takeover`,
        { force: true },
      );
      d.out(d.json() ? JSON.stringify(vm, null, 2) : `${name} now owned by ${vm.owner?.host} (revision ${vm.owner?.revision})`);
    });
}
