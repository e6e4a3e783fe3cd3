// The unit files in systemd/ pass `systemd-analyze verify` with no warning, and
// keep the settings the daemon's design depends on.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { distRoot } from "../helpers/daemon.js";

const run = promisify(execFile);

/** systemd/ in the source tree: tests run from dist/test/systemd. */
const unitsDir = path.resolve(distRoot, "..", "systemd");
const INSTALLED_NODE = "/usr/bin/node";
const INSTALLED_DIST = "/opt/vmhostd/dist";

/** Settings of one section, last assignment wins (as systemd reads them). */
function settings(unit: string, section: string): Map<string, string> {
  const out = new Map<string, string>();
  let current = "";
  for (const raw of unit.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) current = header[1]!;
    else if (current === section) {
      const eq = line.indexOf("=");
      out.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    }
  }
  return out;
}

t.test("every unit file verifies cleanly", async (t) => {
  const names = (await readdir(unitsDir)).filter((f) => /\.(service|socket|target|timer|path)$/.test(f));
  t.ok(names.includes("vmhostd.service") && names.includes("vmhostd-guests.service"), "both units present");

  // verify checks that each Exec*= program exists. The units name the installed
  // paths (/usr/bin/node, /opt/vmhostd/dist), which this machine need not have, so a
  // temporary copy points at the node running this test and at this build's dist/;
  // everything else, the syntax and semantics under test, is verified as written.
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-units-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const name of names) {
    const text = await readFile(path.join(unitsDir, name), "utf8");
    await writeFile(path.join(dir, name), text.replaceAll(INSTALLED_NODE, process.execPath).replaceAll(INSTALLED_DIST, distRoot));
  }
  // verify exits 0 on many mistakes (an unknown key or value is "ignored" with a
  // warning), so its output must be empty too.
  const files = names.map((n) => path.join(dir, n));
  const res = await run("systemd-analyze", ["verify", ...files]).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
  t.equal(res.code, 0, "systemd-analyze verify succeeds");
  t.equal(res.out.trim(), "", "and warns about nothing");
});

t.test("vmhostd.service: notify, watchdog, and VMs outlive the daemon", async (t) => {
  const svc = settings(await readFile(path.join(unitsDir, "vmhostd.service"), "utf8"), "Service");
  t.equal(svc.get("Type"), "notify");
  t.equal(svc.get("NotifyAccess"), "all", "the notifications come from the helper child");
  t.ok(svc.get("WatchdogSec"), "watchdog on");
  t.equal(svc.get("KillMode"), "process", "stop and restart signal the daemon only, never the VMs");
  t.match(svc.get("ExecStart"), /\/dist\/bundle\/vmhostd\.js$/, "the bundled daemon (scripts/bundle.mjs)");
  // One set of node flags wherever the daemon starts: the unit, `npm start` and main.js's own #! line.
  const shebang = (await readFile(path.join(unitsDir, "../src/main.ts"), "utf8")).split("\n", 1)[0]!;
  const flags = /^#!\/usr\/bin\/env -S node (.*)$/.exec(shebang)?.[1];
  t.ok(flags?.includes("--max-semi-space-size"), "main.ts's #! line carries the memory flags");
  t.equal(svc.get("ExecStart"), `/usr/bin/node ${flags} /opt/vmhostd/dist/bundle/vmhostd.js`, "the unit runs node with them");
  const pkg = JSON.parse(await readFile(path.join(unitsDir, "../package.json"), "utf8")) as { scripts: Record<string, string> };
  t.match(pkg.scripts.start, ` node ${flags} dist/bundle/vmhostd.js`, "npm start too");
  // The token reaches the daemon as a credential: never on its command line or in its environment.
  t.equal(svc.get("LoadCredential"), "peer-token:/etc/vmhostd/peer-token");
  t.notMatch(svc.get("ExecStart"), /peer-token/);
  t.notOk(svc.get("Environment")?.includes("VMHOSTD_PEER_TOKEN="), "no token in the environment");
  t.equal(svc.get("ExecReload"), "/bin/kill -HUP $MAINPID", "reload re-reads the TLS files");
});

t.test("vmhostd-guests.service: guests start after vmhostd and stop before it", async (t) => {
  const text = await readFile(path.join(unitsDir, "vmhostd-guests.service"), "utf8");
  const unit = settings(text, "Unit");
  const svc = settings(text, "Service");
  t.match(unit.get("After"), /\bvmhostd\.service\b/);
  t.match(unit.get("Wants"), /\bvmhostd\.service\b/);
  // Requires=, BindsTo= and PartOf= pass a restart of vmhostd on to this unit, whose stop shuts every VM down.
  for (const dep of ["Requires", "BindsTo", "PartOf", "Requisite"]) t.notOk(unit.get(dep), `no ${dep}=`);
  t.equal(svc.get("Type"), "oneshot");
  t.equal(svc.get("RemainAfterExit"), "yes");
  t.match(svc.get("ExecStart"), /vmctl\.js autostart$/);
  const stop = /shutdown-all --timeout (\d+)$/.exec(svc.get("ExecStop") ?? "");
  t.ok(stop, "ExecStop shuts every VM down");
  t.ok(Number(svc.get("TimeoutStopSec")) > Number(stop?.[1]), "systemd waits longer than the guests' grace period");
});
