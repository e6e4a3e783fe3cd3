// One case of the migration bench: both sides' guests booted, then interleaved
// rounds of one run each (order alternating), only the migrating guest running.
// Every run ends with a check that the guest runs on in the same boot; a guest
// that does not is broken, counted as such, and replaced by a freshly booted one.
import path from "node:path";
import { GuestBroken } from "./guest-console.js";
import { HandGuest } from "./hand-migration.js";
import type { CaseResult, MigratingGuest, MigrationCase, MigrationOutcome, SideResult } from "./migration-case.js";
import { VmhostdGuest, type DaemonPeer } from "./vmhostd-migration.js";

type RunOutcome = MigrationOutcome | { ok: false; why: string; broken: true };

interface Side {
  name: string;
  into: SideResult;
  guest: MigratingGuest;
  /** Boots a fresh guest for this side, paused. */
  boot: () => Promise<MigratingGuest>;
}

/**
 * One run: resume, the timed migration, then (untimed) a check that the guest runs
 * on in the same boot wherever it is now, and pause.
 */
async function runOnce(g: MigratingGuest): Promise<RunOutcome> {
  let out: MigrationOutcome | undefined;
  try {
    await g.resume();
    out = await g.migrate();
    await g.checkAlive(out.ok ? "after the migration" : "after the failed migration");
    await g.pause();
    return out;
  } catch (err) {
    if (!(err instanceof GuestBroken)) throw err;
    const when = !out
      ? "before migrating:"
      : out.ok
        ? `the migration completed (total ${out.sample.totalMs.toFixed(0)} ms, downtime ${out.sample.downtimeMs} ms), but`
        : `after a failed migration (${out.why}),`;
    return { ok: false, why: `guest broken: ${when} ${err.message}`, broken: true };
  }
}

function describe(out: RunOutcome): string {
  if (!out.ok) return `FAILED: ${out.why}`;
  const s = out.sample;
  const down = s.figuresUnset ? "unset (0)" : `${s.downtimeMs} ms`;
  return `total ${s.totalMs.toFixed(0)} ms, downtime ${down}${s.outcomeUnknown ? " (went through outcome-unknown)" : ""}`;
}

async function paused<G extends MigratingGuest>(g: G): Promise<G> {
  await g.pause();
  return g;
}

export async function runCase(c: MigrationCase, peers: [DaemonPeer, DaemonPeer], handDirs: [string, string], runs: number): Promise<CaseResult> {
  const result: CaseResult = { c, vmhostd: { samples: [], failures: [], broken: 0 }, hand: { samples: [], failures: [], broken: 0 } };
  const sides: Side[] = [];
  const log = (msg: string): boolean => process.stderr.write(`${c.label}: ${msg}\n`);
  try {
    log("booting the vmhostd guest");
    const first = await VmhostdGuest.boot(peers, c);
    const vmhBoot = async (): Promise<MigratingGuest> => paused((await VmhostdGuest.boot(peers, c)).guest);
    sides.push({ name: "vmhostd", into: result.vmhostd, guest: await paused(first.guest), boot: vmhBoot });
    // The by-hand side replays the argv vmhostd gave this guest's qemu, with the paths moved.
    const d = peers[0].daemon;
    const vmDirs = { runDir: path.join(d.runDir, "vms", first.guest.name), stateDir: path.join(d.stateDir, "vms", first.guest.name) };
    const handBoot = async (): Promise<MigratingGuest> => paused(await HandGuest.boot(first.argv, vmDirs, handDirs, c));
    log("booting the by-hand guest");
    sides.push({ name: "by hand", into: result.hand, guest: await handBoot(), boot: handBoot });

    for (let i = 1; i <= runs; i++) {
      const line: string[] = [];
      for (const side of i % 2 ? sides : [...sides].reverse()) {
        const out = await runOnce(side.guest);
        if (out.ok) side.into.samples.push(out.sample);
        else side.into.failures.push(out.why);
        line.push(`${side.name} ${describe(out)}`);
        if (!out.ok && "broken" in out) {
          side.into.broken++;
          await side.guest.close().catch(() => undefined);
          if (i < runs) {
            log(`${side.name}: booting a fresh guest for the next run`);
            side.guest = await side.boot();
          }
        }
      }
      log(`run ${i}/${runs}: ${line.join("; ")}`);
    }
  } catch (err) {
    result.error = (err as Error).message.replace(/\s*\n\s*/g, "; ");
    log(result.error);
  } finally {
    for (const s of sides) await s.guest.close().catch((err: Error) => log(`closing the ${s.name} guest: ${err.message}`));
  }
  return result;
}
