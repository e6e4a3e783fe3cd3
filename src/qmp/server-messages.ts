// What qemu may send, per docs/interop/qmp-spec: a greeting, a success reply,
// an error reply, or an event. Anything else is a protocol error: we would not
// know which command it answers, so the caller tears the connection down rather
// than guess. Pure functions of one parsed JSON object.
import type { QmpEvent, QmpGreeting } from "./commands.js";

export type ServerMessage =
  | { kind: "greeting"; greeting: QmpGreeting }
  | { kind: "event"; event: QmpEvent }
  /** `id` is whatever qemu echoed (undefined if it sent none). */
  | { kind: "return"; id: unknown; value: unknown }
  | { kind: "error"; id: unknown; errorClass: string; desc: string }
  | { kind: "invalid"; reason: string };

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v);
}

function invalid(reason: string): ServerMessage {
  return { kind: "invalid", reason };
}

function classifyGreeting(body: unknown): ServerMessage {
  if (!isObject(body) || !isObject(body.version) || !Array.isArray(body.capabilities)) {
    return invalid("greeting lacks version or capabilities");
  }
  const { qemu, package: pkg } = body.version;
  if (!isObject(qemu) || !isInt(qemu.major) || !isInt(qemu.minor) || !isInt(qemu.micro) || typeof pkg !== "string") {
    return invalid("greeting has a malformed version");
  }
  if (!body.capabilities.every((c): c is string => typeof c === "string")) {
    return invalid("greeting has a malformed capabilities list");
  }
  return {
    kind: "greeting",
    greeting: {
      version: { qemu: { major: qemu.major, minor: qemu.minor, micro: qemu.micro }, package: pkg },
      capabilities: [...body.capabilities],
    },
  };
}

function classifyEvent(msg: JsonObject): ServerMessage {
  const { event, data, timestamp } = msg;
  if (typeof event !== "string") return invalid("event name is not a string");
  if (data !== undefined && !isObject(data)) return invalid(`event ${event} has non-object data`);
  if (!isObject(timestamp) || !isInt(timestamp.seconds) || !isInt(timestamp.microseconds)) {
    return invalid(`event ${event} has a malformed timestamp`);
  }
  const e: QmpEvent = { event, timestamp: { seconds: timestamp.seconds, microseconds: timestamp.microseconds } };
  if (data !== undefined) e.data = data;
  return { kind: "event", event: e };
}

function classifyError(msg: JsonObject): ServerMessage {
  const err = msg.error;
  if (!isObject(err) || typeof err.class !== "string" || typeof err.desc !== "string") {
    return invalid("error reply lacks class or desc");
  }
  return { kind: "error", id: msg.id, errorClass: err.class, desc: err.desc };
}

/** Sorts one message from qemu into its kind, checking the fields we rely on. */
export function classifyServerMessage(msg: JsonObject): ServerMessage {
  const kinds = ["QMP", "event", "return", "error"].filter((k) => k in msg);
  if (kinds.length !== 1) {
    return invalid(kinds.length === 0 ? "not a QMP message" : `message mixes ${kinds.join(" and ")}`);
  }
  switch (kinds[0]) {
    case "QMP":
      return classifyGreeting(msg.QMP);
    case "event":
      return classifyEvent(msg);
    case "return":
      return { kind: "return", id: msg.id, value: msg.return };
    default:
      return classifyError(msg);
  }
}
