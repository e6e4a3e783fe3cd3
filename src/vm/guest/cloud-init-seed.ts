// The cloud-init NoCloud seed: user-data, meta-data and (optionally)
// network-config in an ISO 9660 image labelled `cidata`, which cloud-init in a
// stock cloud image finds on its own. Made from the definition at each start
// when its content changed, attached as a read-only CD-ROM (see qemu-argv).
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { StorageFailed, VmStateConflict } from "../../errors.js";
import { execChild } from "../../host/child-process.js";
import { fsyncDir, writeFileAtomic } from "../../store/atomic-file.js";
import type { VmPaths } from "../../store/vm-paths.js";
import type { CloudInit, VmDefinition } from "../../definition/vm-definition.js";
import type { HostContext } from "../host-context.js";
import type { Vm } from "../vm.js";

/** Builds the ISO (Joliet and Rock Ridge, so every cloud-init reads the lower-case names). */
export const XORRISO = "xorriso";

/** The seed's files, by name. instance-id and local-hostname come from the VM unless metaData sets them. */
export function seedFiles(def: Pick<VmDefinition, "name" | "uuid">, cloudInit: CloudInit): Record<string, string> {
  const given = cloudInit.metaData ?? "";
  const defaults = [
    ...(/^instance-id\s*:/m.test(given) ? [] : [`instance-id: ${def.uuid}`]),
    ...(/^local-hostname\s*:/m.test(given) ? [] : [`local-hostname: ${def.name}`]),
  ];
  const metaData = [...defaults, ...(given ? [given.replace(/\n?$/, "")] : [])].join("\n") + "\n";
  return {
    "user-data": cloudInit.userData,
    "meta-data": metaData,
    ...(cloudInit.networkConfig !== undefined ? { "network-config": cloudInit.networkConfig } : {}),
  };
}

function digestOf(files: Record<string, string>): string {
  return createHash("sha256").update(JSON.stringify(files)).digest("hex");
}

function digestFile(paths: VmPaths): string {
  return `${paths.cloudInitSeed}.sha256`;
}

/**
 * Makes the VM's seed match its definition: written (atomically) when the content
 * changed since the last one, removed when the definition has no cloudInit.
 */
export async function ensureCloudInitSeed(def: VmDefinition, paths: VmPaths): Promise<void> {
  if (!def.cloudInit) {
    await Promise.all([rm(paths.cloudInitSeed, { force: true }), rm(digestFile(paths), { force: true })]);
    return;
  }
  const files = seedFiles(def, def.cloudInit);
  const digest = digestOf(files);
  const [recorded, present] = await Promise.all([
    readFile(digestFile(paths), "utf8").catch(() => ""),
    open(paths.cloudInitSeed, "r").then((fh) => fh.close().then(() => true), () => false),
  ]);
  if (present && recorded.trim() === digest) return;

  const work = path.join(paths.dir, `.cidata-${randomBytes(4).toString("hex")}`);
  const tree = path.join(work, "seed");
  const iso = path.join(work, "cidata.iso");
  try {
    await mkdir(tree, { recursive: true, mode: 0o700 });
    await Promise.all(Object.entries(files).map(([name, text]) => writeFile(path.join(tree, name), text, { mode: 0o600 })));
    await execChild(XORRISO, ["-as", "mkisofs", "-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock", tree], { timeout: 30_000 }).catch(
      (err: Error & { stderr?: string }) => {
        throw new StorageFailed(`cannot make the cloud-init seed: ${(err.stderr || err.message).trim()}`, { vm: def.name });
      },
    );
    const fh = await open(iso, "r+");
    // The user-data often holds secrets: the daemon's (and, once started, the VM's qemu's) only.
    await fh.chmod(0o600).then(() => fh.sync()).finally(() => fh.close());
    await rename(iso, paths.cloudInitSeed);
    await fsyncDir(paths.dir);
    await writeFileAtomic(digestFile(paths), digest + "\n", 0o600);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The `set-cloud-init` action: recorded in the definition; the seed follows at the next start.
 * Adding or removing the seed adds or removes a device, so a running VM must be stopped first:
 * otherwise its definition no longer matches its qemu and a migration would be refused.
 */
export async function setCloudInit(vm: Vm, host: HostContext, cloudInit: CloudInit | undefined): Promise<void> {
  if (vm.session && !vm.definition.cloudInit !== !cloudInit) {
    throw new VmStateConflict(vm.name, `${vm.settledState()} (stop it first)`, cloudInit ? "add a cloud-init seed to" : "remove the cloud-init seed of");
  }
  await vm.changeDefinition(host.store, (d) => {
    const def: VmDefinition = { ...d };
    if (cloudInit) def.cloudInit = cloudInit;
    else delete def.cloudInit;
    return def;
  });
}
