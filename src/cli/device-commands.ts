// vmctl's device commands: disks and NICs added to and removed from a VM (hot-plug
// when it runs), the memory balloon's target, the cloud-init seed, the guest agent
// and one QMP command.
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";

interface VmDevicesJson {
  name: string;
  state: string;
  removalPending?: string[];
  balloon?: { actualMiB: number };
  definition: { disks: { name: string; sizeGiB?: number; image?: string }[]; nics: { mac: string; network: { type: string; bridge?: string } }[] };
}

function devices(vm: VmDevicesJson): string {
  const lines = [
    ...vm.definition.disks.map((d) => `disk ${d.name}  ${d.image ?? `${d.sizeGiB} GiB`}`),
    ...vm.definition.nics.map((n, i) => `nic ${i}  ${n.mac}  ${n.network.type}${n.network.bridge ? `:${n.network.bridge}` : ""}`),
  ];
  if (vm.removalPending?.length) lines.push(`removal pending: ${vm.removalPending.join(", ")}`);
  return lines.join("\n");
}

function collectFlag(v: string, all: string[]): string[] {
  return [...all, v];
}

function split(flag: string, v: string): [string, string] {
  const i = v.indexOf(":");
  if (i <= 0) throw new Error(`${flag} expects NAME:VALUE, got "${v}"`);
  return [v.slice(0, i), v.slice(i + 1)];
}

export function registerDeviceCommands(program: Command, io: CliIo): void {
  const vmUrl = (name: string): string => `/v1/vms/${encodeURIComponent(name)}`;
  const show = (vm: VmDevicesJson): void => io.out(io.json() ? JSON.stringify(vm, null, 2) : devices(vm));
  const timeout = (o: { timeout?: string }): string => (o.timeout ? `?timeoutSec=${encodeURIComponent(o.timeout)}` : "");

  program
    .command("add-disk <name>")
    .description("add a disk: hot-plugged at once if the VM runs, else from its next start")
    .option("--disk <name:GiB>", "a new blank disk of this size in the VM's directory")
    .option("--image <name:path>", "an existing image in a storage pool")
    .option("--format <fmt>", "qcow2 (default) or raw")
    .action(async (name: string, o: { disk?: string; image?: string; format?: string }) => {
      if ((o.disk === undefined) === (o.image === undefined)) throw new Error("give exactly one of --disk and --image");
      const [disk, value] = o.disk !== undefined ? split("--disk", o.disk) : split("--image", o.image!);
      const body = {
        name: disk,
        ...(o.disk !== undefined ? { sizeGiB: Number(value) } : { image: value }),
        ...(o.format ? { format: o.format } : {}),
      };
      show(await io.client().json<VmDevicesJson>("POST", `${vmUrl(name)}/disks`, body));
    });

  program
    .command("remove-disk <name> <disk>")
    .description("remove a disk (a running guest is asked to release it first); the VM's own disk file is deleted")
    .option("--timeout <sec>", "how long to wait for the guest (default 30)")
    .action(async (name: string, disk: string, o: { timeout?: string }) => {
      show(await io.client().json<VmDevicesJson>("DELETE", `${vmUrl(name)}/disks/${encodeURIComponent(disk)}${timeout(o)}`));
    });

  program
    .command("add-nic <name>")
    .description("add a NIC: hot-plugged at once if the VM runs")
    .requiredOption("--nic <net>", "user, or bridge:BRIDGE")
    .option("--mac <mac>", "default: generated")
    .option("--address <cidr>", "bridged NIC: an address the guest may use, e.g. 203.0.113.10/24 (repeatable)", collectFlag, [])
    .option("--filtering <mode>", "bridged NIC: strict (default), mac or off")
    .action(async (name: string, o: { nic: string; mac?: string; address: string[]; filtering?: string }) => {
      const network = o.nic === "user" ? { type: "user" } : { type: "bridge", bridge: split("--nic", o.nic)[1] };
      if (o.nic !== "user" && !o.nic.startsWith("bridge:")) throw new Error(`--nic expects user or bridge:BRIDGE, got "${o.nic}"`);
      const filter = { ...(o.address.length ? { addresses: o.address } : {}), ...(o.filtering ? { filtering: o.filtering } : {}) };
      show(await io.client().json<VmDevicesJson>("POST", `${vmUrl(name)}/nics`, { network, ...(o.mac ? { mac: o.mac } : {}), ...filter }));
    });

  program
    .command("nic-filter <name> <nic>")
    .description("change a bridged NIC's addresses (the list given replaces the old one) or filtering; at once if the VM runs")
    .option("--address <cidr>", "an address the guest may use (repeatable)", collectFlag, [])
    .option("--no-addresses", "declare no address at all (strict: DHCP/SLAAC discovery and link-local only)")
    .option("--filtering <mode>", "strict, mac or off")
    .action(async (name: string, nic: string, o: { address: string[]; addresses: boolean; filtering?: string }) => {
      const body = {
        ...(o.address.length || !o.addresses ? { addresses: o.addresses ? o.address : [] } : {}),
        ...(o.filtering ? { filtering: o.filtering } : {}),
      };
      if (Object.keys(body).length === 0) throw new Error("give --address, --no-addresses or --filtering");
      show(await io.client().json<VmDevicesJson>("PATCH", `${vmUrl(name)}/nics/${encodeURIComponent(nic)}`, body));
    });

  program
    .command("remove-nic <name> <nic>")
    .description("remove a NIC, named by its index or MAC (a running VM: only its last NIC)")
    .option("--timeout <sec>", "how long to wait for the guest (default 30)")
    .action(async (name: string, nic: string, o: { timeout?: string }) => {
      show(await io.client().json<VmDevicesJson>("DELETE", `${vmUrl(name)}/nics/${encodeURIComponent(nic)}${timeout(o)}`));
    });

  program
    .command("balloon <name> <MiB>")
    .description("set the memory balloon's target: the memory the running guest should be left with")
    .action(async (name: string, mib: string) => {
      const b = await io.client().json<{ targetMiB: number; actualMiB?: number }>("POST", `${vmUrl(name)}/balloon`, { targetMiB: Number(mib) });
      io.out(io.json() ? JSON.stringify(b) : `target ${b.targetMiB} MiB, now ${b.actualMiB ?? "?"} MiB`);
    });

  program
    .command("qmp <name> <command-json>")
    .description(`run one QMP command on the VM's qemu through the daemon (logged), e.g. '{"execute":"query-status"}'`)
    .action(async (name: string, commandJson: string) => {
      let command: unknown;
      try {
        command = JSON.parse(commandJson);
      } catch (err) {
        throw new Error(`<command-json> is not JSON: ${(err as Error).message}`);
      }
      const r = await io.client().json<{ return: unknown }>("POST", `${vmUrl(name)}/qmp`, command);
      io.out(JSON.stringify(r.return, null, 2));
    });

  program
    .command("cloud-init <name>")
    .description("set the VM's cloud-init seed from files (made at its next start), or --remove it")
    .option("--user-data <file>", "the user-data file (e.g. #cloud-config)")
    .option("--meta-data <file>", "the meta-data file (instance-id and local-hostname default to the VM's)")
    .option("--network-config <file>", "the network-config file")
    .option("--remove", "remove the seed")
    .action(async (name: string, o: { userData?: string; metaData?: string; networkConfig?: string; remove?: boolean }) => {
      if (o.remove) {
        if (o.userData || o.metaData || o.networkConfig) throw new Error("--remove takes no files");
        await io.client().json("DELETE", `${vmUrl(name)}/cloud-init`);
        return;
      }
      if (!o.userData) throw new Error("--user-data <file> is required (or --remove)");
      const text = (file?: string) => (file === undefined ? undefined : readFile(file, "utf8"));
      const [userData, metaData, networkConfig] = await Promise.all([text(o.userData), text(o.metaData), text(o.networkConfig)]);
      await io.client().json("PUT", `${vmUrl(name)}/cloud-init`, {
        userData,
        ...(metaData !== undefined ? { metaData } : {}),
        ...(networkConfig !== undefined ? { networkConfig } : {}),
      });
    });

  program
    .command("agent <name>")
    .description("ask the guest agent (qemu-ga) whether it answers, and the guest's addresses")
    .action(async (name: string) => {
      const a = await io.client().json<{ connected: boolean; addresses?: string[] }>("GET", `${vmUrl(name)}/agent`);
      io.out(io.json() ? JSON.stringify(a, null, 2) : a.connected ? `connected\n${(a.addresses ?? []).join("\n")}` : "no guest agent answers");
    });
}
