// The per-command timeout table: quick queries, longer waits for what drains
// I/O, opens storage or migrates, and the order in which a call's own value, a
// client's override and the table decide.
import t from "tap";
import { COMMAND_TIMEOUTS_MS, commandTimeoutMs, DEFAULT_COMMAND_TIMEOUT_MS } from "../../src/qmp/timeouts.js";

t.test("queries take the default; slow commands their row", async (t) => {
  t.equal(DEFAULT_COMMAND_TIMEOUT_MS, 5_000);
  for (const q of ["query-status", "query-block", "qmp_capabilities", "human-monitor-command", "no-such-command"]) {
    t.equal(commandTimeoutMs(q, undefined, undefined), DEFAULT_COMMAND_TIMEOUT_MS, `${q}: the default`);
  }
  const rows: [string, number][] = [
    ["stop", 30_000],
    ["cont", 30_000],
    ["quit", 30_000],
    ["system_reset", 10_000],
    ["device_add", 30_000],
    ["device_del", 30_000],
    ["blockdev-add", 30_000],
    ["block_resize", 30_000],
    ["blockdev-backup", 30_000],
    ["screendump", 30_000],
    ["migrate", 60_000],
    ["migrate-incoming", 60_000],
    ["migrate-set-capabilities", 10_000],
  ];
  for (const [cmd, ms] of rows) t.equal(commandTimeoutMs(cmd, undefined, undefined), ms, `${cmd}: ${ms} ms`);
});

t.test("the table only lengthens waits, and cannot be changed at run time", async (t) => {
  const shorter = Object.entries(COMMAND_TIMEOUTS_MS).filter(([, ms]) => !(ms > DEFAULT_COMMAND_TIMEOUT_MS));
  t.same(shorter, [], "no row is at or below the default");
  t.ok(Object.keys(COMMAND_TIMEOUTS_MS).every((k) => /^[a-z][a-z0-9_-]*$/.test(k)), "every key is spelt as a QMP command");
  t.ok(Object.isFrozen(COMMAND_TIMEOUTS_MS));
  t.throws(() => ((COMMAND_TIMEOUTS_MS as Record<string, number>).stop = 1), TypeError, "a write throws (ESM is strict)");
  t.equal(commandTimeoutMs("stop", undefined, undefined), 30_000);
});

t.test("a call's own timeout wins, then the client's override, then the table", async (t) => {
  const client = { stop: 2_000, "query-status": 500 };
  t.equal(commandTimeoutMs("stop", 100, client), 100, "per call");
  t.equal(commandTimeoutMs("stop", undefined, client), 2_000, "the client's override of a row");
  t.equal(commandTimeoutMs("query-status", undefined, client), 500, "the client's override of the default");
  t.equal(commandTimeoutMs("cont", undefined, client), 30_000, "a command the client did not override: the table");
  t.equal(commandTimeoutMs("query-block", undefined, {}), DEFAULT_COMMAND_TIMEOUT_MS);
  t.equal(commandTimeoutMs("migrate", Infinity, undefined), Infinity, "Infinity: as long as the connection lives");
});

t.test("a timeout that is not a positive number is a programming error", async (t) => {
  for (const bad of [0, -1, Number.NaN]) {
    t.throws(() => commandTimeoutMs("stop", bad, undefined), { name: "RangeError", message: /QMP timeout for stop must be a positive number/ }, `per call: ${bad}`);
    t.throws(() => commandTimeoutMs("stop", undefined, { stop: bad }), RangeError, `client override: ${bad}`);
  }
});
