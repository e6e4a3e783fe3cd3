// VmRegistry without qemu: the host it is given is real where it only touches
// files (definition store, pools, journal in a temp dir; qemu as root, so no uid
// is handed out) and no VM is ever started. What it decides on its own is
// tested here: loading and adopting stored VMs, names and uuids that clash,
// refusals (unknown, busy, wrong state, broken), delete. close() is left out:
// it always waits out its 10 s grace timer, too slow for a unit test.
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import t, { type Test } from "tap";
import { loadConfig } from "../../src/config.js";
import { VmBusy } from "../../src/errors.js";
import { EventBus, type DaemonEvent } from "../../src/events/event-bus.js";
import type { BusEventType } from "../../src/events/event-catalogue.js";
import { QemuUsers } from "../../src/qemu/qemu-user.js";
import { DefinitionStore } from "../../src/store/definition-store.js";
import { writeLastExit } from "../../src/store/runtime-store.js";
import { QemuImg } from "../../src/storage/qemu-img.js";
import { StoragePools } from "../../src/storage/storage-pools.js";
import { vmCreateSchema } from "../../src/definition/vm-definition.js";
import type { HostContext } from "../../src/vm/host-context.js";
import { VmRegistry } from "../../src/vm/vm-registry.js";

/** The events of one type the registry's bus holds, typed by the catalogue. */
function heldEvents<K extends BusEventType>(r: VmRegistry, type: K): DaemonEvent<K>[] {
  return r.host.bus.since(0).filter((e): e is DaemonEvent<K> => e.type === type);
}

const log = pino({ level: "silent" });
const UUID_A = "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11";
const UUID_B = "1c8d5a4f-3a8b-4d8f-8b64-1a4d4a8f3b22";
/** What a VM whose definition cannot be read shows instead of its own uuid. */
const PLACEHOLDER_UUID = "00000000-0000-4000-8000-000000000000";

/** A host in a temp dir; a second call on the same root is the daemon restarted. */
async function hostIn(root: string): Promise<HostContext> {
  const stateDir = path.join(root, "state");
  const runDir = path.join(root, "run");
  const config = loadConfig(["--state-dir", stateDir, "--run-dir", runDir, "--qemu-user", "root"], {});
  await mkdir(path.join(runDir, "vms"), { recursive: true });
  const pools = new StoragePools(config.pools);
  await pools.init();
  const store = new DefinitionStore(stateDir, runDir);
  await store.init();
  return {
    config,
    accel: "tcg",
    qemuVersion: "7.2.0",
    qemuUsers: await QemuUsers.load("root", stateDir, [], log),
    pools,
    qemuImg: new QemuImg(config.qemuImg),
    store,
    bus: new EventBus(),
    log,
    stopping: new AbortController(),
  };
}

async function tempRoot(t: Test): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-registry-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function registryIn(root: string): Promise<VmRegistry> {
  const registry = new VmRegistry(await hostIn(root));
  await registry.load();
  await registry.adopted;
  return registry;
}

const create = async (r: VmRegistry, name: string, uuid?: string) => {
  await r.perform(name, { kind: "create", definition: vmCreateSchema.parse({ name, ...(uuid ? { uuid } : {}) }) });
  return r.get(name);
};

const eventTypes = (r: VmRegistry, vm: string) => r.host.bus.since(0).filter((e) => e.vm === vm).map((e) => e.type);

t.test("a created VM is stopped, stored, and found again by the next daemon", async (t) => {
  const root = await tempRoot(t);
  const first = await registryIn(root);
  const vm = await create(first, "web-1", UUID_A);
  t.equal(vm.state(), "stopped");
  t.same(eventTypes(first, "web-1"), ["vm.created"]);
  await stat(first.host.store.paths("web-1").definition);

  const second = await registryIn(root);
  t.same(second.list().map((v) => [v.name, v.state(), v.definition.uuid]), [["web-1", "stopped", UUID_A]]);
  t.same(eventTypes(second, "web-1"), ["operation.started", "vm.state", "vm.state", "operation.ended", "vm.adopted"], "adoption runs as an operation of its own");
  const states = heldEvents(second, "vm.state").map((e) => e.data.state);
  t.same(states, ["unknown", "stopped"], "unknown while adopted, then what the files say");
  t.match(second.host.bus.since(0).find((e) => e.type === "vm.adopted")?.data, { state: "stopped" });
});

t.test("what an earlier daemon left: a crash, an interrupted stop, an unreadable definition", async (t) => {
  const root = await tempRoot(t);
  const first = await registryIn(root);
  for (const name of ["a-crashed", "b-interrupted", "c-broken"]) await create(first, name);
  const paths = (name: string) => first.host.store.paths(name);
  await writeLastExit(paths("a-crashed"), { at: "2026-01-01T00:00:00.000Z", reason: "crashed", exitCode: null, signal: "SIGSEGV" });
  await writeFile(paths("b-interrupted").journal, JSON.stringify({ id: "1", vm: "b-interrupted", operation: "stop", startedAt: "2026-01-01T00:00:00.000Z", done: [], params: {} }));
  await writeFile(paths("c-broken").definition, '{"name": "c-broken", "vcpus": ');

  const second = await registryIn(root);
  t.same(second.list().map((v) => [v.name, v.state()]), [["a-crashed", "crashed"], ["b-interrupted", "stopped"], ["c-broken", "error"]], "listed by name, each in the state its files say");
  t.match(second.get("a-crashed").view().lastExit, { reason: "crashed", signal: "SIGSEGV" });
  await t.rejects(stat(paths("b-interrupted").journal), { code: "ENOENT" }, "a stop whose qemu is gone needs nothing more: its journal entry is ended");
  const broken = second.get("c-broken").view();
  t.match(broken.error, /definition unreadable/, "the view says why");
  t.equal(broken.uuid, PLACEHOLDER_UUID);
});

t.test("a VM in state error may only be stopped", async (t) => {
  const root = await tempRoot(t);
  const first = await registryIn(root);
  await create(first, "c-broken");
  await writeFile(first.host.store.paths("c-broken").definition, "not json");
  const r = await registryIn(root);
  for (const kind of ["start", "pause", "reset", "resume"] as const) {
    await t.rejects(r.perform("c-broken", { kind }), { code: "VMH_ERR_VM_STATE", status: 409, fields: { state: "error", wanted: kind } }, kind);
  }
  await t.rejects(r.perform("c-broken", { kind: "delete" }), { code: "VMH_ERR_VM_STATE", fields: { wanted: "delete" } }, "not deleted: the operator decides what its files are");
  await t.rejects(r.perform("c-broken", { kind: "stop" }), { code: "VMH_ERR_VM_STATE", fields: { state: "error", wanted: "stop" } }, "no qemu to stop");
  const ran = heldEvents(r, "operation.started").map((e) => e.data.operation);
  t.same(ran, ["adopt", "stop"], "of all these, only the stop got as far as running (a live qemu could be behind it)");
});

t.test("names and uuids are one VM's each, also while being created or received", async (t) => {
  const r = await registryIn(await tempRoot(t));
  await create(r, "web-1", UUID_A);
  await t.rejects(create(r, "web-1"), { code: "VMH_ERR_VM_EXISTS", status: 409, fields: { vm: "web-1" } });
  await t.rejects(create(r, "web-2", UUID_A), { code: "VMH_ERR_UUID_IN_USE", fields: { uuid: UUID_A, vm: "web-1" } }, "the holder is named");

  // An incoming VM whose directory is still being made: its name and uuid are reserved meanwhile.
  let failMake!: (err: Error) => void;
  const undone: (string | undefined)[] = [];
  const work = (name: string, uuid: string, make: () => Promise<never>) => ({
    definition: { name, uuid },
    make,
    facts: () => ({}),
    receive: async () => {},
    undo: async (vm: { name: string } | undefined) => void undone.push(vm?.name),
  });
  const receiving = r.perform("incoming", { kind: "migrate-in", storage: "shared" }, work("incoming", UUID_B, () => new Promise<never>((_, fail) => (failMake = fail))));
  await t.rejects(create(r, "incoming"), { code: "VMH_ERR_VM_EXISTS" }, "a name reserved for an incoming VM is taken");
  await t.rejects(create(r, "web-3", UUID_B), { code: "VMH_ERR_UUID_IN_USE", fields: { vm: "incoming" } }, "and so is its uuid");
  const never = () => Promise.reject(new Error("not reached"));
  await t.rejects(r.perform("other", { kind: "migrate-in", storage: "shared" }, work("other", UUID_A, never)), { code: "VMH_ERR_UUID_IN_USE" }, "a receive checks both too");
  failMake(new Error("disk full"));
  await t.rejects(receiving, /disk full/);
  t.same(undone, [undefined], "what was made for the failed receive is removed; no VM was registered");
  t.equal((await create(r, "incoming", UUID_B)).name, "incoming", "free again once the receive failed");
  await t.rejects(r.perform("web-1", { kind: "migrate-in", storage: "shared" }, work("web-1", UUID_B, never)), { code: "VMH_ERR_VM_EXISTS" });
});

t.test("the placeholder uuid of a broken VM blocks no one", async (t) => {
  const root = await tempRoot(t);
  const first = await registryIn(root);
  await create(first, "c-broken");
  await writeFile(first.host.store.paths("c-broken").definition, "");
  const r = await registryIn(root);
  t.equal(r.get("c-broken").definition.uuid, PLACEHOLDER_UUID);
  t.equal((await create(r, "web-1", PLACEHOLDER_UUID)).definition.uuid, PLACEHOLDER_UUID);
});

t.test("refusals: an unknown VM, a busy one, an operation its state forbids", async (t) => {
  const r = await registryIn(await tempRoot(t));
  await t.rejects(r.perform("nope", { kind: "start" }), { code: "VMH_ERR_VM_NOT_FOUND", status: 404, fields: { vm: "nope" } });
  t.throws(() => r.get("nope"), { code: "VMH_ERR_VM_NOT_FOUND" });
  await t.rejects(r.perform("nope", { kind: "delete" }), { code: "VMH_ERR_VM_NOT_FOUND" });

  const vm = await create(r, "web-1");
  let release!: () => void;
  const held = vm.lock.run("reset", () => new Promise<void>((res) => (release = res)));
  const busy = await r.perform("web-1", { kind: "start" }).catch((e: unknown) => e);
  t.type(busy, VmBusy, "a start while another operation holds the VM");
  t.match(busy, { fields: { operation: "reset" } });
  t.equal(vm.state(), "stopped", "the refused start changed nothing");
  release();
  await held;

  for (const kind of ["pause", "resume", "reset"] as const) {
    await t.rejects(r.perform("web-1", { kind }), { code: "VMH_ERR_VM_STATE", fields: { vm: "web-1", state: "stopped", wanted: kind } }, `${kind} of a stopped VM`);
  }
  await t.rejects(r.perform("web-1", { kind: "stop" }), { code: "VMH_ERR_VM_STATE", fields: { state: "stopped", wanted: "stop" } }, "stop of a stopped VM");
  await t.rejects(stat(vm.paths.journal), { code: "ENOENT" }, "the refusals left no journal entry");
  const ended = heldEvents(r, "operation.ended").filter((e) => e.vm === "web-1").map((e) => [e.data.operation, e.data.result]);
  t.same(ended, [["reset", "ok"], ["pause", "failed"], ["resume", "failed"], ["reset", "failed"], ["stop", "failed"]], "refused by state: begun and failed; refused as busy: never begun");
});

t.test("delete removes the VM's directory and its entry", async (t) => {
  const r = await registryIn(await tempRoot(t));
  const vm = await create(r, "web-1", UUID_A);
  await r.perform("web-1", { kind: "delete" });
  await t.rejects(stat(vm.paths.dir), { code: "ENOENT" });
  t.same(r.list(), []);
  t.same(eventTypes(r, "web-1").slice(-1), ["vm.deleted"]);
  t.equal((await create(r, "web-2", UUID_A)).name, "web-2", "its uuid is free again");
});
