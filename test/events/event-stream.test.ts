// GET /v1/events as an SSE client sees it: a VM's states in order with rising ids,
// an exact resume after a disconnect, the ?vm= filter, and a client that never
// reads being dropped while the daemon answers others promptly; every event any of
// these clients got matches the event catalogue.
import http from "node:http";
import t from "tap";
import { defineGuestVm, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { checkHeldEvents, eventProblems } from "../helpers/event-check.js";

interface SseEvent {
  id?: number;
  event: string;
  data: { id?: number; type: string; vm?: string; data: Record<string, any> };
}

interface SseStream {
  events: SseEvent[];
  res: http.IncomingMessage;
  /** Resolves with the first event (from the start of the stream) that `ok` accepts. */
  until(ok: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  ended: Promise<void>;
  close(): void;
}

function connect(d: TestDaemon, query = "", headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: d.socket, path: `/v1/events${query}`, headers, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      const events: SseEvent[] = [];
      const waiters = new Set<() => void>();
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const f: Record<string, string> = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const i = line.indexOf(":");
            f[line.slice(0, i)] = line.slice(i + 1).trimStart();
          }
          if (!f.event) continue;
          events.push({ ...(f.id ? { id: Number(f.id) } : {}), event: f.event, data: JSON.parse(f.data!) });
        }
        for (const w of waiters) w();
      });
      const ended = new Promise<void>((r) => res.once("close", () => r()));
      const until = (ok: (e: SseEvent) => boolean, timeoutMs = 60_000): Promise<SseEvent> =>
        new Promise((res2, rej2) => {
          const check = (): void => {
            const hit = events.find(ok);
            if (hit) {
              waiters.delete(check);
              clearTimeout(timer);
              res2(hit);
            }
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            rej2(new Error(`no matching event within ${timeoutMs} ms; saw ${events.map((e) => e.event).join(", ")}`));
          }, timeoutMs);
          waiters.add(check);
          check();
        });
      resolve({ events, res, until, ended, close: () => req.destroy() });
    });
    req.on("error", reject);
    req.end();
  });
}

const states = (s: SseStream, vm: string): string[] =>
  s.events.filter((e) => e.event === "vm.state" && e.data.vm === vm).map((e) => e.data.data.state as string);

t.test("event stream: states, resume, filter, slow client", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "ev1");
  await defineGuestVm(d, "ev2");

  t.equal((await d.api.request("GET", "/v1/events?vm=Not_A_Name")).status, 400, "a bad VM name is refused");
  t.equal((await d.api.request("GET", "/v1/events?bogus=1")).status, 400, "an unknown query field is refused");

  const all = await connect(d);
  const only1 = await connect(d, "?vm=ev1");
  t.match(all.res.headers["content-type"], /^text\/event-stream/);

  await d.api.json("POST", "/v1/vms/ev1/start");
  await d.api.json("POST", "/v1/vms/ev2/start");
  await d.api.json("POST", "/v1/vms/ev1/stop");
  await all.until((e) => e.event === "vm.state" && e.data.vm === "ev1" && e.data.data.state === "stopped");
  await all.until((e) => e.event === "operation.ended" && e.data.vm === "ev1" && e.data.data.operation === "stop");
  t.same(states(all, "ev1"), ["starting", "running", "shutting-down", "stopped"], "ev1 went starting → running → stopped");
  const stopped = all.events.find((e) => e.event === "vm.state" && e.data.data.state === "stopped")!;
  t.equal(stopped.data.data.reason, "host-stop", "the stop says why");
  t.equal(stopped.data.data.lastExit.reason, "host-stop", "with how qemu exited");
  t.equal(all.events.find((e) => e.event === "vm.state" && e.data.data.state === "running")!.data.data.reason, "start");
  const started = all.events.find((e) => e.event === "operation.started" && e.data.data.operation === "start");
  const ended = all.events.find((e) => e.event === "operation.ended" && e.data.data.operation === "start");
  t.ok(started && ended && ended.data.data.result === "ok", "operations are announced with their result");
  const ids = all.events.map((e) => e.id!);
  t.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), "ids strictly increase");
  t.ok(all.events.every((e) => e.id === e.data.id), "the SSE id is the event's id");
  // From the daemon's start: its own events, the VMs' creation, a run with qemu's events.
  await checkHeldEvents(t, d, ["daemon.started", "daemon.adopted", "vm.created", "vm.state", "operation.started", "operation.ended", "qemu.SHUTDOWN"]);

  await only1.until((e) => e.event === "operation.ended" && e.data.data.operation === "stop");
  t.ok(only1.events.length > 0 && only1.events.every((e) => e.data.vm === "ev1"), "?vm= shows only that VM");
  t.ok(all.events.some((e) => e.data.vm === "ev2"), "the unfiltered stream shows the other VM");
  only1.close();

  // Resume: disconnect, change things, reconnect after the last id seen.
  const lastSeen = all.events.at(-1)!.id!;
  all.close();
  await all.ended;
  await d.api.json("POST", "/v1/vms/ev2/pause");
  await d.api.json("POST", "/v1/vms/ev2/resume");
  await d.api.json("POST", "/v1/vms/ev2/stop");
  // A witness of everything published so far, to compare the resumed stream with.
  const witness = await connect(d, "?since=0");
  const lastNow = (await witness.until((e) => e.event === "operation.ended" && e.data.data.operation === "stop" && e.data.vm === "ev2")).id!;
  const missed = witness.events.filter((e) => e.id! > lastSeen && e.id! <= lastNow).map((e) => e.id);
  witness.close();
  t.same(missed, Array.from({ length: lastNow - lastSeen }, (_, i) => lastSeen + 1 + i), "the ring holds every missed id");

  const resumed = await connect(d, "?since=1", { "last-event-id": String(lastSeen) });
  await resumed.until((e) => e.id === lastNow);
  t.same(resumed.events.map((e) => e.id), missed, "exactly the missed events, no gap, no duplicate (Last-Event-ID wins over since)");
  t.same(states(resumed, "ev2"), ["paused", "running", "shutting-down", "stopped"]);
  // Live events follow the replay without a duplicate.
  await d.api.json("POST", "/v1/vms/ev1/start");
  await resumed.until((e) => e.event === "operation.ended" && e.data.data.operation === "start" && e.id! > lastNow);
  const rids = resumed.events.map((e) => e.id!);
  t.same(rids, Array.from({ length: rids.length }, (_, i) => lastSeen + 1 + i), "replay and live ones join without gap or duplicate");
  resumed.close();

  const future = await connect(d, "", { "last-event-id": "999999" });
  await future.until((e) => e.event === "events.lost");
  t.equal(future.events[0]!.event, "events.lost", "an id from another run is announced as lost first");
  future.close();

  // A client that never reads: its socket is paused while events pour out.
  const slow = await connect(d);
  slow.res.pause();
  // A reader that keeps up counts what is published: past the slow one's bound (1,000
  // queued) plus what the sockets' buffers absorb, it must have been dropped.
  const counter = await connect(d);
  const started2 = Date.now();
  let worstMs = 0;
  let cycles = 0;
  while (Date.now() - started2 < 20_000 && cycles < 400) {
    await d.api.json("POST", "/v1/vms/ev1/pause");
    await d.api.json("POST", "/v1/vms/ev1/resume");
    cycles++;
    const t0 = Date.now();
    const h = await d.api.request("GET", "/healthz", undefined, 5000);
    worstMs = Math.max(worstMs, Date.now() - t0);
    if (h.status !== 200) t.fail(`healthz answered ${h.status}`);
    if (counter.events.length > 2200) break;
  }
  t.ok(counter.events.length > 2200, `enough events to overflow the slow client (${counter.events.length})`);
  t.ok(counter.events.every((e, i) => i === 0 || e.id === counter.events[i - 1]!.id! + 1), "the reader that keeps up missed nothing");
  counter.close();
  t.ok(worstMs < 1000, `the daemon answered others promptly throughout (worst ${worstMs} ms, ${cycles} cycles)`);
  slow.res.resume();
  await Promise.race([slow.ended, new Promise((r) => setTimeout(r, 20_000).unref())]);
  const last = slow.events.at(-1)!;
  t.equal(last.event, "events.dropped", "the slow client's last event says it was dropped");
  t.equal(last.data.data.afterId, slow.events.at(-2)!.id, "naming the last id it got");
  t.ok(slow.res.complete || slow.res.destroyed, `and the stream ended (${slow.events.length} events)`);
  // It may resume from there.
  const again = await connect(d, "", { "last-event-id": String(last.data.data.afterId) });
  await again.until((e) => e.id === last.data.data.afterId + 1);
  again.close();

  const received = [all, only1, witness, resumed, future, slow, counter, again].flatMap((s) => s.events);
  const problems = received.flatMap((e) => eventProblems({ ...(e.id !== undefined ? { sseId: e.id } : {}), sseEvent: e.event, body: e.data }));
  t.same(problems, [], `all ${received.length} events received match the catalogue`);
  t.ok(received.some((e) => e.event === "qemu.STOP") && received.some((e) => e.event === "events.lost") && received.some((e) => e.event === "events.dropped"),
    "among them qemu.STOP, events.lost and events.dropped");
  t.equal((await d.api.request("DELETE", "/v1/vms/ev2")).status, 204);
  await checkHeldEvents(t, d, ["vm.deleted"]);
});
