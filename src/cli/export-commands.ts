// vmctl's pull-mode backup commands: export a disk over NBD, list the VM's
// exports, end one.
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";

interface ExportJson {
  id: string;
  disk: string;
  createdAt: string;
  uri: string;
  bitmap?: string;
}

export function registerExportCommands(program: Command, io: CliIo): void {
  const disk = (name: string, d: string): string => `/v1/vms/${encodeURIComponent(name)}/disks/${encodeURIComponent(d)}/export`;
  program
    .command("export <name> <disk>")
    .description("a read-only NBD export of a running VM's disk as it is now, with its dirty bitmap (pull-mode backup)")
    .option("--tls", "on TCP with TLS instead of the Unix socket")
    .option("--speed <MiBps>", "bandwidth limit of the point-in-time copy", (v) => Number(v))
    .action(async (name: string, d: string, o: { tls?: boolean; speed?: number }) => {
      const body = { ...(o.tls ? { tls: true } : {}), ...(o.speed !== undefined ? { speedMiBps: o.speed } : {}) };
      const e = await io.client().json<ExportJson>("POST", disk(name, d), Object.keys(body).length ? body : undefined);
      io.out(io.json() ? JSON.stringify(e, null, 2) : `${e.uri}${e.bitmap ? `  bitmap qemu:dirty-bitmap:${e.bitmap}` : ""}`);
    });
  program
    .command("exports <name>")
    .description("list a VM's NBD exports")
    .action(async (name: string) => {
      const { exports } = await io.client().json<{ exports: ExportJson[] }>("GET", `/v1/vms/${encodeURIComponent(name)}/exports`);
      if (io.json()) return io.out(JSON.stringify(exports, null, 2));
      io.out(io.table(["DISK", "SINCE", "URI", "BITMAP"], exports.map((e) => [e.disk, e.createdAt, e.uri, e.bitmap ?? "-"])));
    });
  program
    .command("unexport <name> <disk>")
    .description("end a disk's NBD export: its clients are cut off, its image removed")
    .action(async (name: string, d: string) => {
      await io.client().json("DELETE", disk(name, d));
      if (!io.json()) io.out(`${name}: the export of ${d} ended`);
    });
}
