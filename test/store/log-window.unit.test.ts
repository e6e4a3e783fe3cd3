// The rotation arithmetic alone: where a logical offset lands in `.1` and the
// live file, what a rotation does to the layout, and how often the size is looked at.
import t from "tap";
import { afterRotation, logEnd, needsRotation, nextCheckDelayMs, planRead, retainedStart, type LogLayout } from "../../src/store/log-window.js";

// 1000 bytes rotated away, .1 holds [1000, 1400), the live file [1400, 1650).
const l: LogLayout = { currentStart: 1400, rotatedSize: 400, currentSize: 250 };

t.test("a fresh log reads from 0", async (t) => {
  const fresh = { currentStart: 0, rotatedSize: 0, currentSize: 10 };
  t.same(planRead(fresh, 0, 100), { from: 0, skipped: 0, ranges: [{ file: "current", position: 0, length: 10 }], next: 10 });
  t.same(planRead(fresh, 4, 3), { from: 4, skipped: 0, ranges: [{ file: "current", position: 4, length: 3 }], next: 7 });
});

t.test("positions span both files", async (t) => {
  t.equal(retainedStart(l), 1000);
  t.equal(logEnd(l), 1650);
  t.same(planRead(l, 1100, 100).ranges, [{ file: "rotated", position: 100, length: 100 }]);
  t.same(planRead(l, 1350, 100), {
    from: 1350,
    skipped: 0,
    ranges: [
      { file: "rotated", position: 350, length: 50 },
      { file: "current", position: 0, length: 50 },
    ],
    next: 1450,
  });
  t.same(planRead(l, 1500, 1 << 20).ranges, [{ file: "current", position: 100, length: 150 }]);
});

t.test("an offset rotated away reads from the retained start and says how much is gone", async (t) => {
  const p = planRead(l, 10, 50);
  t.equal(p.from, 1000);
  t.equal(p.skipped, 990);
  t.same(p.ranges, [{ file: "rotated", position: 0, length: 50 }]);
  t.equal(p.next, 1050);
});

t.test("an offset at or past the end reads nothing and continues from the end", async (t) => {
  t.same(planRead(l, 1650, 10), { from: 1650, skipped: 0, ranges: [], next: 1650 });
  t.same(planRead(l, 99_999, 10), { from: 1650, skipped: 0, ranges: [], next: 1650 });
});

t.test("a rotation moves the live file's start by what left it", async (t) => {
  // The live file held 250 bytes; 130 of them were dropped, 120 kept in .1 (plus 30 that arrived while copying).
  const after = afterRotation({ ...l, currentSize: 280 }, 280, 150);
  t.same(after, { currentStart: 1680, rotatedSize: 150, currentSize: 0 });
  t.equal(retainedStart(after), 1530);
  // An old offset still means the same byte: 1600 is now at position 70 of .1.
  t.same(planRead(after, 1600, 10).ranges, [{ file: "rotated", position: 70, length: 10 }]);
});

t.test("a .1 larger than the recorded start (a restart mid-rotation) is read from its end back", async (t) => {
  const odd = { currentStart: 100, rotatedSize: 300, currentSize: 5 };
  t.equal(retainedStart(odd), 0);
  t.same(planRead(odd, 0, 10).ranges, [{ file: "rotated", position: 200, length: 10 }]);
});

t.test("rotation past half the cap; the next look comes sooner the faster the log grows", async (t) => {
  t.notOk(needsRotation(512, 1024));
  t.ok(needsRotation(513, 1024));
  t.equal(nextCheckDelayMs(0, 0, 8 << 20), 1000);
  t.equal(nextCheckDelayMs(600, 10, 1024), 20);
  // 256K of room at 1 MB/s: a quarter of the room is 64 ms away.
  t.equal(nextCheckDelayMs(0, 2 * 1024 * 1024, 1024 * 1024), 62);
  t.equal(nextCheckDelayMs(0, 1, 1024 * 1024), 1000);
});
