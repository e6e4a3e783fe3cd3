// bench/backup in its --smoke mode (a 64 MiB disk): the bench runs end to end
// and its incremental backup is incremental and much smaller than the full one.
import { execFileSync } from "node:child_process";
import path from "node:path";
import t from "tap";
import { distRoot } from "../helpers/daemon.js";

t.test("bench/backup --smoke", async (t) => {
  const out = execFileSync(process.execPath, [path.join(distRoot, "bench/backup.js"), "--smoke"], { encoding: "utf8", timeout: 170_000, stdio: ["ignore", "pipe", "pipe"] });
  const row = (name: string) => new RegExp(`^\\| ${name} \\| ([\\d.]+) \\| ([\\d.]+) \\|$`, "m").exec(out);
  const full = row("full");
  const inc = row("incremental");
  t.ok(full && inc, `both rows printed:\n${out}`);
  t.ok(Number(inc![1]) < Number(full![1]) / 5, "the incremental image is a fraction of the full one");
});
