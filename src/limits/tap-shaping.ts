// A VM's network limits, on each of its taps with tc. To the guest (egress of
// the tap): a token bucket (tbf) on the tap's root qdisc, so excess waits rather
// than being lost. From the guest (ingress of the tap): the tap's ingress
// redirects every frame to an ifb device of its own, shaped by a tbf the same
// way; the kernels this runs on lack tc's police action, and a shaper is kinder
// to TCP than a policer's drops. The ifb is named from the tap (vmh… → vmi…).
// Every command is an argv array run without a shell and with a minimal environment.
import { LimitsFailed } from "../errors.js";
import type { NetworkLimits } from "./limits-schema.js";
import { execChild } from "../host/child-process.js";

const TC_TIMEOUT_MS = 10_000;
/** The queue a shaper may hold before it drops: a bound on the delay it adds. */
const TBF_LATENCY = "50ms";
const MIN_BURST_BYTES = 32 * 1024;

export const ifbName = (tap: string): string => tap.replace(/^vmh/, "vmi");

/** A command: `tc` or `ip` with its arguments; `absentOk`: an error that it has nothing to remove is no error. */
export interface ShapingCommand {
  argv: ["tc" | "ip", ...string[]];
  absentOk?: boolean;
}

/** The bucket: the given burst, else 20 ms of the rate, but never under 32 KiB (a few full-size frames). */
export function burstBytes(kbps: number, burstKiB: number | undefined): number {
  if (burstKiB !== undefined) return burstKiB * 1024;
  return Math.max(MIN_BURST_BYTES, Math.ceil((kbps * 1000) / 8 / 50));
}

const tbf = (dev: string, kbps: number, burst: number): string[] =>
  ["qdisc", "replace", "dev", dev, "root", "tbf", "rate", `${kbps}kbit`, "burst", String(burst), "latency", TBF_LATENCY];

/** The commands that make `tap` carry exactly `limits` (a limit removed is lifted), in order. */
export function tapShapingCommands(tap: string, limits: NetworkLimits | undefined, ifbExists: boolean): ShapingCommand[] {
  const ifb = ifbName(tap);
  const out: ShapingCommand[] = [];
  if (limits?.egressKbps !== undefined) out.push({ argv: ["tc", ...tbf(tap, limits.egressKbps, burstBytes(limits.egressKbps, limits.burstKiB))] });
  else out.push({ argv: ["tc", "qdisc", "del", "dev", tap, "root"], absentOk: true });
  if (limits?.ingressKbps !== undefined) {
    if (!ifbExists) out.push({ argv: ["ip", "link", "add", ifb, "type", "ifb"] });
    out.push(
      { argv: ["ip", "link", "set", ifb, "up"] },
      // The shaper first, then the redirect to it: no frame meets an unshaped ifb.
      { argv: ["tc", ...tbf(ifb, limits.ingressKbps, burstBytes(limits.ingressKbps, limits.burstKiB))] },
      { argv: ["tc", "qdisc", "replace", "dev", tap, "handle", "ffff:", "ingress"] },
      {
        argv: ["tc", "filter", "replace", "dev", tap, "parent", "ffff:", "protocol", "all", "prio", "1", "handle", "800::1",
          "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb],
      },
    );
  } else {
    out.push({ argv: ["tc", "qdisc", "del", "dev", tap, "ingress"], absentOk: true });
    if (ifbExists) out.push({ argv: ["ip", "link", "del", ifb], absentOk: true });
  }
  return out;
}

async function exec(c: ShapingCommand): Promise<string> {
  const [tool, ...args] = c.argv;
  try {
    return (await execChild(tool, args, { timeout: TC_TIMEOUT_MS })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const text = (e.stderr || e.message).trim();
    if (c.absentOk && /No such file|Cannot find|does not exist|handle of zero|Invalid handle/i.test(text)) return "";
    throw new LimitsFailed(`${c.argv.join(" ")} failed: ${text}`, { command: c.argv });
  }
}

async function linkExists(name: string): Promise<boolean> {
  return await execChild("ip", ["link", "show", "dev", name], { timeout: TC_TIMEOUT_MS }).then(() => true, () => false);
}

export async function applyTapShaping(tap: string, limits: NetworkLimits | undefined): Promise<void> {
  for (const c of tapShapingCommands(tap, limits, await linkExists(ifbName(tap)))) await exec(c);
}

/** Removes the tap's ifb (the tap's own qdiscs go with the tap). */
export async function removeTapShaping(tap: string): Promise<void> {
  if (await linkExists(ifbName(tap))) await exec({ argv: ["ip", "link", "del", ifbName(tap)], absentOk: true }).catch(() => {});
}

interface QdiscJson {
  kind: string;
  root?: boolean;
  options?: { rate?: number; burst?: number };
}

/** The rate of a root tbf in `tc -j qdisc show` output, in kbit/s. */
export function tbfKbps(json: string): number | undefined {
  const q = (JSON.parse(json || "[]") as QdiscJson[]).find((q) => q.kind === "tbf" && q.root);
  return q?.options?.rate !== undefined ? Math.round((q.options.rate * 8) / 1000) : undefined;
}

/** What the tap carries now, read from the kernel: the redirect must be in place for ingress to count. */
export async function readTapShaping(tap: string): Promise<Pick<NetworkLimits, "ingressKbps" | "egressKbps">> {
  const tapQdiscs = await exec({ argv: ["tc", "-j", "qdisc", "show", "dev", tap] });
  const egressKbps = tbfKbps(tapQdiscs);
  const redirect = (await exec({ argv: ["tc", "filter", "show", "dev", tap, "parent", "ffff:"] }).catch(() => "")).toLowerCase().includes(`redirect to device ${ifbName(tap)}`);
  const ingressKbps = redirect ? tbfKbps(await exec({ argv: ["tc", "-j", "qdisc", "show", "dev", ifbName(tap)] }).catch(() => "[]")) : undefined;
  return { ...(ingressKbps !== undefined ? { ingressKbps } : {}), ...(egressKbps !== undefined ? { egressKbps } : {}) };
}

/** The ifb devices of these taps (a NIC removed, a hot-plug undone). */
export async function removeShapingOf(taps: { name: string }[]): Promise<void> {
  for (const t of taps) await removeTapShaping(t.name);
}
