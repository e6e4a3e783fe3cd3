// The pass-through's allowlist and the redaction of secrets, as pure functions:
// what an API caller may send to qemu by default, and what a log or event shows.
import t from "tap";
import { loadConfig } from "../../src/config.js";
import { allowedCommands, decidePassthrough } from "../../src/qmp/passthrough-policy.js";
import { REDACTED, redactArguments, redactSecrets } from "../../src/qmp/secret-redaction.js";

t.test("queries run without the lock, guest-only actions with it", async (t) => {
  t.same(decidePassthrough("query-status", "allowlist"), { allowed: true, takesLock: false });
  t.same(decidePassthrough("query-block", "allowlist"), { allowed: true, takesLock: false });
  t.same(decidePassthrough("send-key", "allowlist"), { allowed: true, takesLock: true });
  t.same(decidePassthrough("stop", "allowlist"), { allowed: true, takesLock: true });
  for (const [name, row] of Object.entries(allowedCommands)) {
    t.ok(row.why.length > 10, `${name} says why it is safe`);
    t.equal(row.kind === "query", name.startsWith("query-"), `${name}: only query-* commands are queries`);
  }
});

t.test("a back door is refused by default, with a reason", async (t) => {
  const doors = [
    "cont", "migrate", "migrate-incoming", "migrate-set-capabilities", "nbd-server-start", "nbd-server-add",
    "block-export-add", "human-monitor-command", "chardev-add", "getfd", "add-fd", "screendump",
    "dump-guest-memory", "blockdev-add", "object-add", "netdev_add", "device_add", "drive-mirror",
    "set_password", "system_powerdown", "quit", "x-query-roms", "query-fdsets", "no-such-command",
    "__proto__", "constructor", "toString",
  ];
  for (const cmd of doors) {
    const d = decidePassthrough(cmd, "allowlist");
    t.equal(d.allowed, false, `${cmd} refused`);
    if (!d.allowed) t.ok(d.reason.length > 0, `${cmd}: ${d.reason}`);
  }
  const cont = decidePassthrough("cont", "allowlist");
  t.match(cont, { allowed: false, reason: /resume/ }, "cont points at the API's resume");
  t.match(decidePassthrough("nbd-server-start", "allowlist"), { reason: /listener/ });
});

t.test("with `all` everything runs, and anything but an allowlisted query takes the lock", async (t) => {
  t.same(decidePassthrough("cont", "all"), { allowed: true, takesLock: true });
  t.same(decidePassthrough("human-monitor-command", "all"), { allowed: true, takesLock: true });
  t.same(decidePassthrough("x-query-roms", "all"), { allowed: true, takesLock: true });
  t.same(decidePassthrough("query-status", "all"), { allowed: true, takesLock: false });
});

t.test("--qmp-passthrough: allowlist by default, all when said, nothing else", async (t) => {
  t.equal(loadConfig([], {}).qmpPassthrough, "allowlist");
  t.equal(loadConfig(["--qmp-passthrough", "all"], {}).qmpPassthrough, "all");
  t.equal(loadConfig([], { VMHOSTD_QMP_PASSTHROUGH: "all" }).qmpPassthrough, "all");
  t.throws(() => loadConfig(["--qmp-passthrough", "some"], {}), /--qmp-passthrough \(VMHOSTD_QMP_PASSTHROUGH\)/);
});

t.test("secrets are redacted at any depth, the rest is kept", async (t) => {
  const args = {
    protocol: "vnc",
    password: "hunter2",
    connected: "keep",
    nested: { list: [{ "new-secret": "s1", other: 1 }, { keyid: "k", Passwd: "p" }] },
  };
  t.same(redactSecrets(args), {
    protocol: "vnc",
    password: REDACTED,
    connected: "keep",
    nested: { list: [{ "new-secret": REDACTED, other: 1 }, { keyid: REDACTED, Passwd: REDACTED }] },
  });
  t.equal(args.password, "hunter2", "the arguments sent to qemu are untouched");
  t.same(redactSecrets({ keys: [{ type: "qcode", data: "a" }], "hold-time": 10 }), { keys: REDACTED, "hold-time": 10 }, "keystrokes may be a password");
  t.same(redactSecrets({ "qom-type": "secret", id: "s0", data: "c2VjcmV0" }), { "qom-type": "secret", id: "s0", data: REDACTED }, "a secret object's data");
  t.same(redactSecrets({ "qom-type": "memory-backend-ram", id: "m", size: 1 }), { "qom-type": "memory-backend-ram", id: "m", size: 1 });
  t.same(redactSecrets({ "command-line": "set_password vnc hunter2" }), { "command-line": REDACTED }, "a monitor command line that sets a password");
  t.same(redactSecrets({ "command-line": "info block" }), { "command-line": "info block" }, "one that reads is kept");
  t.equal(redactArguments(undefined), undefined);
  t.same(redactSecrets([1, "x", null]), [1, "x", null]);
});

t.test("the README's allowlist is the code's", async (t) => {
  const { readFile } = await import("node:fs/promises");
  const path = await import("node:path");
  const { distRoot } = await import("../helpers/dist-root.js");
  const readme = await readFile(path.join(distRoot, "..", "README.md"), "utf8");
  const table = readme.slice(readme.indexOf("| allowed by default |"));
  const rows = [...table.slice(0, table.search(/\n\s*\n/)).matchAll(/^\s*\| `([^`]+)` \|/gm)].map((m) => m[1]);
  t.same(rows, Object.keys(allowedCommands), "one row per allowed command, in order");
});
