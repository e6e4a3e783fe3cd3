// Sorting what qemu sends into greeting, event, return and error, and refusing
// anything else as invalid: the client tears the connection down on an invalid
// message rather than guess which command it answers.
import t from "tap";
import { classifyServerMessage } from "../../src/qmp/server-messages.js";

/** qemu 7.2's greeting, as sent on the socket. */
const greeting = {
  QMP: { version: { qemu: { micro: 19, minor: 2, major: 7 }, package: "Debian 1:7.2+dfsg-7" }, capabilities: ["oob"] },
};
const ts = { seconds: 1767225600, microseconds: 123456 };

t.test("a greeting keeps the version and capabilities, and nothing else", async (t) => {
  const withExtra = { QMP: { ...greeting.QMP, vendor: "x", version: { ...greeting.QMP.version, extra: 1 } } };
  t.same(classifyServerMessage(withExtra), {
    kind: "greeting",
    greeting: { version: { qemu: { major: 7, minor: 2, micro: 19 }, package: "Debian 1:7.2+dfsg-7" }, capabilities: ["oob"] },
  });
  const caps = ["oob"];
  const m = classifyServerMessage({ QMP: { ...greeting.QMP, capabilities: caps } });
  caps.push("later");
  t.same(m.kind === "greeting" && m.greeting.capabilities, ["oob"], "a copy: the parsed message is not shared");
});

t.test("a malformed greeting is invalid, saying why", async (t) => {
  const v = greeting.QMP.version;
  const cases: [string, unknown, RegExp][] = [
    ["no version", { capabilities: [] }, /lacks version/],
    ["capabilities not a list", { version: v, capabilities: "oob" }, /lacks version or capabilities/],
    ["not an object", "QEMU", /lacks version/],
    ["a version number that is a string", { version: { ...v, qemu: { ...v.qemu, major: "7" } }, capabilities: [] }, /malformed version/],
    ["a fractional version number", { version: { ...v, qemu: { ...v.qemu, minor: 2.5 } }, capabilities: [] }, /malformed version/],
    ["no package", { version: { qemu: v.qemu }, capabilities: [] }, /malformed version/],
    ["a capability that is not a string", { version: v, capabilities: ["oob", 1] }, /malformed capabilities/],
  ];
  for (const [what, body, reason] of cases) {
    t.match(classifyServerMessage({ QMP: body }), { kind: "invalid", reason }, what);
  }
});

t.test("events: name, optional data, timestamp", async (t) => {
  t.same(classifyServerMessage({ event: "STOP", timestamp: ts }), { kind: "event", event: { event: "STOP", timestamp: ts } }, "no data: no data key");
  const data = { guest: true, reason: "guest-shutdown" };
  t.same(classifyServerMessage({ event: "SHUTDOWN", data, timestamp: { ...ts, extra: 1 } }), {
    kind: "event",
    event: { event: "SHUTDOWN", data, timestamp: ts },
  });
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a name that is not a string", { event: 7, timestamp: ts }, /event name is not a string/],
    ["data that is a list", { event: "X", data: [1], timestamp: ts }, /event X has non-object data/],
    ["data that is null", { event: "X", data: null, timestamp: ts }, /non-object data/],
    ["no timestamp", { event: "X" }, /event X has a malformed timestamp/],
    ["microseconds as a string", { event: "X", timestamp: { seconds: 1, microseconds: "2" } }, /malformed timestamp/],
  ];
  for (const [what, msg, reason] of cases) t.match(classifyServerMessage(msg), { kind: "invalid", reason }, what);
});

t.test("replies: a return or an error, with whatever id qemu echoed", async (t) => {
  t.same(classifyServerMessage({ return: {}, id: 3 }), { kind: "return", id: 3, value: {} });
  t.same(classifyServerMessage({ return: { status: "running", running: true } }), {
    kind: "return",
    id: undefined,
    value: { status: "running", running: true },
  }, "no id: undefined (the client then matches nothing and drops the connection)");
  t.same(classifyServerMessage({ return: null, id: "x" }), { kind: "return", id: "x", value: null }, "the id is passed through as sent");
  t.same(classifyServerMessage({ error: { class: "DeviceNotFound", desc: "Device 'x' not found" }, id: 9 }), {
    kind: "error",
    id: 9,
    errorClass: "DeviceNotFound",
    desc: "Device 'x' not found",
  });
  t.match(classifyServerMessage({ error: { class: "GenericError" }, id: 9 }), { kind: "invalid", reason: /lacks class or desc/ }, "no desc");
  t.match(classifyServerMessage({ error: "boom", id: 9 }), { kind: "invalid", reason: /lacks class or desc/ }, "not an object");
});

t.test("a message that is none of the four, or several at once, is invalid", async (t) => {
  t.same(classifyServerMessage({}), { kind: "invalid", reason: "not a QMP message" });
  t.same(classifyServerMessage({ id: 1 }), { kind: "invalid", reason: "not a QMP message" });
  t.same(classifyServerMessage({ return: {}, error: { class: "a", desc: "b" }, id: 1 }), { kind: "invalid", reason: "message mixes return and error" });
  t.same(classifyServerMessage({ ...greeting, event: "STOP", timestamp: ts }), { kind: "invalid", reason: "message mixes QMP and event" });
});
