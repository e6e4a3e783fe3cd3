#!/usr/bin/env node
// vmctl: the operator's command line for vmhostd. Human tables by default,
// --json for scripts; a non-zero exit status with the daemon's message on failure.
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { Command, Option } from "commander";
import { ApiClient, ApiError, type ApiTarget } from "./api-client.js";
import { migrateCommand, type MigrateFlags } from "./migrate-command.js";
import { autostartAll, formatOutcome, shutdownAll, type VmOutcome } from "./host-power.js";
import { registerStorageCommands } from "./storage-commands.js";
import { registerExportCommands } from "./export-commands.js";
import { registerDeviceCommands } from "./device-commands.js";
import { registerEventsCommand } from "./events-command.js";
import { registerFleetCommands } from "./fleet-commands.js";
import { registerHostCommand } from "./host-command.js";
import { registerMaintenanceCommands } from "./maintenance-commands.js";
import { registerLimitsCommand } from "./limits-command.js";
import { formatCdrom, formatTable, formatVm, type CdromJson, type VmJson } from "./vm-format.js";

const DEFAULT_SOCKET = process.env.VMHOSTD_SOCKET ?? "/run/vmhostd/vmhostd.sock";

const program = new Command("vmctl")
  .description("control the VMs of a vmhostd host")
  .addOption(new Option("--socket <path>", "daemon's Unix socket").default(DEFAULT_SOCKET))
  .option("--url <url>", "daemon's base URL, instead of the socket (e.g. https://10.0.0.5:8600)")
  .option("--token <token>", "peer token for --url (default $VMHOSTD_PEER_TOKEN)")
  .option("--ca <file>", "CA bundle (PEM) to verify an https:// daemon against (default $VMHOSTD_TLS_CA, else the system's CAs)")
  .option("--cert <file>", "client certificate (PEM) for a daemon that requires one (default $VMHOSTD_TLS_CERT)")
  .option("--key <file>", "the client certificate's key (PEM) (default $VMHOSTD_TLS_KEY)")
  .option("--json", "print JSON for scripts")
  .showHelpAfterError();

function target(): ApiTarget {
  const o = program.opts<{ socket: string; url?: string; token?: string; ca?: string; cert?: string; key?: string }>();
  const token = o.token ?? process.env.VMHOSTD_PEER_TOKEN;
  if (!o.url) return { socketPath: o.socket };
  const pem = (file: string | undefined, flag: string): string | undefined => {
    if (!file) return undefined;
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = pem(o.ca ?? process.env.VMHOSTD_TLS_CA, "--ca");
  const cert = pem(o.cert ?? process.env.VMHOSTD_TLS_CERT, "--cert");
  const key = pem(o.key ?? process.env.VMHOSTD_TLS_KEY, "--key");
  if (!cert !== !key) throw new Error("--cert and --key go together");
  return { url: o.url, ...(token ? { token } : {}), tls: { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) } };
}
function client(): ApiClient {
  return new ApiClient(target());
}
const asJson = (): boolean => Boolean(program.opts<{ json?: boolean }>().json);
const out = (s: string): void => void process.stdout.write(s.endsWith("\n") ? s : s + "\n");

program
  .command("list")
  .description("list VMs")
  .action(async () => {
    const { vms } = await client().json<{ vms: VmJson[] }>("GET", "/v1/vms");
    if (asJson()) return out(JSON.stringify(vms, null, 2));
    out(
      formatTable(
        ["NAME", "STATE", "VCPUS", "MEMORY", "PID", "LAST EXIT"],
        vms.map((v) => [v.name, v.state, String(v.definition.vcpus), `${v.definition.memoryMiB} MiB`, v.pid ? String(v.pid) : "-", v.lastExit?.reason ?? "-"]),
      ),
    );
  });

program
  .command("show <name>")
  .description("show one VM")
  .action(async (name: string) => {
    const vm = await client().json<VmJson>("GET", `/v1/vms/${encodeURIComponent(name)}`);
    out(asJson() ? JSON.stringify(vm, null, 2) : formatVm(vm));
  });

program
  .command("create [name]")
  .description("define a VM from a JSON file (-f) and/or flags")
  .option("-f, --file <path>", "VM definition as JSON ('-' for stdin)")
  .option("--vcpus <n>", "virtual CPUs", toInt)
  .option("--memory <MiB>", "memory in MiB", toInt)
  .option("--disk <name:sizeGiB>", "blank disk, repeatable", collect, [])
  .option("--image <name:path>", "existing image in a pool as a disk, repeatable", collect, [])
  .option("--kernel <path>", "direct kernel boot (path in a pool)")
  .option("--initrd <path>", "initrd for direct kernel boot")
  .option("--cmdline <text>", "kernel command line")
  .option("--nic <network>", "add a virtio NIC: user, or bridge:BRIDGE (repeatable)", collect, [])
  .option("--autostart", "start with the host")
  .option("--firmware <bios|uefi>", "firmware: bios (SeaBIOS, default) or uefi (OVMF)")
  .option("--cdrom <iso>", "a CD-ROM drive with this ISO (path in a pool); '' for an empty drive")
  .option("--boot-order <list>", "comma-separated, e.g. cdrom,disk")
  .action(async (name: string | undefined, o: CreateFlags) => {
    const def = await definitionFrom(name, o);
    const vm = await client().json<VmJson>("POST", "/v1/vms", def);
    out(asJson() ? JSON.stringify(vm, null, 2) : `created ${vm.name} (${vm.uuid})`);
  });

for (const action of ["start", "stop", "reset", "pause", "resume"] as const) {
  program
    .command(`${action} <name>`)
    .description(`${action} a VM`)
    .option("--no-wait", "return once the daemon accepted the request")
    .action(async (name: string, o: { wait: boolean }) => {
      const q = o.wait ? "" : "?wait=false";
      const res = await client().json<VmJson>("POST", `/v1/vms/${encodeURIComponent(name)}/${action}${q}`);
      out(asJson() ? JSON.stringify(res, null, 2) : `${name}: ${res.state ?? "accepted"}`);
    });
}

program
  .command("shutdown <name>")
  .description("ACPI shutdown; a hard stop after --timeout seconds")
  .option("--timeout <sec>", "seconds to wait for the guest (default 60)", toInt)
  .option("--no-wait", "return once the daemon accepted the request")
  .action(async (name: string, o: { timeout?: number; wait: boolean }) => {
    const q = o.wait ? "" : "?wait=false";
    const body = o.timeout ? { timeoutSec: o.timeout } : {};
    const res = await client().json<VmJson>("POST", `/v1/vms/${encodeURIComponent(name)}/shutdown${q}`, body);
    out(asJson() ? JSON.stringify(res, null, 2) : `${name}: ${res.state ?? "accepted"}`);
  });

program
  .command("autostart")
  .description("start every VM marked autostart that is stopped or crashed, in parallel (at host boot)")
  .action(async () => report(await autostartAll(client()), "no VM to start: none is marked autostart"));

program
  .command("shutdown-all")
  .description("ACPI shutdown of every running VM in parallel, each stopped hard after --timeout (at host shutdown)")
  .option("--timeout <sec>", "seconds each guest gets to power off (default 60)", toInt, 60)
  .action(async (o: { timeout: number }) => report(await shutdownAll(client(), o.timeout), "no VM is running"));

/** One line per VM (or JSON); exit status 1 if any VM failed. */
function report(outcomes: VmOutcome[], none: string): void {
  if (asJson()) out(JSON.stringify(outcomes, null, 2));
  else out(outcomes.length ? outcomes.map(formatOutcome).join("\n") : none);
  if (outcomes.some((o) => o.result === "failed")) process.exitCode = 1;
}

program
  .command("migrate <name> <destination>")
  .description("live-migrate a VM to another host's vmhostd (its base URL); shows progress")
  .option("--storage <mode>", "shared (both hosts see the images) or copy (disks are copied)", "copy")
  .option("--max-downtime <ms>", "longest pause of the guest allowed at switch-over", toInt)
  .option("--bandwidth <MiBps>", "bandwidth limit in MiB/s", toInt)
  .option("--auto-converge", "throttle the guest's vCPUs if it dirties memory faster than it can be sent")
  .option("--postcopy", "switch to post-copy if pre-copy does not converge")
  .option("--no-wait", "return once the job has started")
  .action(async (name: string, destination: string, o: MigrateFlags) => {
    process.exitCode = await migrateCommand(client(), name, destination, o, asJson());
  });

program
  .command("migrate-resolve <name> <outcome>")
  .description("decide a migration out whose outcome is unknown: committed (the copy here goes) or aborted (it resumes here)")
  .action(async (name: string, outcome: string) => {
    const vm = await client().json<VmJson>("POST", `/v1/vms/${encodeURIComponent(name)}/migration/resolve`, { outcome });
    out(asJson() ? JSON.stringify(vm, null, 2) : `${name}: ${outcome === "committed" ? "removed here" : vm.state}`);
  });

program
  .command("cdrom <name> [iso]")
  .description("show the CD-ROM drive, or put ISO (a path in a pool) into it; at once if the VM runs")
  .action(async (name: string, iso: string | undefined) => {
    const url = `/v1/vms/${encodeURIComponent(name)}/cdrom`;
    const cd = await client().json<CdromJson>(iso ? "POST" : "GET", url, iso ? { image: iso } : undefined);
    out(asJson() ? JSON.stringify(cd, null, 2) : formatCdrom(name, cd));
  });

program
  .command("eject <name>")
  .description("eject the CD-ROM's disc (forced); the drive stays, empty")
  .action(async (name: string) => {
    const cd = await client().json<CdromJson>("DELETE", `/v1/vms/${encodeURIComponent(name)}/cdrom`);
    out(asJson() ? JSON.stringify(cd, null, 2) : formatCdrom(name, cd));
  });

program
  .command("delete <name>")
  .description("delete a stopped VM and its own disks")
  .action(async (name: string) => {
    await client().json("DELETE", `/v1/vms/${encodeURIComponent(name)}`);
    out(asJson() ? JSON.stringify({ deleted: name }) : `deleted ${name}`);
  });

program
  .command("console-log <name>")
  .description("print the serial console log")
  .option("-f, --follow", "keep printing new output")
  .option("--offset <bytes>", "start at this byte", toInt, 0)
  .action(async (name: string, o: { follow?: boolean; offset: number }) => {
    const api = client();
    let offset = o.offset;
    for (;;) {
      const res = await api.request("GET", `/v1/vms/${encodeURIComponent(name)}/console/log?offset=${offset}`);
      if (res.status >= 400) {
        const p = JSON.parse(res.body.toString()) as { code: string; detail: string };
        throw new ApiError(res.status, p.code, p.detail);
      }
      const skipped = Number(res.headers["x-console-skipped"] ?? 0);
      if (skipped > 0) process.stderr.write(`vmctl: ${skipped} bytes before offset ${offset + skipped} were rotated away\n`);
      process.stdout.write(res.body);
      offset = Number(res.headers["x-console-next-offset"] ?? offset + res.body.length);
      // Each answer is one page: keep asking while the log has more, then stop or wait for new output.
      if (offset < Number(res.headers["x-console-size"] ?? 0) && res.body.length > 0) continue;
      if (!o.follow) return;
      if (res.body.length === 0) await sleep(250);
    }
  });

program
  .command("console <name>")
  .description("attach the terminal to the VM's serial console; Ctrl-] detaches")
  .option("--read-only", "watch only: keys are not sent (several viewers may watch; one may write)")
  .action(async (name: string, o: { readOnly?: boolean }) => {
    const g = program.opts<{ socket: string; url?: string }>();
    const target = g.url ? { url: g.url } : { socketPath: g.socket };
    const { stdin, stdout, stderr } = process;
    // Loaded here: the WebSocket client is needed by this command only, and every other one starts faster without it.
    const { runConsole } = await import("./console-client.js");
    process.exitCode = await runConsole({ target, vm: name, readOnly: o.readOnly === true, stdin, stdout, stderr });
  });

program
  .command("console-ticket <name>")
  .description("mint a one-time console ticket and print the URL of its page, to hand to a browser")
  .addOption(new Option("--kind <kind>", "vnc (the screen) or serial").choices(["vnc", "serial"]).makeOptionMandatory())
  .addOption(new Option("--mode <mode>", "rw: keys and mouse reach the VM; ro: watch only").choices(["ro", "rw"]).default("rw"))
  .option("--ttl <seconds>", "seconds the ticket may be used to open its session (default 30, at most 300)")
  .action(async (name: string, o: { kind: string; mode: string; ttl?: string }) => {
    const body = { kind: o.kind, mode: o.mode, ...(o.ttl !== undefined ? { ttlSec: Number(o.ttl) } : {}) };
    const minted = await client().json<{ url: string; expiresAt: string }>("POST", `/v1/vms/${encodeURIComponent(name)}/console-tickets`, body);
    out(asJson() ? JSON.stringify(minted) : minted.url);
  });

program
  .command("screenshot <name> <file>")
  .description("save a PNG of the VM's display ('-' for stdout)")
  .option("--width <px>", "a thumbnail at most this wide, the aspect kept")
  .action(async (name: string, file: string, o: { width?: string }) => {
    const query = o.width !== undefined ? `?width=${encodeURIComponent(o.width)}` : "";
    const res = await client().request("GET", `/v1/vms/${encodeURIComponent(name)}/screenshot${query}`);
    if (res.status >= 400) {
      const p = JSON.parse(res.body.toString()) as { code: string; detail: string };
      throw new ApiError(res.status, p.code, p.detail);
    }
    if (file === "-") return void process.stdout.write(res.body);
    await writeFile(file, res.body);
    // The PNG header (IHDR) starts at byte 16: width, then height.
    const [width, height] = [res.body.readUInt32BE(16), res.body.readUInt32BE(20)];
    out(asJson() ? JSON.stringify({ file, bytes: res.body.length, width, height }) : `${name}: ${width}x${height} PNG written to ${file}`);
  });

interface CreateFlags {
  file?: string;
  vcpus?: number;
  memory?: number;
  disk: string[];
  image: string[];
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  nic: string[];
  autostart?: boolean;
  firmware?: string;
  cdrom?: string;
  bootOrder?: string;
}

async function definitionFrom(name: string | undefined, o: CreateFlags): Promise<Record<string, unknown>> {
  const def: Record<string, unknown> = o.file
    ? (JSON.parse(await readFile(o.file === "-" ? "/dev/stdin" : o.file, "utf8")) as Record<string, unknown>)
    : {};
  if (name) def.name = name;
  if (o.vcpus !== undefined) def.vcpus = o.vcpus;
  if (o.memory !== undefined) def.memoryMiB = o.memory;
  const disks = (def.disks as unknown[] | undefined) ?? [];
  for (const d of o.disk) {
    const [dname, size] = splitPair(d, "--disk");
    disks.push({ name: dname, sizeGiB: Number(size) });
  }
  for (const d of o.image) {
    const [dname, image] = splitPair(d, "--image");
    disks.push({ name: dname, image });
  }
  if (disks.length) def.disks = disks;
  if (o.kernel || o.initrd || o.cmdline) {
    def.boot = { ...(def.boot as object), ...(o.kernel && { kernel: o.kernel }), ...(o.initrd && { initrd: o.initrd }), ...(o.cmdline && { cmdline: o.cmdline }) };
  }
  if (o.nic.length) def.nics = [...((def.nics as unknown[]) ?? []), ...o.nic.map(nicNetwork)];
  if (o.autostart) def.autostart = true;
  if (o.firmware) def.firmware = o.firmware;
  if (o.cdrom !== undefined) def.cdrom = o.cdrom ? { image: o.cdrom } : {};
  if (o.bootOrder) def.boot = { ...(def.boot as object), order: o.bootOrder.split(",") };
  return def;
}

/** `--nic user` or `--nic bridge:br0`; anything else goes to the daemon as a type, which names what it accepts. */
function nicNetwork(spec: string): { network: Record<string, string> } {
  return { network: spec.startsWith("bridge:") ? { type: "bridge", bridge: spec.slice("bridge:".length) } : { type: spec } };
}

function splitPair(v: string, flag: string): [string, string] {
  const i = v.indexOf(":");
  if (i <= 0) throw new Error(`${flag} expects NAME:VALUE, got "${v}"`);
  return [v.slice(0, i), v.slice(i + 1)];
}

function toInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`not a whole number: ${v}`);
  return n;
}

function collect(v: string, all: string[]): string[] {
  return [...all, v];
}

registerStorageCommands(program, { client, json: asJson, out, table: formatTable });
registerExportCommands(program, { client, json: asJson, out, table: formatTable });
registerDeviceCommands(program, { client, json: asJson, out, table: formatTable });
registerEventsCommand(program, { target, json: asJson, out });
registerFleetCommands(program, { client, json: asJson, out, table: formatTable });
registerHostCommand(program, { client, json: asJson, out, table: formatTable });
registerMaintenanceCommands(program, { client, json: asJson, out, table: formatTable }, toInt);
registerLimitsCommand(program, { client, json: asJson, out, table: formatTable });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ApiError) process.stderr.write(`vmctl: ${err.message} (${err.code}, HTTP ${err.status})\n`);
  else process.stderr.write(`vmctl: ${(err as Error).message}\n`);
  process.exit(1);
});
