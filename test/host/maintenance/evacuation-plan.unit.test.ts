// The evacuation's placement with the hosts' figures given: each VM to the
// destination with the most room left (counting what this evacuation already sends
// there), largest VMs first, those that cannot move listed with why; and how many
// start migrating at once.
import t from "tap";
import { countItems, evacuationOutcome, nextToMigrate, placeVms, type EvacuationItem } from "../../../src/host/maintenance/evacuation-plan.js";
import { roomOf } from "../../../src/host/maintenance/evacuation-destinations.js";

const dest = (id: string, roomMiB: number) => ({ id, url: `http://${id}:8600`, roomMiB });
const where = (items: EvacuationItem[]) => Object.fromEntries(items.map((i) => [i.vm, i.destination ?? `(${i.state})`]));

t.test("most room first, counting what was already sent", async (t) => {
  const vms = [1, 2, 3].map((n) => ({ name: `vm${n}`, memoryMiB: 1024 }));
  // b has 1536 MiB more: two VMs fit there before c has more room left.
  const items = placeVms(vms, [dest("c", 10_000 - 1536), dest("b", 10_000)]);
  t.same(where(items), { vm1: "b", vm2: "b", vm3: "c" });
  t.ok(items.every((i) => i.state === "pending"));
  t.equal(items[0]!.url, "http://b:8600");

  // Without the accounting every VM would go to b.
  const even = placeVms(vms, [dest("b", 4096), dest("c", 4096)]);
  t.same(where(even), { vm1: "b", vm2: "c", vm3: "b" }, "equal room alternates; ties go to the first listed");
});

t.test("largest first, so a big VM is not crowded out by small ones", async (t) => {
  const vms = [
    { name: "small1", memoryMiB: 512 },
    { name: "big", memoryMiB: 2048 },
    { name: "small2", memoryMiB: 512 },
  ];
  const items = placeVms(vms, [dest("a", 2048), dest("b", 1024)]);
  t.same(items.map((i) => i.vm), ["big", "small1", "small2"], "ordered by memory, then name");
  t.same(where(items), { big: "a", small1: "b", small2: "b" });
});

t.test("the VMs that cannot move, each with why", async (t) => {
  const items = placeVms(
    [
      { name: "paused", memoryMiB: 128, unmovable: "paused: only a running guest is live-migrated" },
      { name: "huge", memoryMiB: 8192 },
      { name: "fits", memoryMiB: 512 },
    ],
    [dest("a", 1000), dest("b", 600)],
  );
  const by = Object.fromEntries(items.map((i) => [i.vm, i]));
  t.equal(by.paused!.state, "skipped");
  t.match(by.paused!.reason, /paused/);
  t.equal(by.huge!.state, "skipped");
  t.match(by.huge!.reason, /no destination has room: it needs 8192 MiB, the most any has left is 1000 MiB \(a\)/);
  t.equal(by.fits!.destination, "a", "a VM that cannot move takes no room");
  const none = placeVms([{ name: "x", memoryMiB: 1 }], []);
  t.equal(none[0]!.state, "skipped");
  t.match(none[0]!.reason, /no destination host/);
});

t.test("N at a time", async (t) => {
  const items = placeVms(["a", "b", "c", "d"].map((name) => ({ name, memoryMiB: 1 })), [dest("x", 100)]);
  t.same(nextToMigrate(items, 2).map((i) => i.vm), ["a", "b"]);
  items[0]!.state = "migrating";
  t.same(nextToMigrate(items, 2).map((i) => i.vm), ["b"], "one slot left while one migrates");
  items[1]!.state = "migrating";
  t.same(nextToMigrate(items, 2), [], "none while two migrate");
  items[0]!.state = "done";
  t.same(nextToMigrate(items, 2).map((i) => i.vm), ["c"]);
  t.same(nextToMigrate(items, 1), [], "parallel 1: none beside the one migrating");
  t.same(countItems(items), { total: 4, pending: 2, migrating: 1, done: 1, failed: 0, skipped: 0 });
  t.equal(evacuationOutcome(items), "incomplete");
  for (const i of items) i.state = "done";
  t.equal(evacuationOutcome(items), "succeeded");
});

t.test("a host's room: available less what it keeps", async (t) => {
  const MiB = 1024 * 1024;
  t.equal(roomOf({ memory: { availableBytes: 4096 * MiB, reservedBytes: 1024 * MiB } }), 3072);
  t.equal(roomOf({ memory: { availableBytes: 512 * MiB, reservedBytes: 1024 * MiB } }), 0, "never negative");
  t.equal(roomOf({ memory: { availableBytes: 2048 * MiB } }), 2048, "a host that does not say what it keeps");
  t.equal(roomOf({}), 0, "a host that says nothing has no room");
});
