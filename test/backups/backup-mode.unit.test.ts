// The decision full or incremental, for every reason a dirty bitmap cannot be trusted.
import t from "tap";
import { decideMode, type BitmapState } from "../../src/vm/backups/backup-mode.js";
import type { BackupEntry, BackupRecord } from "../../src/vm/backups/backup-record.js";

const entry = (id: string, image = "disks/a.qcow2"): BackupEntry => ({
  id,
  disk: "a",
  mode: "full",
  target: `${id}.qcow2`,
  file: `/pool/${id}.qcow2`,
  createdAt: "2026-01-01T00:00:00Z",
  bytes: 1,
  checkpoint: { image, bitmap: "vmh-backup" },
});
const good: BitmapState = { present: true, inconsistent: false, recording: true };
const facts = (over: Partial<{ bitmap: BitmapState; topImage: string; parentExists: () => boolean }> = {}) => ({
  bitmap: good,
  topImage: "disks/a.qcow2",
  parentExists: () => true,
  ...over,
});
const rec = (backups: BackupEntry[], pending: Record<string, string> = {}): BackupRecord => ({ backups, pending });
const inc = { mode: "incremental" as const };

t.equal(decideMode({ mode: "full" }, rec([entry("b1")]), "a", facts()).mode, "full", "full when asked");
const ok = decideMode(inc, rec([entry("b1"), entry("b2")]), "a", facts());
t.same([ok.mode, ok.parent?.id], ["incremental", "b2"], "incremental on the latest backup");
const reasons: [string, ReturnType<typeof decideMode>][] = [
  ["no earlier", decideMode(inc, rec([]), "a", facts())],
  ["cut short", decideMode(inc, rec([entry("b1")], { a: "b2" }), "a", facts())],
  ["no backup nope", decideMode({ mode: "incremental", since: "nope" }, rec([entry("b1")]), "a", facts())],
  ["latest backup b2", decideMode({ mode: "incremental", since: "b1" }, rec([entry("b1"), entry("b2")]), "a", facts())],
  ["chain changed", decideMode(inc, rec([entry("b1")]), "a", facts({ topImage: "snapshots/a.1.qcow2" }))],
  ["no dirty bitmap", decideMode(inc, rec([entry("b1")]), "a", facts({ bitmap: { ...good, present: false } }))],
  ["inconsistent", decideMode(inc, rec([entry("b1")]), "a", facts({ bitmap: { ...good, inconsistent: true } }))],
  ["not recording", decideMode(inc, rec([entry("b1")]), "a", facts({ bitmap: { ...good, recording: false } }))],
  ["is gone", decideMode(inc, rec([entry("b1")]), "a", facts({ parentExists: () => false }))],
];
for (const [why, d] of reasons) {
  t.equal(d.mode, "full", `full: ${why}`);
  t.match(d.reason, why);
}
