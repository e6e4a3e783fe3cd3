// For the fence tests: both hosts' processes of one VM sampled every 50 ms (how
// many ran at once, and when each host's copy appeared or vanished), a start
// retried until another host lets it, and the fence's own word from GET /v1/host.
import { setTimeout as sleep } from "node:timers/promises";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import type { TestDaemon } from "./daemon.js";
import { ensureGuest } from "./guest.js";

export interface CopyWatch {
  seen: Record<string, { present: boolean; changedAt: number }>;
  readonly most: number;
  stop(): Promise<void>;
}

/** Samples every 50 ms which hosts run a process of `vm` (found by the -uuid and -pidfile the daemon gave it, not by name). */
export function watchCopies(vm: string, hosts: Record<string, TestDaemon>): CopyWatch {
  let most = 0;
  let stopped = false;
  const seen: CopyWatch["seen"] = {};
  const loop = (async () => {
    for (let i = 0; !stopped && i < 20 * 600; i++) {
      let count = 0;
      for (const [id, d] of Object.entries(hosts)) {
        const present = (await findQemuProcesses(d.runDir)).some((p) => p.name === vm);
        if (present) count++;
        if (seen[id]?.present !== present) seen[id] = { present, changedAt: Date.now() };
      }
      most = Math.max(most, count);
      await sleep(50);
    }
  })();
  return {
    seen,
    get most() {
      return most;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Tries to start `vm` on `d` every `everyMs` until it succeeds; returns when (ms since epoch). */
export async function startWhenAllowed(d: TestDaemon, vm: string, timeoutMs: number, everyMs = 50): Promise<{ at: number; refusals: string[] }> {
  const refusals: string[] = [];
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const r = await d.api.request("POST", `/v1/vms/${vm}/start`);
    if (r.status === 200) return { at: Date.now(), refusals };
    const code = (JSON.parse(r.body.toString()) as { code?: string }).code ?? String(r.status);
    if (refusals[refusals.length - 1] !== code) refusals.push(code);
    await sleep(everyMs);
  }
  throw new Error(`${vm} could not be started within ${timeoutMs} ms: ${refusals.join(", ")}`);
}

export async function defineHa(d: TestDaemon, vm: string): Promise<void> {
  const guest = await ensureGuest();
  await d.api.json("POST", "/v1/vms", { name: vm, memoryMiB: 128, ha: true, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline } });
}

export interface FenceView {
  mode: string;
  armed: boolean;
  cause?: string;
  leaseId?: string;
  protects?: string[];
  refusals?: { what: string; why: string }[];
  watchdog?: { device: string; open: boolean; error?: string };
}

export async function fenceOf(d: TestDaemon): Promise<{ fence?: FenceView; lease?: { id: string } }> {
  const host = await d.api.json<{ fleet?: { fence?: FenceView; lease?: { id: string } } }>("GET", "/v1/host");
  return host.fleet ?? {};
}

/** Polls GET /v1/host until the fence's word satisfies `ok` (bounded). */
export async function untilFence(d: TestDaemon, ok: (f: FenceView, lease?: string) => boolean, timeoutMs = 10_000): Promise<FenceView> {
  const until = Date.now() + timeoutMs;
  let last: FenceView | undefined;
  while (Date.now() < until) {
    const f = await fenceOf(d);
    last = f.fence;
    if (last && ok(last, f.lease?.id)) return last;
    await sleep(100);
  }
  throw new Error(`fence not as expected within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** Kills what a test's daemon left running below its directory, whatever the program is called. */
export async function killLeftovers(d: TestDaemon): Promise<void> {
  for (const q of await findQemuProcesses(d.runDir)) {
    try {
      process.kill(q.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
