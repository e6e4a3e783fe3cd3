// The TCP API over mutual TLS, against a real daemon and a booted guest. The test
// plays the client across the network: without a certificate, with one from
// another CA, without the token, in clear; each is refused and changes nothing.
// Then vmctl, a certificate reload on SIGHUP under an open event stream and a
// running guest, and a rotation of tokens and CAs across a restart.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, copyFile, readFile, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { PeerClient } from "../../src/migration/peer-client.js";
import { freePort } from "../../src/net/free-port.js";
import { TlsFiles } from "../../src/tls/tls-files.js";
import { startEtcd } from "../helpers/etcd.js";
import { installGuest, startDaemon, vmctlJs, waitForBoot, type TestDaemon } from "../helpers/daemon.js";
import { httpsCall, makeCertDir, servedSerial, type HostCert, type TestCa } from "../helpers/tls-certs.js";

const TOKEN_OLD = "rotation-old-token-0123456789";
const TOKEN_NEW = "rotation-new-token-9876543210";
const VM = "tls-guest";

const certs = await makeCertDir();
t.teardown(() => certs.cleanup());
const ca1 = await certs.ca("fleet-ca");
const ca2 = await certs.ca("other-ca");
const serverFirst = await ca1.issue("host-a", { ips: ["127.0.0.1"] }, 0xa1);
const serverSecond = await ca1.issue("host-a", { ips: ["127.0.0.1"] }, 0xa2);
const client1 = await ca1.issue("host-b", { ips: ["127.0.0.1"] });
const client2 = await ca2.issue("host-c", { ips: ["127.0.0.1"] });
// The daemon reads its certificate from these paths; the SIGHUP case replaces their content.
const serverCert = path.join(certs.dir, "server.pem");
const serverKey = path.join(certs.dir, "server.key");
await copyFile(serverFirst.cert, serverCert);
await copyFile(serverFirst.key, serverKey);
const bundle = path.join(certs.dir, "bundle.pem");
await writeFile(bundle, (await readFile(ca1.cert, "utf8")) + (await readFile(ca2.cert, "utf8")));
const tokenFile = async (name: string, token: string): Promise<string> => {
  const f = path.join(certs.dir, name);
  await writeFile(f, `${token}\n`);
  await chmod(f, 0o600);
  return f;
};
const oldTokenFile = await tokenFile("token-old", TOKEN_OLD);
const newTokenFile = await tokenFile("token-new", TOKEN_NEW);

const port = await freePort("127.0.0.1");
// Fleet mode, so that the registry entry other hosts read can be checked too.
const etcd = await startEtcd();
t.teardown(() => etcd.cleanup());
// Mutated for the restart of the rotation case: startDaemon reads it at each (re)start.
const args = ["--listen", `127.0.0.1:${port}`, "--tls-cert", serverCert, "--tls-key", serverKey, "--tls-ca", ca1.cert,
  "--peer-token-file", oldTokenFile, "--peer-token-file", newTokenFile, "--etcd", etcd.url, "--host-id", "tls-host", "--lease-ttl", "5"];
const d: TestDaemon = await startDaemon({ args, exactArgs: true });
t.teardown(() => d.cleanup());

const as = (c: HostCert, ca: TestCa = ca1) => ({ ca: ca.cert, cert: c.cert, key: c.key });
const exists = async (name: string): Promise<boolean> => (await d.api.request("GET", `/v1/vms/${name}`)).status === 200;

function vmctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [vmctlJs, "--url", `https://127.0.0.1:${port}`, ...argv], { timeout: 30_000, env: { PATH: process.env.PATH } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** An event stream over mutual TLS, opened now and held to the SIGHUP case. */
function holdStream(): { opened: Promise<number>; openedAt: number; received: () => string; closed: () => boolean } {
  let streamed = "";
  let closed = false;
  const stream = https.request({
    host: "127.0.0.1", port, path: "/v1/events", agent: false,
    ca: readFileSync(ca1.cert), cert: readFileSync(client1.cert), key: readFileSync(client1.key),
    headers: { accept: "text/event-stream", authorization: `Bearer ${TOKEN_OLD}` },
  });
  const opened = new Promise<number>((resolve, reject) => {
    stream.on("response", (res) => {
      res.on("data", (c: Buffer) => (streamed += c.toString()));
      res.on("close", () => (closed = true));
      resolve(res.statusCode ?? 0);
    });
    stream.on("error", reject);
  });
  stream.end();
  t.teardown(() => void stream.destroy());
  return { opened, openedAt: Date.now(), received: () => streamed, closed: () => closed };
}
const held = holdStream();

const guest = await installGuest(d);
const definition = (name: string) => ({ name, memoryMiB: 128, boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline } });

t.test("refused: no client certificate, another CA's, no token or a wrong one, plain HTTP; nothing changes (the handshake admits a browser for the console routes only)", async (t) => {
  const attempts: [string, Parameters<typeof httpsCall>[3]][] = [
    ["no client certificate", { ca: ca1.cert, token: TOKEN_OLD }],
    ["a certificate from another CA", { ...as(client2, ca1), token: TOKEN_OLD }],
    ["no token", { ...as(client1) }],
    ["a wrong token", { ...as(client1), token: "not-the-token-0123456789" }],
  ];
  for (const [i, [what, o]] of attempts.entries()) {
    const name = `intruder-${i}`;
    const r = await httpsCall(port, "POST", "/v1/vms", { ...o, body: definition(name) });
    t.equal(r.status, 401, `${what}: 401`);
    if (!what.includes("token")) t.match(JSON.parse(r.body ?? "{}"), { field: "certificate" }, `${what}: the problem names the certificate`);
    t.notOk(await exists(name), `${what}: no VM was created`);
  }
  // The server verified against a CA the client does not hold: the client refuses to talk.
  const unverified = await httpsCall(port, "GET", "/v1/vms", { ...as(client1, ca2), token: TOKEN_OLD });
  t.match(unverified.code, /SELF_SIGNED|UNABLE_TO/, "a client checks the server against its CA");
  // Plain HTTP to the TLS port is never served.
  const plain = await new Promise<string>((resolve) => {
    const http = import("node:http");
    void http.then(({ request }) => {
      const req = request({ host: "127.0.0.1", port, method: "POST", path: "/v1/vms", headers: { authorization: `Bearer ${TOKEN_OLD}`, "content-type": "application/json" }, agent: false, timeout: 10_000 }, (res) => resolve(`HTTP ${res.statusCode}`));
      req.on("error", (err) => resolve(err.message));
      req.end(JSON.stringify(definition("intruder-plain")));
    });
  });
  t.notMatch(plain, /^HTTP 2/, `plain HTTP: ${plain}`);
  t.notOk(await exists("intruder-plain"), "plain HTTP: no VM was created");
});

t.test("with the fleet CA's certificate and either token (rotation): the API works over HTTPS", async (t) => {
  const created = await httpsCall(port, "POST", "/v1/vms", { ...as(client1), token: TOKEN_OLD, body: definition(VM) });
  t.equal(created.status, 201, created.body ?? created.error ?? "");
  const started = await httpsCall(port, "POST", `/v1/vms/${VM}/start`, { ...as(client1), token: TOKEN_NEW, body: {} });
  t.equal(started.status, 200, `started with the second token: ${started.body ?? started.error}`);
  await waitForBoot(d, VM, 1);
  t.match(d.log(), /"tls":"mutual"/, "the daemon says its listener is mutual TLS");
  const { hosts } = await d.api.json<{ hosts: { hostId?: string; apiUrl?: string }[] }>("GET", "/v1/fleet/hosts");
  t.equal(hosts.find((h) => JSON.stringify(h).includes("tls-host"))?.apiUrl, `https://127.0.0.1:${port}`, "the fleet registry gives peers an https:// URL");
});

t.test("vmctl --url https:// verifies the daemon against --ca and shows --cert", async (t) => {
  const ok = await vmctl("--token", TOKEN_OLD, "--ca", ca1.cert, "--cert", client1.cert, "--key", client1.key, "list");
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, new RegExp(`${VM}\\s+running`), "lists the guest");
  const noCa = await vmctl("--token", TOKEN_OLD, "--cert", client1.cert, "--key", client1.key, "list");
  t.not(noCa.code, 0, "without the CA: fails");
  t.match(noCa.stderr, /TLS: the server's certificate is not signed by a trusted CA \(give the fleet's CA: --ca FILE\)/, noCa.stderr);
  const noCert = await vmctl("--token", TOKEN_OLD, "--ca", ca1.cert, "list");
  t.not(noCert.code, 0, "without a client certificate: fails");
  t.match(noCert.stderr, /client certificate signed by --tls-ca/, noCert.stderr);
  const env = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(process.execPath, [vmctlJs, "--url", `https://127.0.0.1:${port}`, "list", "--json"], {
      timeout: 30_000,
      env: { PATH: process.env.PATH, VMHOSTD_PEER_TOKEN: TOKEN_OLD, VMHOSTD_TLS_CA: ca1.cert, VMHOSTD_TLS_CERT: client1.cert, VMHOSTD_TLS_KEY: client1.key },
    }, (err, stdout) => resolve({ code: err ? 1 : 0, stdout }));
  });
  t.equal(env.code, 0, "the same from the environment");
  t.match(env.stdout, VM);
});

t.test("a daemon calling a peer: verifies it against --tls-ca and shows its own certificate", async (t) => {
  const hostOf = async (c: HostCert, ca: string) => ({ config: { peerTokens: [TOKEN_NEW, TOKEN_OLD] }, tls: await TlsFiles.load({ tlsCert: c.cert, tlsKey: c.key, tlsCa: ca }) });
  const url = `https://127.0.0.1:${port}`;
  const fleet = PeerClient.of(await hostOf(client1, ca1.cert), url);
  t.match(await fleet.request("GET", `/v1/vms/${VM}`), { status: 200, body: { name: VM } }, "a host of the fleet CA, sending its first token: 200");
  const outsider = PeerClient.of(await hostOf(client2, ca2.cert), url);
  await t.rejects(outsider.request("GET", "/v1/vms"), /TLS: the server's certificate is not signed by a trusted CA/, "a host of another CA does not trust this one");
  const noCert = new PeerClient(url, TOKEN_OLD, { ca: await readFile(ca1.cert) });
  const refused = await noCert.request("GET", "/v1/vms").catch((err: unknown) => err);
  t.match(refused, { status: 401, body: { code: "VMH_ERR_UNAUTHORIZED", field: "certificate" } }, "a caller without a client certificate is refused, naming the certificate");
});

t.test("SIGHUP: new connections get the new certificate; an open stream and the guest are untouched", async (t) => {
  const before = await d.api.json<{ pid: number; state: string }>("GET", `/v1/vms/${VM}`);
  t.equal(await servedSerial(port, as(client1)), "A1", "the first certificate is served");

  t.equal(await held.opened, 200, "the event stream opened at the start is open");
  // An authenticated connection no longer counts as unauthenticated, whose deadline (10 s) would close it.
  const sinceOpened = Date.now() - held.openedAt;
  if (sinceOpened < 11_000) await sleep(11_000 - sinceOpened);
  t.notOk(held.closed(), "and outlives the unauthenticated connections' deadline");

  await copyFile(serverSecond.cert, serverCert);
  await copyFile(serverSecond.key, serverKey);
  const logged = d.log().length;
  process.kill(d.proc.pid!, "SIGHUP");
  const until = Date.now() + 10_000;
  while (!d.log().slice(logged).includes("TLS certificates reloaded") && Date.now() < until) await sleep(50);
  t.match(d.log().slice(logged), /TLS certificates reloaded/);
  t.equal(await servedSerial(port, as(client1)), "A2", "a new connection is shown the new certificate");

  // The stream opened before still delivers: an event made now reaches it.
  await d.api.json("POST", "/v1/vms", definition("after-reload"));
  const deadline = Date.now() + 10_000;
  while (!held.received().includes("after-reload") && Date.now() < deadline) await sleep(50);
  t.match(held.received(), /vm\.created[\s\S]*after-reload/, "the stream opened before the reload still receives events");
  t.notOk(held.closed(), "and was not closed");
  const after = await d.api.json<{ pid: number; state: string }>("GET", `/v1/vms/${VM}`);
  t.same({ pid: after.pid, state: after.state }, { pid: before.pid, state: "running" }, "the guest runs on, the same qemu");

  // A broken file at reload keeps the working certificate.
  await writeFile(serverCert, "not a certificate\n");
  const mark = d.log().length;
  process.kill(d.proc.pid!, "SIGHUP");
  const until2 = Date.now() + 10_000;
  while (!d.log().slice(mark).includes("not reloaded") && Date.now() < until2) await sleep(50);
  t.match(d.log().slice(mark), /TLS certificates not reloaded; the previous ones stay in use/);
  t.equal(await servedSerial(port, as(client1)), "A2", "still served");
  await copyFile(serverSecond.cert, serverCert);
});

t.test("rotation: after a restart with one token the other is refused; a CA bundle accepts both CAs' clients", async (t) => {
  const before = await d.api.json<{ pid: number }>("GET", `/v1/vms/${VM}`);
  d.proc.kill("SIGTERM");
  await new Promise((resolve) => (d.proc.exitCode !== null ? resolve(null) : d.proc.once("exit", resolve)));
  args.splice(args.indexOf(oldTokenFile) - 1, 2);
  args[args.indexOf(ca1.cert)] = bundle;
  await d.restart();
  const old = await httpsCall(port, "GET", "/v1/vms", { ...as(client1), token: TOKEN_OLD });
  t.equal(old.status, 401, "the token dropped at the restart is refused");
  for (const [what, c] of [["fleet CA", client1], ["second CA of the bundle", client2]] as const) {
    const r = await httpsCall(port, "GET", `/v1/vms/${VM}`, { ...as(c, ca1), token: TOKEN_NEW });
    t.equal(r.status, 200, `a client of the ${what} with the kept token: 200`);
  }
  const after = await d.api.json<{ pid: number; state: string }>("GET", `/v1/vms/${VM}`);
  t.same({ pid: after.pid, state: after.state }, { pid: before.pid, state: "running" }, "the guest ran through the restart");
});
