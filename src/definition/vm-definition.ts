// The VM definition: one zod schema that validates requests, types the code and
// writes the OpenAPI document. `vmCreateSchema` is what a client sends;
// `vmDefinitionSchema` is what is stored, with the uuid and MACs filled in once.
import { randomBytes, randomUUID } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";
import { limitsIssues, vmLimitsSchema } from "../limits/limits-schema.js";

export const VM_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
// Disk names become qemu node names (`d-<name>`, 31 characters at most, a letter first).
export const DISK_NAME_PATTERN = /^[a-z][a-z0-9-]{0,26}$/;
export const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Most memory one VM may ask for: 4 TiB. Host admission is checked separately at start. */
export const MAX_MEMORY_MIB = 4 * 1024 * 1024;
export const MAX_VCPUS = 255;
export const MAX_DISK_GIB = 64 * 1024;

export const vmNameSchema = z
  .string()
  .regex(VM_NAME_PATTERN, "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit");

/** A file in a storage pool: an absolute path inside a pool, or a path relative to the `images` pool. */
const poolPath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.includes("\0"), "must not contain NUL");

const bootSchema = z
  .object({
    // qemu splits -initrd on commas, so these two may not contain one.
    kernel: poolPath.refine((p) => !p.includes(","), "must not contain ','").optional()
      .describe("direct kernel boot: kernel image in a storage pool"),
    initrd: poolPath.refine((p) => !p.includes(","), "must not contain ','").optional(),
    cmdline: z.string().max(4096).optional(),
    order: z
      .array(z.enum(["disk", "cdrom", "network"]))
      .min(1)
      .max(3)
      .refine((o) => new Set(o).size === o.length, "must not repeat a device")
      .optional(),
  })
  .strict()
  .refine((b) => b.kernel !== undefined || (b.initrd === undefined && b.cmdline === undefined), {
    message: "initrd and cmdline need a kernel",
    path: ["kernel"],
  });

/** Text for a NoCloud seed file: cloud-init reads YAML (or a script), which the daemon passes through as is. */
const seedText = z.string().max(64 * 1024, "at most 64 KiB");

export const cloudInitSchema = z
  .object({
    userData: seedText.describe("the user-data file, e.g. starting with #cloud-config"),
    metaData: seedText
      .optional()
      .describe("the meta-data file; instance-id and local-hostname default to the VM's uuid and name"),
    networkConfig: seedText.optional().describe("the network-config file (cloud-init network config v1 or v2)"),
  })
  .strict()
  .describe("a NoCloud seed (volume label cidata) attached as a read-only CD-ROM");

export type CloudInit = z.output<typeof cloudInitSchema>;

export const cdromSchema = z
  .object({
    image: poolPath
      .optional()
      .describe("an ISO image in a storage pool, attached read-only; absent: an empty drive to insert one into later"),
  })
  .strict()
  .describe("a SATA CD-ROM drive (IDE on the pc machine)");

export const diskSchema = z
  .object({
    name: z.string().regex(DISK_NAME_PATTERN, "must be 1-27 characters of a-z, 0-9 and '-', starting with a letter"),
    sizeGiB: z
      .number()
      .positive()
      .max(MAX_DISK_GIB)
      .optional()
      .describe("create a blank disk of this size; with backingImage or importImage: grow the disk to this size"),
    image: poolPath.optional().describe("use this existing image in a pool (shared: never deleted with the VM)"),
    backingImage: poolPath
      .optional()
      .describe("a qcow2 overlay in the VM's directory on top of this base image in a pool; the base is never written"),
    importImage: poolPath.optional().describe("copy this image in a pool into the VM's directory when the VM is created"),
    restoreFrom: poolPath
      .optional()
      .describe("a backup in a pool (the newest image of a full or incremental chain): its chain flattened into the VM's own disk when the VM is created"),
    format: z.enum(["qcow2", "raw"]).default("qcow2").describe("the format of the VM's disk, and of an in-place image; never guessed from content"),
    sourceFormat: z
      .enum(["qcow2", "raw"])
      .optional()
      .describe("the format of the backingImage or importImage file; default from its name (.qcow2, .raw or .img), never from its content"),
    bus: z.literal("virtio-blk").default("virtio-blk"),
    cache: z
      .enum(["none", "writeback", "writethrough", "unsafe"])
      .default("none")
      .describe("none (default): O_DIRECT, no host page cache; writeback; writethrough; unsafe: flushes ignored"),
    aio: z
      .enum(["io_uring", "threads", "native"])
      .optional()
      .describe("default io_uring where the host supports it, else threads; native needs cache none"),
  })
  .strict()
  .superRefine((d, ctx) => {
    const sources = (["image", "backingImage", "importImage", "restoreFrom"] as const).filter((k) => d[k] !== undefined);
    if (sources.length > 1) {
      ctx.addIssue({ code: "custom", path: [sources[1]!], message: `give at most one of image, backingImage, importImage and restoreFrom` });
    } else if (sources.length === 0 && d.sizeGiB === undefined) {
      ctx.addIssue({ code: "custom", path: ["sizeGiB"], message: "give sizeGiB for a blank disk, or one of image, backingImage and importImage" });
    } else if (d.image !== undefined && d.sizeGiB !== undefined) {
      ctx.addIssue({ code: "custom", path: ["sizeGiB"], message: "an existing image (image) keeps its own size; sizeGiB is for the VM's own disks" });
    }
    if (d.sourceFormat !== undefined && d.backingImage === undefined && d.importImage === undefined && d.restoreFrom === undefined) {
      ctx.addIssue({ code: "custom", path: ["sourceFormat"], message: "sourceFormat is the format of a backingImage or importImage; an in-place image's is format" });
    }
    if (d.backingImage !== undefined && d.format !== "qcow2") {
      ctx.addIssue({ code: "custom", path: ["format"], message: "a disk on a backing image is a qcow2 overlay" });
    }
    if (d.aio === "native" && d.cache !== "none") {
      ctx.addIssue({ code: "custom", path: ["aio"], message: "native needs cache none (O_DIRECT)" });
    }
  });

/** A Linux interface name: IFNAMSIZ leaves 15 characters, and `/`, `:` or spaces are not allowed. */
export const BRIDGE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

const networkSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("user") }).strict().describe("qemu user-mode networking (NAT, no inbound): for development"),
  z
    .object({
      type: z.literal("bridge"),
      bridge: z
        .string()
        .regex(BRIDGE_NAME_PATTERN, "must be a Linux bridge name: 1-15 characters of A-Z, a-z, 0-9, '_', '.' and '-'")
        .refine((b) => b !== "." && b !== "..", "must be a Linux bridge name, not '.' or '..'")
        .describe("an existing Linux bridge; the daemon attaches a tap device of its own to it"),
    })
    .strict(),
]);

/** An address the guest may use, with its prefix: `203.0.113.10/24`, `2001:db8::10/64` (no dotted IPv4 inside IPv6). */
const nicAddress = z.string().refine((cidr) => {
  const [addr, prefix, extra] = cidr.split("/");
  if (addr === undefined || prefix === undefined || extra !== undefined || !/^\d{1,3}$/.test(prefix)) return false;
  if (isIPv4(addr)) return Number(prefix) <= 32;
  return isIPv6(addr) && !addr.includes(".") && Number(prefix) <= 128;
}, "must be an IPv4 or IPv6 address with a prefix length, like 203.0.113.10/24 or 2001:db8::10/64");
const vlanId = z.number().int().min(1).max(4094);
export const nicAddressesSchema = z
  .array(nicAddress)
  .max(64)
  .describe("bridged NICs: the IPv4 and IPv6 addresses (CIDR) the guest may send from; with strict filtering and none, only DHCP/SLAAC discovery and link-local");
export const nicFilteringSchema = z
  .enum(["strict", "mac", "off"])
  .describe("bridged NICs: strict (default): MAC, addresses, ARP/ND and no DHCP server or router advertisement from the guest; mac: the MAC only; off: nothing (logged)");

export const nicSchema = z
  .object({
    model: z.literal("virtio-net").default("virtio-net"),
    mac: z.string().regex(MAC_PATTERN, "must be six lower-case hex pairs like 52:54:00:12:34:56").optional(),
    network: networkSchema.default({ type: "user" }),
    addresses: nicAddressesSchema.optional(),
    filtering: nicFilteringSchema.optional(),
    vlan: vlanId.optional().describe("bridged NICs: the access VLAN (the port's untagged PVID) on a VLAN-aware bridge"),
    trunk: z
      .array(vlanId)
      .min(1)
      .max(4094)
      .refine((v) => new Set(v).size === v.length, "must not repeat a VLAN")
      .optional()
      .describe("bridged NICs: the VLANs the guest may send and receive tagged, on a VLAN-aware bridge"),
  })
  .strict()
  .superRefine((n, ctx) => {
    if (n.network.type !== "bridge") {
      for (const k of ["addresses", "filtering", "vlan", "trunk"] as const) {
        if (n[k] !== undefined) ctx.addIssue({ code: "custom", path: [k], message: "is for bridged NICs only" });
      }
    }
    // Strict filtering drops tagged frames: the VLAN header would hide the addresses from it.
    if (n.trunk !== undefined && (n.filtering ?? "strict") === "strict") {
      ctx.addIssue({ code: "custom", path: ["trunk"], message: "a trunk needs filtering mac or off: strict filtering drops tagged frames" });
    }
  });

const vmFields = {
  name: vmNameSchema,
  vcpus: z.number().int().min(1).max(MAX_VCPUS).default(1),
  memoryMiB: z.number().int().min(16).max(MAX_MEMORY_MIB).default(512),
  machine: z
    .string()
    .regex(/^(q35|pc|pc-q35-\d+\.\d+|pc-i440fx-\d+\.\d+)$/, "must be q35, pc or a versioned pc-q35-X.Y / pc-i440fx-X.Y")
    .default("q35"),
  cpu: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be a qemu CPU model name")
    .optional()
    .describe("qemu CPU model; default host under KVM, max under TCG"),
  firmware: z
    .enum(["bios", "uefi"])
    .default("bios")
    .describe("bios: SeaBIOS; uefi: OVMF with a variable store of the VM's own (q35 only)"),
  boot: bootSchema.default({ order: ["disk"] }),
  cdrom: cdromSchema.optional(),
  cloudInit: cloudInitSchema.optional(),
  disks: z
    .array(diskSchema)
    .max(32)
    .default([])
    .refine((ds) => new Set(ds.map((d) => d.name)).size === ds.length, "disk names must be unique"),
  nics: z.array(nicSchema).max(16).default([]),
  rng: z.boolean().default(true),
  balloon: z.boolean().default(true).describe("a virtio memory balloon, so the guest's memory can be reclaimed while it runs"),
  autostart: z.boolean().default(false),
  onCrash: z.enum(["stop", "restart"]).default("stop"),
  ha: z
    .boolean()
    .default(false)
    .describe("fleet mode: the owner key is bound to the host's lease, so the VM may be restarted elsewhere once this host is gone (and has fenced itself)"),
  limits: vmLimitsSchema.optional(),
};

export const vmCreateSchema = z
  .object({ ...vmFields, uuid: z.uuid().optional().describe("generated when absent") })
  .strict()
  // OVMF's pflash and the firmware build Debian ships are for q35.
  .refine((v) => v.firmware !== "uefi" || isQ35(v.machine), {
    message: "uefi needs a q35 machine",
    path: ["firmware"],
  })
  .superRefine((v, ctx) => {
    for (const issue of limitsIssues(v.limits, v.memoryMiB)) ctx.addIssue({ code: "custom", ...issue });
  });
export type VmCreateRequest = z.input<typeof vmCreateSchema>;

const storedNic = nicSchema.safeExtend({ mac: z.string().regex(MAC_PATTERN) });

export const vmDefinitionSchema = z
  .object({ ...vmFields, uuid: z.uuid(), nics: z.array(storedNic), createdAt: z.string() })
  .strict();
export type VmDefinition = z.output<typeof vmDefinitionSchema>;
export type DiskDefinition = VmDefinition["disks"][number];
export type NicDefinition = VmDefinition["nics"][number];

export function isQ35(machine: string): boolean {
  return machine === "q35" || machine.startsWith("pc-q35");
}

/** qemu's own OUI 52:54:00, then three random octets. Generated once, then stored. */
export function generateMac(): string {
  const tail = [...randomBytes(3)].map((b) => b.toString(16).padStart(2, "0"));
  return ["52", "54", "00", ...tail].join(":");
}

/** Turns a validated create request into the definition that is stored. */
export function completeDefinition(req: z.output<typeof vmCreateSchema>, now = new Date()): VmDefinition {
  return {
    ...req,
    uuid: req.uuid ?? randomUUID(),
    nics: req.nics.map((n) => ({ ...n, mac: n.mac ?? generateMac() })),
    createdAt: now.toISOString(),
  };
}
