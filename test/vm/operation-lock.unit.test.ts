// The per-VM operation lock: one operation at a time, a second one refused at
// once with VMH_ERR_VM_BUSY (never queued), and a hard stop the only operation
// that may cut short another (a graceful shutdown).
import t from "tap";
import { VmBusy } from "../../src/errors.js";
import { OperationLock, type OperationObserver } from "../../src/vm/operation-lock.js";
import type { VmActionKind } from "../../src/definition/vm-action.js";

/** An operation body the test ends by hand; `signal` is what the lock handed it. */
function gate() {
  let open!: () => void;
  let fail!: (err: unknown) => void;
  const opened = new Promise<void>((res, rej) => {
    open = res;
    fail = rej;
  });
  const g = {
    signal: undefined as AbortSignal | undefined,
    open,
    fail,
    body: async (signal: AbortSignal): Promise<string> => {
      g.signal = signal;
      await opened;
      return "done";
    },
  };
  return g;
}

function recorder(): OperationObserver & { log: string[]; errors: unknown[] } {
  const log: string[] = [];
  const errors: unknown[] = [];
  return {
    log,
    errors,
    started: (name) => void log.push(`started ${name}`),
    ended: (name, err) => {
      log.push(`ended ${name} ${err === undefined ? "ok" : "failed"}`);
      errors.push(err);
    },
  };
}

t.test("a second operation is refused at once while one runs, and runs once it ended", async (t) => {
  const obs = recorder();
  const lock = new OperationLock("web-1", obs);
  const first = gate();
  const running = lock.run("reset", first.body);
  t.equal(lock.current?.name, "reset", "the operation in flight is shown");
  t.match(lock.current?.startedAt, /^\d{4}-\d\d-\d\dT/, "with when it began");

  const refused = await lock.run("pause", async () => "ran").catch((e: unknown) => e);
  t.type(refused, VmBusy);
  t.match(refused, { code: "VMH_ERR_VM_BUSY", status: 409, fields: { vm: "web-1", operation: "reset" } }, "names the VM and what holds it");
  t.equal(lock.current?.name, "reset", "the refusal left the holder alone");
  t.notOk(first.signal?.aborted, "and did not preempt it");

  first.open();
  t.equal(await running, "done", "the first operation's result reaches its caller");
  t.equal(lock.current, undefined, "the lock is free again");
  t.equal(await lock.run("pause", async () => "ran"), "ran", "the next operation now runs");
  t.same(obs.log, ["started reset", "ended reset ok", "started pause", "ended pause ok"], "a refused operation is never reported as begun");
});

t.test("every operation refuses every other except stop over shutdown", async (t) => {
  const names: VmActionKind[] = ["start", "shutdown", "stop", "reset", "pause", "resume", "delete", "migrate", "change-cdrom", "add-disk", "qmp", "adopt"];
  const allowed: string[] = [];
  const notBusy: string[] = [];
  for (const holder of names) {
    for (const second of names) {
      const lock = new OperationLock("vm");
      const g = gate();
      const held = lock.run(holder, g.body);
      // Settled into a value at once, so a refusal is never an unhandled rejection.
      const attempt = lock.run(second, async () => "ran").then((v) => v, (e: unknown) => e);
      if (g.signal?.aborted) allowed.push(`${second} over ${holder}`);
      g.open();
      await held;
      const outcome = await attempt;
      if (!(outcome instanceof VmBusy) && !g.signal?.aborted) notBusy.push(`${second} while ${holder} runs`);
    }
  }
  t.same(notBusy, [], "every refusal is VMH_ERR_VM_BUSY");
  t.same(allowed, ["stop over shutdown"], "only a stop preempts, and only a shutdown");
});

t.test("a stop preempts a shutdown: the shutdown is told, ends, and then the stop runs", async (t) => {
  const obs = recorder();
  const lock = new OperationLock("web-1", obs);
  const order: string[] = [];
  const shutdown = lock.run("shutdown", async (signal) => {
    await new Promise<void>((res) => signal.addEventListener("abort", () => res(), { once: true }));
    order.push("shutdown saw the abort");
    await new Promise((res) => setTimeout(res, 20));
    order.push("shutdown finished");
    return "gave up waiting";
  });
  const stop = lock.run("stop", async (signal) => {
    order.push("stop runs");
    t.notOk(signal.aborted, "the stop gets a signal of its own");
    return "stopped";
  });
  t.equal(await shutdown, "gave up waiting", "the shutdown settles normally: it is its own code that gives up");
  t.equal(await stop, "stopped");
  t.same(order, ["shutdown saw the abort", "shutdown finished", "stop runs"], "the stop waits for the shutdown to finish");
  t.same(obs.log, ["started shutdown", "ended shutdown ok", "started stop", "ended stop ok"]);
});

t.test("a shutdown that fails on preemption still lets the stop run", async (t) => {
  const lock = new OperationLock("web-1");
  const shutdown = lock.run("shutdown", async (signal) => {
    await new Promise<void>((res) => signal.addEventListener("abort", () => res(), { once: true }));
    throw new Error("aborted");
  });
  const stop = lock.run("stop", async () => "stopped");
  await t.rejects(shutdown, /aborted/);
  t.equal(await stop, "stopped");
});

t.test("two stops racing for one shutdown: one runs, the other is busy", async (t) => {
  const lock = new OperationLock("web-1");
  const shutdown = gate();
  const held = lock.run("shutdown", shutdown.body);
  const stopBody = gate();
  const a = lock.run("stop", stopBody.body);
  const b = lock.run("stop", async () => "second");
  shutdown.open();
  await held;
  await t.rejects(b, { code: "VMH_ERR_VM_BUSY", fields: { operation: "stop" } }, "the later one finds the first stop holding the lock");
  t.equal(lock.current?.name, "stop");
  stopBody.open();
  t.equal(await a, "done");
});

t.test("a failed operation frees the lock and reports its error", async (t) => {
  const obs = recorder();
  const lock = new OperationLock("web-1", obs);
  const boom = new Error("qemu refused");
  await t.rejects(lock.run("start", async () => Promise.reject(boom)), boom, "the caller gets the operation's own error");
  t.equal(lock.current, undefined);
  t.equal(obs.errors[0], boom, "the observer gets it too");
  // A rejection without a reason is still a failure to the observer.
  await t.rejects(lock.run("start", async () => Promise.reject(undefined)));
  t.same(obs.log.slice(-1), ["ended start failed"], "rejected with undefined: still reported as failed");
  t.equal(await lock.run("start", async () => 1), 1, "and the lock is free");
});
