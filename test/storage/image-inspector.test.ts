// The image inspector on images made with qemu-img in a temp pool, each playing
// a hostile image: backing files and data files outside the pool, unrecorded
// backing formats, protocols, deep and looping chains; and the open-at-use
// functions against a directory swapped for a symlink and a hard link.
import { execFileSync } from "node:child_process";
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { PathOutsidePool, UnsafeImage, ValidationFailed } from "../../src/errors.js";
import { giveToQemu } from "../../src/qemu/qemu-files.js";
import { ImageInspector } from "../../src/storage/image-inspector.js";
import { createInPool, removeIfSame } from "../../src/storage/pool-files.js";
import { parseQcow2Header, Qcow2HeaderError } from "../../src/storage/qcow2-header.js";
import { chainNode, QemuImg } from "../../src/storage/qemu-img.js";
import { StoragePools } from "../../src/storage/storage-pools.js";
import { sourceFormatOf } from "../../src/vm/devices/disk-sources.js";

const img = (...args: string[]): void => void execFileSync("qemu-img", args, { stdio: ["ignore", "ignore", "pipe"] });

async function setup(t: Test): Promise<{ pool: string; outside: string; pools: StoragePools; inspector: ImageInspector }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-insp-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const pool = path.join(root, "pool");
  const outside = path.join(root, "outside");
  await mkdir(pool);
  await mkdir(outside);
  const pools = new StoragePools([{ name: "images", dir: pool }]);
  return { pool, outside, pools, inspector: new ImageInspector(pools) };
}

async function refusal(p: Promise<unknown>): Promise<UnsafeImage> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof UnsafeImage)) throw new Error(`expected UnsafeImage, got ${String(err)}`);
  return err;
}

t.test("backing files and data files must stay inside the pools", async (t) => {
  const { pool, outside, inspector } = await setup(t);
  const secret = path.join(outside, "secret");
  await writeFile(secret, "VMH-SECRET\n".repeat(1000));
  const evil = path.join(pool, "evil.qcow2");
  img("create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", evil);
  const e = await refusal(inspector.inspect(evil, "qcow2", "disks.0.importImage", "disks.0.sourceFormat"));
  t.equal(e.fields.field, "disks.0.importImage", "the refusal names the field");
  t.match(String(e.fields.reason), /backing file .* outside every storage pool/, "and the reason");

  const etc = path.join(pool, "etc.qcow2");
  img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/hostname", "-F", "raw", etc, "1M");
  t.match((await refusal(inspector.inspect(etc, "qcow2", "f", "ff"))).fields.reason, /outside every storage pool/);

  // A relative name that climbs out of the pool.
  const rel = path.join(pool, "rel.qcow2");
  img("create", "-q", "-f", "qcow2", "-u", "-b", "../outside/secret", "-F", "raw", rel, "1M");
  t.match((await refusal(inspector.inspect(rel, "qcow2", "f", "ff"))).fields.reason, /outside every storage pool/);

  // A symlink inside the pool that points out.
  await symlink(secret, path.join(pool, "looks-local.raw"));
  const viaLink = path.join(pool, "via-link.qcow2");
  img("create", "-q", "-f", "qcow2", "-u", "-b", "looks-local.raw", "-F", "raw", viaLink, "1M");
  t.match((await refusal(inspector.inspect(viaLink, "qcow2", "f", "ff"))).fields.reason, /outside every storage pool/);

  const proto = path.join(pool, "proto.qcow2");
  img("create", "-q", "-f", "qcow2", "-u", "-b", `json:{"driver":"file","filename":"${secret}"}`, "-F", "raw", proto, "1M");
  t.match((await refusal(inspector.inspect(proto, "qcow2", "f", "ff"))).fields.reason, /names a protocol/);

  // Creating an image with a data file writes that file: the outside one here is a throw-away.
  const dataOut = path.join(outside, "data.bin");
  const df = path.join(pool, "df.qcow2");
  img("create", "-q", "-f", "qcow2", "-o", `data_file=${dataOut},data_file_raw=on`, df, "1M");
  t.match((await refusal(inspector.inspect(df, "qcow2", "f", "ff"))).fields.reason, /data file .* outside every storage pool/);
  const dfIn = path.join(pool, "df-in.qcow2");
  img("create", "-q", "-f", "qcow2", "-o", `data_file=${path.join(pool, "df-in.data")}`, dfIn, "1M");
  const ok = await inspector.inspect(dfIn, "qcow2", "f", "ff");
  t.equal(ok.chain[0]!.dataFile, path.join(pool, "df-in.data"), "a data file inside the pool is allowed, and pinned");
  // qemu takes a relative data file name from its own working directory, not the image's.
  const dfRel = path.join(pool, "df-rel.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "data_file=df-rel.data", dfRel, "1M"], { cwd: pool });
  t.match((await refusal(inspector.inspect(dfRel, "qcow2", "f", "ff"))).fields.reason, /absolute path/, "a relative data file name is refused");
});

t.test("the backing format must be recorded; chains are bounded and may not loop", async (t) => {
  const { pool, inspector } = await setup(t);
  const base = path.join(pool, "base.raw");
  img("create", "-q", "-f", "raw", base, "1M");
  const noFmt = path.join(pool, "nofmt.qcow2");
  img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", noFmt);
  // Turn the backing-format extension into one qemu ignores: the format is then unrecorded.
  const buf = await readFile(noFmt);
  const at = buf.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  t.ok(at > 0, "the image had a backing format extension");
  buf.writeUInt32BE(0x0000abcd, at);
  await writeFile(noFmt, buf);
  t.equal(parseQcow2Header(buf).backingFormat, undefined);
  t.match((await refusal(inspector.inspect(noFmt, "qcow2", "f", "ff"))).fields.reason, /does not record its backing file's format/);

  // base.raw <- o1 <- ... <- o9: nine backing files below the top.
  let below = "base.raw";
  let fmt = "raw";
  for (let i = 1; i <= 9; i++) {
    img("create", "-q", "-f", "qcow2", "-b", below, "-F", fmt, path.join(pool, `o${i}.qcow2`));
    below = `o${i}.qcow2`;
    fmt = "qcow2";
  }
  const eight = await inspector.inspect(path.join(pool, "o8.qcow2"), "qcow2", "f", "ff");
  t.equal(eight.chain.length, 9, "eight backing files below the top are accepted");
  t.same(eight.chain.map((l) => l.format), [...Array(8).fill("qcow2"), "raw"], "each with its recorded format");
  t.equal(eight.virtualSize, 1024 * 1024);
  t.match((await refusal(inspector.inspect(path.join(pool, "o9.qcow2"), "qcow2", "f", "ff"))).fields.reason, /deeper than 8/);

  const a = path.join(pool, "a.qcow2");
  const b = path.join(pool, "b.qcow2");
  img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", b);
  img("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a);
  img("rebase", "-q", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b);
  t.match((await refusal(inspector.inspect(a, "qcow2", "f", "ff"))).fields.reason, /loops/);

  // A backing file whose overlay says qcow2 but that is not.
  const liar = path.join(pool, "liar.qcow2");
  img("create", "-q", "-f", "qcow2", "-u", "-b", "base.raw", "-F", "qcow2", liar, "1M");
  t.match((await refusal(inspector.inspect(liar, "qcow2", "f", "ff"))).fields.reason, /not the qcow2 image/);
});

t.test("a declared format is what the file is opened as", async (t) => {
  const { pool, outside, inspector } = await setup(t);
  await writeFile(path.join(outside, "secret"), "VMH-SECRET\n");
  const hdr = path.join(pool, "header.img");
  img("create", "-q", "-f", "qcow2", "-b", path.join(outside, "secret"), "-F", "raw", hdr);
  const asRaw = await inspector.inspect(hdr, "raw", "disks.0.importImage", "disks.0.sourceFormat");
  t.same(asRaw.chain, [{ file: hdr, format: "raw" }], "declared raw: one raw image, nothing it names is looked at");
  t.equal(asRaw.virtualSize, (await stat(hdr)).size, "its size is the file's");
  const plain = path.join(pool, "plain.qcow2");
  await writeFile(plain, Buffer.alloc(4096));
  const err = await inspector.inspect(plain, "qcow2", "disks.0.image", "disks.0.format").catch((e: unknown) => e);
  t.ok(err instanceof ValidationFailed, "declared qcow2 but is not: a validation error");
  t.match((err as ValidationFailed).fields, { field: "disks.0.format" });

  t.equal(sourceFormatOf({}, "a/b.qcow2", "s"), "qcow2");
  t.equal(sourceFormatOf({}, "b.IMG", "s"), "raw");
  t.equal(sourceFormatOf({}, "b.raw", "s"), "raw");
  t.equal(sourceFormatOf({ sourceFormat: "raw" }, "b.qcow2", "s"), "raw", "sourceFormat wins over the name");
  let named: unknown;
  try {
    sourceFormatOf({}, "disk.vmdk", "disks.2.sourceFormat");
  } catch (e) {
    named = e;
  }
  t.match(named, { code: "VMH_ERR_VALIDATION", fields: { field: "disks.2.sourceFormat" } }, "another name needs sourceFormat");
  t.throws(() => sourceFormatOf({}, "noext", "s"), ValidationFailed);
});

t.test("header parser refuses what it cannot read", async (t) => {
  t.throws(() => parseQcow2Header(Buffer.alloc(100)), /not a qcow2 image/);
  t.ok(new Qcow2HeaderError("x") instanceof Error);
  const h = Buffer.alloc(512);
  h.writeUInt32BE(0x514649fb, 0);
  h.writeUInt32BE(3, 4);
  h.writeUInt32BE(16, 20);
  h.writeUInt32BE(104, 100);
  h.writeBigUInt64BE(4000n, 8); // a backing name beyond the bytes read
  h.writeUInt32BE(10, 16);
  t.throws(() => parseQcow2Header(h), /outside the image's first cluster/);
  h.writeBigUInt64BE(0n, 8);
  h.writeUInt32BE(0x44415441, 104);
  h.writeUInt32BE(5000, 108);
  t.throws(() => parseQcow2Header(h), /overruns/);
  t.same(
    chainNode([{ file: "/p/a.qcow2", format: "qcow2" }, { file: "/p/b,c.raw", format: "raw" }]),
    { driver: "qcow2", file: { driver: "file", filename: "/p/a.qcow2" }, backing: { driver: "raw", file: { driver: "file", filename: "/p/b,c.raw" } } },
  );
  t.same(chainNode([{ file: "/p/a.qcow2", format: "qcow2" }]).backing, null, "the chain's end has backing null");
});

t.test("a directory swapped for a symlink between request and use is not followed", async (t) => {
  const { pool, outside, pools } = await setup(t);
  await mkdir(path.join(pool, "backups"));
  const resolved = await pools.resolveNewFile("backups/web.qcow2", "target");
  t.equal(resolved.absolute, path.join(pool, "backups/web.qcow2"), "at request time the target is in the pool");
  await rename(path.join(pool, "backups"), path.join(pool, "backups.old"));
  await symlink(outside, path.join(pool, "backups"));
  const err = await createInPool(pools, resolved.absolute, "target").catch((e: unknown) => e);
  t.ok(err instanceof PathOutsidePool, "at use the swapped directory is caught");
  t.same(await readdir(outside), [], "and nothing was made outside");

  await rm(path.join(pool, "backups"));
  await rename(path.join(pool, "backups.old"), path.join(pool, "backups"));
  await symlink(path.join(outside, "x"), path.join(pool, "backups/dangling.qcow2"));
  t.match(await createInPool(pools, path.join(pool, "backups/dangling.qcow2"), "target").catch((e: unknown) => e), { code: "VMH_ERR_FILE_EXISTS" }, "a dangling link is never created through");
  t.same(await readdir(outside), []);

  const made = await createInPool(pools, resolved.absolute, "target");
  await made.handle.close();
  t.ok((await stat(resolved.absolute)).isFile(), "an unswapped target is created");
  await rename(resolved.absolute, path.join(pool, "moved"));
  await writeFile(resolved.absolute, "someone else's");
  await removeIfSame(resolved.absolute, made);
  t.equal(await readFile(resolved.absolute, "utf8"), "someone else's", "a clean-up leaves a file that is not the one it made");
});

t.test("a file handed to qemu is changed through a descriptor: no symlink, no hard link", async (t) => {
  const { pool, outside } = await setup(t);
  const id = { uid: 4242420, gid: 4242420 };
  // The unprivileged uid must pass through the directories above.
  await chmod(path.dirname(pool), 0o711);
  await chmod(pool, 0o711);
  const victim = path.join(outside, "victim.raw");
  await writeFile(victim, "host file");
  const linked = path.join(pool, "linked.raw");
  await link(victim, linked);
  const err = await giveToQemu(linked, id, undefined, () => "disks.0.image").catch((e: unknown) => e);
  t.ok(err instanceof UnsafeImage, "a file with another hard link is refused");
  t.match((err as UnsafeImage).fields, { field: "disks.0.image", reason: /2 hard links/ });
  t.equal((await stat(victim)).uid, 0, "the outside file's owner is unchanged");

  const swapped = path.join(pool, "swapped.raw");
  await symlink(victim, swapped);
  t.ok((await giveToQemu(swapped, id).catch((e: unknown) => e)) instanceof UnsafeImage, "a symlink in the file's place is refused");
  t.equal((await stat(victim)).uid, 0, "and not followed");
  t.ok((await lstat(swapped)).isSymbolicLink());

  const own = path.join(pool, "own.raw");
  await writeFile(own, "mine");
  await giveToQemu(own, id);
  const st = await stat(own);
  t.ok(st.uid === id.uid && (st.mode & 0o777) === 0o600, "a plain file is handed over");
});

t.test("qemu-img reads a guest-written file as the VM's uid, not as root", async (t) => {
  const { pool } = await setup(t);
  await chmod(path.dirname(pool), 0o711);
  await chmod(pool, 0o711);
  const id = { uid: 4242421, gid: 4242421 };
  const disk = path.join(pool, "guest.raw");
  img("create", "-q", "-f", "raw", disk, "3M");
  await chmod(disk, 0o600);
  const qemuImg = new QemuImg();
  t.equal((await qemuImg.info(disk, "raw")).virtualSize, 3 * 1024 * 1024, "root reads it");
  const err = await qemuImg.info(disk, "raw", id).catch((e: unknown) => e);
  t.match(err, { code: "VMH_ERR_STORAGE", message: /Permission denied/ }, "the VM's uid cannot read root's 0600 file: qemu-img did not run as root");
  await chown(disk, id.uid, id.gid);
  t.equal((await qemuImg.info(disk, "raw", id)).virtualSize, 3 * 1024 * 1024, "but reads the VM's own");
});
