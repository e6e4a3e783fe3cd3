// Every program the daemon runs gets PATH and LANG only: the daemon's own
// environment (which may hold the peer token) never reaches a child.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { CHILD_ENV, execChild, spawnChild } from "../../src/host/child-process.js";
import { distRoot } from "../helpers/dist-root.js";

const srcDir = path.join(distRoot, "..", "src");

/** tap's process tracker adds its own variables to every child of a test process; they are not the daemon's. */
const fromTap = (line: string): boolean => line.startsWith("_TAPJS_") || line.startsWith("NODE_OPTIONS=");

function parseEnv(out: string): Record<string, string> {
  // NUL-separated (env -0): a value may hold newlines.
  const lines = out.split("\0").filter((l) => l !== "" && !fromTap(l));
  return Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

t.test("no file under src/ but child-process.ts starts a process", async (t) => {
  const files = (await readdir(srcDir, { recursive: true })).filter((f) => f.endsWith(".ts")).sort();
  t.ok(files.length > 50, `${files.length} source files`);
  const offences: string[] = [];
  for (const file of files) {
    if (file === path.join("host", "child-process.ts")) continue;
    const text = await readFile(path.join(srcDir, file), "utf8");
    // A type is harmless; a value import could spawn with the daemon's environment.
    for (const m of text.matchAll(/^import\s+(type\s+)?[^;]*from\s+["'](?:node:)?child_process["']/gm)) {
      if (!m[1]) offences.push(`${file} imports child_process`);
    }
    if (/\bprocess\.env\b/.test(text) && /\benv:\s*process\.env\b/.test(text)) offences.push(`${file} passes process.env to a child`);
  }
  t.same(offences, []);
});

t.test("a child sees PATH and LANG and nothing of the daemon's environment", async (t) => {
  process.env.VMHOSTD_PEER_TOKEN = "canary-token-0123456789";
  t.teardown(() => void delete process.env.VMHOSTD_PEER_TOKEN);
  const { stdout } = await execChild("/usr/bin/env", ["-0"], { timeout: 5000 });
  t.same(parseEnv(stdout), CHILD_ENV);

  const child = spawnChild("/usr/bin/env", ["-0"], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  await new Promise((resolve) => child.once("close", resolve));
  t.notMatch(out, /canary-token/);
  t.same(parseEnv(out), CHILD_ENV);
});

t.test("a failure carries the exit status and stderr", async (t) => {
  const err = (await execChild("/bin/sh", ["-c", "echo oops >&2; exit 3"]).catch((e: unknown) => e)) as { code?: number; stderr?: string };
  t.equal(err.code, 3);
  t.equal(err.stderr?.trim(), "oops");
});
