// A *.unit.test.ts file needs no daemon, no qemu and no guest (README, Tests):
// none imports the helpers that start them or runs qemu's programs, so
// `npm run test:unit` stays fast and runs on a machine without qemu. It runs
// as a plain node program there (scripts/test-unit.sh), so it uses no tap
// feature that needs tap's loaders (module mocks).
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { distRoot } from "./helpers/dist-root.js";

const testDir = path.join(distRoot, "..", "test");
/** Helpers that start a daemon, a guest, etcd or a second host. */
const integrationHelpers = ["daemon", "two-hosts", "guest", "installer", "migration", "etcd", "event-stream", "console-socket"];
/** A child process of qemu or of a program that scripts/setup.sh installs. */
const runsProgram = /\b(?:execFile|execFileSync|spawn|spawnSync|exec|execSync)\(\s*["'`](qemu-system[\w-]*|qemu-img|xorriso|systemd-analyze|ip)\b/g;

t.test("no unit test reaches for a daemon or qemu, or needs tap's loaders", async (t) => {
  const files = (await readdir(testDir, { recursive: true })).filter((f) => f.endsWith(".unit.test.ts")).sort();
  t.ok(files.length >= 20, `${files.length} unit test files`);
  const offences: string[] = [];
  for (const file of files) {
    const text = await readFile(path.join(testDir, file), "utf8");
    for (const h of integrationHelpers) if (new RegExp(`helpers/${h}\\.js["']`).test(text)) offences.push(`${file} imports helpers/${h}`);
    for (const m of text.matchAll(runsProgram)) offences.push(`${file} runs ${m[1]}`);
    if (/\bt\.mock(?:Import|Require)\(/.test(text)) offences.push(`${file} mocks modules (tap's loader)`);
  }
  t.same(offences, []);
});
