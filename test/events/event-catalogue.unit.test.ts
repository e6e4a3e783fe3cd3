// The event catalogue: the README's event table lists every declared type with its
// subject and payload fields, and lists nothing else; the bus puts on the wire what
// the catalogue declares; publishing an undeclared type or a wrong payload does not
// compile (the @ts-expect-error lines fail the build if it ever does).
import { readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { z } from "zod";
import { EventBus } from "../../src/events/event-bus.js";
import { eventCatalogue, eventDeclaration, type EventPayload } from "../../src/events/event-catalogue.js";
import { JobRegistry, type JobState } from "../../src/jobs/job-registry.js";
import type { MigrateRequest } from "../../src/migration/migration-schema.js";
import type { Accel } from "../../src/qemu/qemu-argv.js";
import type { LastExit } from "../../src/store/runtime-store.js";
import { distRoot } from "../helpers/dist-root.js";
import { eventProblems, type WireEvent } from "../helpers/event-check.js";

// The catalogue sits below the VM domain and declares the shapes it shares with it
// itself; these fail to compile if the two ever part.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sharedShapes: [
  Same<NonNullable<EventPayload<"vm.state">["lastExit"]>, LastExit>,
  Same<EventPayload<"job.ended">["state"], Exclude<JobState, "running">>,
  Same<EventPayload<"migration.started">["storage"], MigrateRequest["storage"]>,
  Same<EventPayload<"daemon.started">["accel"], Accel>,
] = [true, true, true, true];

interface DocumentedEvent {
  subject: string;
  fields: string[];
}

/** The rows of the table in the README's "Event stream" section, by type. */
async function readmeEventTable(): Promise<Map<string, DocumentedEvent>> {
  const readme = await readFile(path.join(distRoot, "..", "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("\n## Event stream\n"), readme.indexOf("\n## ", readme.indexOf("\n## Event stream\n") + 1));
  const rows = new Map<string, DocumentedEvent>();
  for (const line of section.split("\n")) {
    const cells = /^\| `([^`]+)` \| (\w+) \| ([^|]+) \|/.exec(line);
    if (!cells) continue;
    const fields = cells[3]!.trim() === "none" ? [] : [...cells[3]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    rows.set(cells[1]!, { subject: cells[2]!, fields });
  }
  return rows;
}

/** The payload's fields as the README writes them: `name`, or `name?` when it may be absent. */
function declaredFields(payload: z.ZodType): string[] {
  if (!(payload instanceof z.ZodObject)) throw new Error("every payload is an object schema");
  return Object.entries(payload.shape as Record<string, z.ZodType>).map(([k, s]) => (s.safeParse(undefined).success ? `${k}?` : k));
}

t.test("the README's event table and the catalogue agree, both ways", async (t) => {
  const documented = await readmeEventTable();
  for (const [type, d] of Object.entries(eventCatalogue)) {
    const row = documented.get(type);
    if (!row) {
      t.fail(`${type} is in the README's event table`);
      continue;
    }
    t.equal(row.subject, d.subject, `${type}: about ${d.subject}`);
    t.same(row.fields, declaredFields(d.payload), `${type}: the data fields`);
  }
  for (const type of documented.keys()) t.ok(Object.hasOwn(eventCatalogue, type), `${type} (in the README) is declared`);
  t.ok(documented.size >= 30, `the table has its rows (${documented.size})`);
});

t.test("the shapes shared with the domain are the domain's", async (t) => {
  t.same(sharedShapes, [true, true, true, true], "checked by the compiler");
});

t.test("qemu's events fall under their family; unknown types under nothing", async (t) => {
  t.equal(eventDeclaration("qemu.SHUTDOWN"), eventCatalogue["qemu.<EVENT>"]);
  t.equal(eventDeclaration("qemu.BLOCK_JOB_COMPLETED"), eventCatalogue["qemu.<EVENT>"]);
  t.equal(eventDeclaration("vm.state"), eventCatalogue["vm.state"]);
  t.equal(eventDeclaration("vm.unheard-of"), undefined);
  t.equal(eventDeclaration("toString"), undefined, "not an inherited property");
});

/** An event the bus published, as the SSE route writes it. */
function onTheWire(e: { id: number; type: string }): WireEvent {
  return { sseId: e.id, sseEvent: e.type, body: JSON.parse(JSON.stringify(e)) as unknown };
}

t.test("the bus publishes the envelope it always did, with declared payloads", async (t) => {
  const bus = new EventBus();
  const seen: WireEvent[] = [];
  bus.subscribe((e) => seen.push(onTheWire(e)));
  const state = bus.publish("vm.state", "web1", { state: "running", reason: "start" });
  t.same(Object.keys(state), ["id", "time", "type", "vm", "data"], "the envelope's fields, in their order");
  t.same(JSON.parse(JSON.stringify(state)), { id: 1, time: state.time, type: "vm.state", vm: "web1", data: { state: "running", reason: "start" } });
  bus.publish("vm.deleted", "web1");
  bus.publish("daemon.adopted", undefined, { vms: 2, running: 1 });
  bus.publish("qemu.SHUTDOWN", "web1", { data: { guest: true, reason: "guest-shutdown" } });
  bus.publish("operation.ended", "web1", { operation: "start", result: "failed", error: { code: undefined, message: "boom" } });
  t.same(bus.since(1).map((e) => e.data), [{}, { vms: 2, running: 1 }, { data: { guest: true, reason: "guest-shutdown" } }, { operation: "start", result: "failed", error: { code: undefined, message: "boom" } }]);
  t.notOk("vm" in bus.since(2)[0]!, "a host event has no vm field");
  t.same(seen.flatMap(eventProblems), [], "each matches the catalogue as JSON");

  // A payload that breaks its schema is caught by the same check the integration tests use.
  t.match(eventProblems({ sseId: 9, sseEvent: "vm.balloon", body: { id: 9, time: state.time, type: "vm.balloon", vm: "web1", data: { targetMiB: "1" } } }), [/vm\.balloon #9: data/]);
  t.match(eventProblems({ sseId: 9, sseEvent: "vm.frobbed", body: { id: 9, time: state.time, type: "vm.frobbed", vm: "web1", data: {} } }), [/not in the catalogue/]);
  t.match(eventProblems({ sseEvent: "vm.deleted", body: { time: state.time, type: "vm.deleted", vm: "web1", data: {} } }), [/without an id/]);
});

t.test("a job's events, as the job registry publishes them, match the catalogue", async (t) => {
  const bus = new EventBus();
  const seen: WireEvent[] = [];
  bus.subscribe((e) => seen.push(onTheWire(e)));
  const jobs = new JobRegistry(bus);
  const ok = jobs.create("backup", "web1");
  ok.update({ bytesCopied: 0, bytesTotal: 10, percent: null });
  ok.setPhase("copying");
  ok.finish("succeeded", { disk: "root", target: "b.qcow2", format: "qcow2", bytes: 10 });
  const bad = jobs.create("migrate", "web1");
  bad.setPhase("transferring");
  bad.finish("failed", undefined, { code: "VMH_ERR_MIGRATION", detail: "refused" });
  t.same(
    seen.map((e) => e.sseEvent),
    ["job.progress", "job.ended", "job.progress", "job.ended"],
  );
  t.same(seen.flatMap(eventProblems), [], "each matches the catalogue as JSON");
});

t.test("only declared types with their payloads compile", async (t) => {
  const bus = new EventBus();
  const unpublished = (): void => {
    // @ts-expect-error an undeclared type
    bus.publish("vm.frobbed", "web1", {});
    // @ts-expect-error a field of the wrong type
    bus.publish("vm.balloon", "web1", { targetMiB: "1024" });
    // @ts-expect-error a required field missing
    bus.publish("vm.disk-added", "web1", { disk: "data" });
    // @ts-expect-error a field the payload does not declare
    bus.publish("vm.cdrom", "web1", { image: null, drive: "ide0" });
    // @ts-expect-error a payload is required when it has required fields
    bus.publish("vm.state", "web1");
    // @ts-expect-error the stream's own events are not published on the bus
    bus.publish("events.lost", undefined, { afterId: 1, firstAvailable: 2, reason: "x" });
  };
  t.type(unpublished, "function", "the lines above are checked by the compiler, never run");
  t.equal(bus.lastId, 0);
});
