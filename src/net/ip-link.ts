// The few iproute2 commands the daemon needs, each run as `ip` with an argv array
// (no shell: a bridge or VM name cannot become an option), and the JSON view of
// one link. Knows nothing of VMs.
import { NetworkFailed } from "../errors.js";
import { execChild } from "../host/child-process.js";
import type { QemuIdentity } from "../qemu/qemu-user.js";

const IP_TIMEOUT_MS = 10_000;

export interface LinkInfo {
  name: string;
  ifindex: number;
  /** `bridge`, `tun`, `veth`, ...; undefined for a physical interface. */
  kind: string | undefined;
  /** For a tun device: `tap` or `tun`. */
  tunType: string | undefined;
  multiQueue: boolean;
  master: string | undefined;
  alias: string | undefined;
  /**
   * A process has the tap open. The kernel reports carrier on a tun/tap device exactly
   * while a file descriptor is attached (NO-CARRIER otherwise); a multi-queue tap
   * also counts its attached queues.
   */
  attached: boolean;
}

interface IpLinkJson {
  ifname: string;
  ifindex: number;
  flags?: string[];
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: { type?: string; multi_queue?: boolean; numqueues?: number } };
}

async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await execChild("ip", args, { timeout: IP_TIMEOUT_MS });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new NetworkFailed(`ip ${args.join(" ")} failed: ${(e.stderr || e.message).trim()}`, { command: ["ip", ...args] });
  }
}

/** One link by name, or undefined if there is none. */
export async function showLink(name: string): Promise<LinkInfo | undefined> {
  let out: string;
  try {
    out = await ip(["-j", "-d", "link", "show", "dev", name]);
  } catch (err) {
    if (/does not exist|Cannot find device/.test((err as Error).message)) return undefined;
    throw err;
  }
  const link = (JSON.parse(out) as IpLinkJson[])[0];
  if (!link) return undefined;
  const data = link.linkinfo?.info_data;
  const flags = link.flags ?? [];
  return {
    name: link.ifname,
    ifindex: link.ifindex,
    kind: link.linkinfo?.info_kind,
    tunType: data?.type,
    multiQueue: data?.multi_queue === true,
    master: link.master,
    alias: link.ifalias,
    attached: flags.includes("LOWER_UP") || (data?.numqueues ?? 0) > 0,
  };
}

/**
 * A persistent tap: it outlives the daemon and qemu alike, so qemu needs no
 * privilege to open it and a daemon restart does not cut the guest off. An
 * unprivileged qemu may attach to it only as its `owner`.
 */
export async function addTap(name: string, multiQueue: boolean, owner?: QemuIdentity): Promise<void> {
  // user only: the group is every VM's qemu's, and would let any of them open this tap.
  const own = owner ? ["user", String(owner.uid)] : [];
  await ip(["tuntap", "add", "dev", name, "mode", "tap", ...own, ...(multiQueue ? ["multi_queue"] : [])]);
}

/**
 * Enslaves a link to a bridge and names its owner in its alias, in one command.
 * The link stays down: a port that is down forwards nothing until setLinkUp.
 */
export async function attachToBridge(name: string, bridge: string, alias: string): Promise<void> {
  await ip(["link", "set", "dev", name, "master", bridge, "alias", alias]);
}

export async function setLinkUp(name: string): Promise<void> {
  await ip(["link", "set", "dev", name, "up"]);
}

/** Deletes a link; one that is already gone counts as deleted. */
export async function deleteLink(name: string): Promise<void> {
  try {
    await ip(["link", "del", "dev", name]);
  } catch (err) {
    if (/does not exist|Cannot find device/.test((err as Error).message)) return;
    throw err;
  }
}
