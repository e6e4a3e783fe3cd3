// The guest every side of the bench boots: the test fixture's kernel and initrd
// from test/fixtures/build-guest.sh. The script is always run: it returns at once
// when its cache is up to date and rebuilds when it is missing or stale, so the
// bench boots exactly what the integration tests boot.
import { spawnSync } from "node:child_process";
import path from "node:path";

export interface GuestFiles {
  kernel: string;
  initrd: string;
  cmdline: string;
}

/** Time to "running" does not depend on the guest booting, so the cmdline only keeps it quiet and short-lived. */
export const GUEST_CMDLINE = "console=ttyS0 panic=-1";

export function ensureGuest(repoRoot: string): GuestFiles {
  const script = path.join(repoRoot, "test", "fixtures", "build-guest.sh");
  // Its progress goes to our stderr; its stdout is `kernel=PATH` and `initrd=PATH`.
  const r = spawnSync("bash", [script], { stdio: ["ignore", "pipe", 2], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status ?? r.signal})`);
  const out = Object.fromEntries(
    r.stdout
      .split("\n")
      .map((l) => /^(kernel|initrd)=(.+)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
  if (!out.kernel || !out.initrd) throw new Error(`${script} printed no kernel=/initrd= lines:\n${r.stdout}`);
  return { kernel: out.kernel, initrd: out.initrd, cmdline: GUEST_CMDLINE };
}
