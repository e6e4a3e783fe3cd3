// Live migration across a network the hosts do not trust: two daemons in two
// network namespaces with mutual TLS move a guest with its disk, and the link
// between them carries none of its RAM or disk in clear; the same migration
// without TLS does. In clear off loopback needs --insecure-migration on both
// hosts, and a destination that names an address other than its own is not
// sent anything.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t, { type Test } from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { consoleFromDisk, startDaemon, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { migrate, sharedGuestPool } from "../helpers/migration.js";
import { startCapture } from "../helpers/packet-capture.js";
import { makeCertDir } from "../helpers/tls-certs.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "migration-tls-test-token-0123456789";
// Below the ephemeral range: no outgoing connection holds one.
const PORT_TLS = 18760;
const PORT_CLEAR = 18761;
const PORT_STRICT = 18762;
const PORT_FAKE = 18763;
// RAM is sent no faster than tcpdump keeps up with on a loaded 2-core machine: a lost packet would prove nothing.
const CAPTURED_MIBPS = 24;

t.test("migration over TLS", { timeout: 280_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const certs = await makeCertDir();
  const ca = await certs.ca("fleet-ca");
  const [certA, certB] = await Promise.all([ca.issue("host-a", { ips: [hosts.a.ip] }), ca.issue("host-b", { ips: [hosts.b.ip] })]);
  const tlsArgs = (c: { cert: string; key: string }) => ["--tls-cert", c.cert, "--tls-key", c.key, "--tls-ca", ca.cert];
  const daemon = (ns: string, ip: string, port: number, ...extra: string[]) =>
    startDaemon({ netns: ns, args: ["--listen", `${ip}:${port}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, ...extra] });
  const started: TestDaemon[] = [];
  // The daemons first, while their namespaces still exist; one that does not end on SIGTERM in time is killed.
  t.teardown(async () => {
    for (const d of started) {
      const ended = await Promise.race([d.cleanup().then(() => true), sleep(30_000).then(() => false)]);
      if (!ended) await d.kill().then(() => d.cleanup());
    }
    hosts.cleanup();
    await certs.cleanup();
  });
  // One after the other: six node processes starting at once on a loaded 2-core machine miss the helper's 30 s.
  const up = async (ns: string, ip: string, port: number, ...extra: string[]): Promise<TestDaemon> => {
    const d = await daemon(ns, ip, port, ...extra);
    started.push(d);
    return d;
  };
  const a = await up(hosts.a.ns, hosts.a.ip, PORT_TLS, ...tlsArgs(certA));
  const b = await up(hosts.b.ns, hosts.b.ip, PORT_TLS, ...tlsArgs(certB));
  const a2 = await up(hosts.a.ns, hosts.a.ip, PORT_CLEAR, "--insecure-migration");
  const b2 = await up(hosts.b.ns, hosts.b.ip, PORT_CLEAR, "--insecure-migration");
  // Plain HTTP on purpose (the helper adds --insecure-listen), but no --insecure-migration.
  const a3 = await up(hosts.a.ns, hosts.a.ip, PORT_STRICT);
  const url = (ip: string, port: number, scheme = "http") => `${scheme}://${ip}:${port}`;

  // A marker in guest RAM (the kernel keeps its command line) and one on its disk.
  const ramMarker = `VMHRAM${randomBytes(8).toString("hex")}`;
  const diskMarker = `VMHDISK${randomBytes(8).toString("hex")}`;
  const bootGuest = async (d: TestDaemon, name: string): Promise<string> => {
    await d.api.json("POST", "/v1/vms", {
      name,
      memoryMiB: 128,
      boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: `${guest.cmdline} vmh.marker=${ramMarker}` },
      // raw: its holes are copied as "zeroes here", not as a gigabyte of zero bytes (a qcow2 disk's
      // preallocated metadata makes every cluster data to the mirror), so tcpdump keeps up.
      disks: [{ name: "data", sizeGiB: 1, format: "raw" }],
    });
    const block = path.join(d.root, `${name}-marker`);
    await writeFile(block, diskMarker.repeat(Math.ceil(4096 / diskMarker.length)).slice(0, 4096));
    execFileSync("qemu-io", ["-f", "raw", "-c", `write -s ${block} 8M 4k`, path.join(d.stateDir, `vms/${name}/disks/data.raw`)], { stdio: "ignore" });
    await d.api.json("POST", `/v1/vms/${name}/start`);
    return (await waitForBoot(d, name, 1)).bootId!;
  };
  // Everything on host A's link but the API (which has its own TLS test): RAM, NBD.
  const capture = (file: string) => startCapture(hosts.a.ns, hosts.a.dev, path.join(certs.dir, file), ["tcp", "and", "not", "port", String(PORT_TLS), "and", "not", "port", String(PORT_CLEAR)]);

  t.test("mutual TLS: the guest and its disk move, and nothing of them crosses the link in clear", async (t) => {
    const bootId = await bootGuest(a, "secret");
    const cap = await capture("tls.pcap");
    const job = await migrate(a, "secret", { destination: url(hosts.b.ip, PORT_TLS, "https"), storage: "copy", bandwidthMiBps: CAPTURED_MIBPS });
    const seen = await cap.stop([ramMarker, diskMarker]);
    t.equal(job.state, "succeeded", `job ${job.state}: ${job.error?.detail ?? ""}`);
    t.match(job.result, { tls: true }, "the job says it went over TLS");
    t.ok(seen.bytes > 4 * 1024 ** 2, `the RAM and disk streams were captured (${seen.bytes} bytes)`);
    t.same(seen.found, [], "neither the guest's RAM marker nor its disk marker is anywhere in the capture");
    const vm = await waitForVm<VmJson>(b, "secret", (v) => v.state === "running" && !v.operation);
    t.ok(vm.pid, "the guest runs on the destination");
    t.equal((await consoleFromDisk(b, "secret")).bootId ?? bootId, bootId, "in the same boot");
    t.equal((await a.api.request("GET", "/v1/vms/secret")).status, 404, "and not on the source");
    // The per-VM copies of the hosts' credentials are gone: no file under either daemon holds a private key.
    for (const [d, key] of [[a, certA.key], [b, certB.key]] as const) {
      const keyText = (await readFile(key, "utf8")).trim();
      t.same(await filesHolding(d.root, keyText), [], `no copy of ${path.basename(key)} is left under the daemon's directories`);
    }
    await t.rejects(stat(path.join(b.runDir, "vms/secret/migration-tls")), { code: "ENOENT" }, "the destination's copy directory is removed");
    await b.api.json("POST", "/v1/vms/secret/stop");
  });

  t.test("the same migration in clear (--insecure-migration on both): the capture holds both markers", async (t) => {
    await bootGuest(a2, "clear");
    const cap = await capture("clear.pcap");
    const job = await migrate(a2, "clear", { destination: url(hosts.b.ip, PORT_CLEAR), storage: "copy", bandwidthMiBps: CAPTURED_MIBPS });
    const seen = await cap.stop([ramMarker, diskMarker]);
    t.equal(job.state, "succeeded", `job ${job.state}: ${job.error?.detail ?? ""}`);
    t.match(job.result, { tls: false });
    t.same(seen.found.sort(), [ramMarker, diskMarker].sort(), "the RAM marker and the disk marker crossed the link in clear");
    t.match(a2.log() + b2.log(), /--insecure-migration: sending guest RAM and disks in clear/, "the source warned");
    t.match(b2.log(), /--insecure-migration: receiving guest RAM and disks in clear/, "the destination warned");
  });

  t.test("in clear without --insecure-migration: refused, the guest runs on", async (t) => {
    const bootId = await bootGuest(a3, "stay");
    const res = await a3.api.request("POST", "/v1/vms/stay/migrate", { destination: url(hosts.b.ip, PORT_CLEAR), storage: "copy" });
    t.equal(res.status, 409, "the source refuses at once");
    const p = JSON.parse(res.body.toString()) as { code: string; detail: string; setting: string };
    t.match(p, { code: "VMH_ERR_INSECURE_MIGRATION", setting: "--insecure-migration", detail: /--insecure-migration/ });
    t.equal((await b2.api.request("GET", "/v1/vms/stay")).status, 404, "the destination was never asked to prepare");
    await stillRunning(t, a3, "stay", bootId);

    // A source that allows it, to a destination that does not: the destination refuses before it prepares anything.
    const job = await migrate(b2, "clear", { destination: url(hosts.a.ip, PORT_STRICT), storage: "copy" });
    t.equal(job.state, "failed");
    t.match(job.error?.detail, /HTTP 409.*VMH_ERR_INSECURE_MIGRATION/, `the destination's refusal: ${job.error?.detail}`);
    t.equal((await a3.api.request("GET", "/v1/vms/clear")).status, 404, "nothing was made on it");
    await waitForVm<VmJson>(b2, "clear", (v) => v.state === "running" && !v.operation);

    // A TLS source to a destination without TLS: refused, never downgraded.
    await bootGuest(b, "tlsonly");
    const down = await migrate(b, "tlsonly", { destination: url(hosts.a.ip, PORT_CLEAR), storage: "copy" });
    t.equal(down.state, "failed");
    t.match(down.error?.detail, /HTTP 409: the source sends over TLS but this host has no TLS for migrations.*VMH_ERR_INSECURE_MIGRATION/, `no downgrade: ${down.error?.detail}`);
    await waitForVm<VmJson>(b, "tlsonly", (v) => v.state === "running" && !v.operation);
  });

  t.test("the destination's NBD server admits only the host that prepared the migration", async (t) => {
    // Host A prepares an incoming VM on B, as a source does, with its certificate and the token.
    const prepared = peerCall(hosts.a.ns, url(hosts.b.ip, PORT_TLS, "https"), "POST", "/v1/incoming", certA, ca.cert, {
      definition: {
        name: "target",
        uuid: randomUUID(),
        createdAt: new Date().toISOString(),
        memoryMiB: 64,
        nics: [],
        disks: [{ name: "data", sizeGiB: 1, format: "raw" }],
      },
      storage: "copy",
      files: {},
      diskSizes: { data: 1024 ** 3 },
      tls: true,
    });
    t.equal(prepared.status, 201, `prepared: ${JSON.stringify(prepared.body)}`);
    const nbd = (prepared.body as { nbd: { host: string; port: number } }).nbd;
    // Another host of the same CA: a valid certificate, not the one that asked.
    const intruder = await ca.issue("intruder", { ips: [hosts.a.ip] });
    const write = (who: { cert: string; key: string }) => nbdWrite(hosts.a.ns, nbd, who, ca.cert, path.join(certs.dir, `nbd-${path.basename(who.cert)}`));
    const refused = await write(intruder);
    t.not(refused.code, 0, "a certificate of the fleet's CA with another name cannot write to the exported disk");
    t.match(refused.out, /authoriz|denied|not allowed|Connection reset|failed/i, `qemu-io: ${refused.out.trim().split("\n").at(-1)}`);
    const admitted = await write(certA);
    t.equal(admitted.code, 0, `the preparing host's certificate can (the refusal above is the authz's): ${admitted.out.trim()}`);
    t.equal(peerCall(hosts.a.ns, url(hosts.b.ip, PORT_TLS, "https"), "DELETE", "/v1/incoming/target", certA, ca.cert).status, 204, "aborted");
  });

  t.test("a destination that answers with another host's address is sent nothing", async (t) => {
    // A host that is not the destination, listening: it must see no connection.
    const decoy = hosts.a.ip.replace(/\.1$/, ".3");
    execFileSync("ip", ["-n", hosts.a.ns, "addr", "add", `${decoy}/24`, "dev", hosts.a.dev]);
    const fake = spawn("ip", ["netns", "exec", hosts.a.ns, process.execPath, "-e", fakeDestination(hosts.a.ip, PORT_FAKE, decoy)], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    t.teardown(() => void fake.kill("SIGKILL"));
    let seen = "";
    fake.stdout!.on("data", (c: Buffer) => (seen += c.toString()));
    await waitFor(() => seen.includes("listening"), 10_000);
    const bootId = (await consoleFromDisk(b2, "clear")).bootId!;
    for (const lie of ["uri", "nbd"]) {
      const job = await migrate(b2, "clear", { destination: url(hosts.a.ip, PORT_FAKE), storage: "copy" });
      t.equal(job.state, "failed", `${lie}: refused`);
      t.equal(job.error?.code, "VMH_ERR_MIGRATION_ADDRESS", `${lie}: ${job.error?.detail}`);
      t.match(job.error?.detail, lie === "uri" ? /answered with uri/ : /answered with nbd.host/);
      await stillRunning(t, b2, "clear", bootId);
    }
    t.match(seen, /DELETE \/v1\/incoming\/clear/, "the source told the destination to drop what it prepared");
    t.notMatch(seen, /decoy connection/, "nothing connected to the address the destination named");
  });
});

/** A request from inside namespace `ns` with a host's certificate and the token (the test process is outside it). */
function peerCall(ns: string, base: string, method: string, urlPath: string, who: { cert: string; key: string }, caFile: string, body?: unknown): { status: number; body: unknown } {
  const script = `
const https = require("https"), fs = require("fs");
const payload = ${JSON.stringify(body === undefined ? "" : JSON.stringify(body))};
const u = new URL(${JSON.stringify(base + urlPath)});
const req = https.request({ host: u.hostname, port: u.port, path: u.pathname, method: ${JSON.stringify(method)}, agent: false,
  ca: fs.readFileSync(${JSON.stringify(caFile)}), cert: fs.readFileSync(${JSON.stringify(who.cert)}), key: fs.readFileSync(${JSON.stringify(who.key)}),
  headers: { authorization: "Bearer ${TOKEN}", ...(payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}) } },
  (res) => { let b = ""; res.on("data", (c) => (b += c)); res.on("end", () => console.log(JSON.stringify({ status: res.statusCode, body: b }))); });
req.on("error", (e) => console.log(JSON.stringify({ status: 0, body: e.message })));
req.end(payload || undefined);`;
  const out = JSON.parse(execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", script], { encoding: "utf8", timeout: 30_000 })) as { status: number; body: string };
  let parsed: unknown = out.body;
  try {
    parsed = JSON.parse(out.body);
  } catch {
    // not JSON
  }
  return { status: out.status, body: parsed };
}

/** qemu-io inside `ns` writing 4 KiB to the NBD export over TLS with `who`'s certificate as the client's. */
async function nbdWrite(ns: string, nbd: { host: string; port: number }, who: { cert: string; key: string }, caFile: string, dir: string): Promise<{ code: number | null; out: string }> {
  const { copyFile, mkdir } = await import("node:fs/promises");
  await mkdir(dir, { recursive: true });
  await copyFile(caFile, path.join(dir, "ca-cert.pem"));
  await copyFile(who.cert, path.join(dir, "client-cert.pem"));
  await copyFile(who.key, path.join(dir, "client-key.pem"));
  const image = `driver=nbd,server.type=inet,server.host=${nbd.host},server.port=${nbd.port},export=data,tls-creds=tls0,tls-hostname=${nbd.host}`;
  const r = spawnSync("ip", ["netns", "exec", ns, "qemu-io", "--object", `tls-creds-x509,id=tls0,dir=${dir},endpoint=client`, "--image-opts", image, "-c", "write -P 0x41 0 4k"], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

async function stillRunning(t: Test, d: TestDaemon, name: string, bootId: string): Promise<void> {
  const vm = await waitForVm<VmJson>(d, name, (v) => v.state === "running" && !v.operation, 30_000);
  t.ok(vm.pid, `${name} still runs on the source`);
  t.equal((await consoleFromDisk(d, name)).bootId, bootId, `${name}: same boot`);
}

/** Files under `dir` whose text contains `needle`. */
async function filesHolding(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    if ((await stat(file)).size > 1024 * 1024) continue;
    if ((await readFile(file, "utf8").catch(() => "")).includes(needle)) found.push(file);
  }
  return found;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A destination daemon that lies (a real one never does): it answers the
 * prepare call with the decoy's address for RAM (the first call) or for NBD
 * (the second), and
 * listens on the decoy to see whether anything connects.
 */
function fakeDestination(ip: string, port: number, decoy: string): string {
  return `
const http = require("http"), net = require("net");
let calls = 0;
net.createServer((s) => { console.log("decoy connection"); s.destroy(); }).listen(10809, ${JSON.stringify(decoy)});
net.createServer((s) => { console.log("decoy connection"); s.destroy(); }).listen(4444, ${JSON.stringify(decoy)});
http.createServer((req, res) => {
  console.log(req.method + " " + req.url);
  req.resume();
  req.on("end", () => {
    if (req.method === "POST" && req.url === "/v1/incoming") {
      calls++;
      const lieUri = calls === 1;
      res.writeHead(201, { "content-type": "application/json" });
      return res.end(JSON.stringify({
        uri: "tcp:" + (lieUri ? ${JSON.stringify(decoy)} : ${JSON.stringify(ip)}) + ":4444",
        nbd: { host: lieUri ? ${JSON.stringify(ip)} : ${JSON.stringify(decoy)}, port: 10809, exports: { data: "data" } },
        migration: "00000000-0000-4000-8000-00000000000" + calls,
      }));
    }
    if (req.method === "DELETE") { res.writeHead(204); return res.end(); }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ state: "aborted" }));
  });
}).listen(${port}, ${JSON.stringify(ip)}, () => console.log("listening"));
`;
}
