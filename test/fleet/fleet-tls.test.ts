// Fleet mode over TLS with client certificates: the daemon reaches an etcd that
// accepts only clients whose certificate its CA signed. Certificates are made by
// openssl for this test alone.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { defineGuestVm, startDaemon } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";

const openssl = (...args: string[]): void => void execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });

async function makeCertificates(dir: string): Promise<Record<"ca" | "cert" | "key" | "clientCert" | "clientKey", string>> {
  const f = (n: string) => path.join(dir, n);
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vmhostd-test-ca", "-keyout", f("ca.key"), "-out", f("ca.pem"));
  // clientAuth too: etcd's JSON gateway dials its own gRPC port with the server certificate.
  await writeFile(f("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  await writeFile(f("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [name, ext] of [["server", "server.ext"], ["client", "client.ext"]] as const) {
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`));
    openssl("x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "1", "-extfile", f(ext), "-out", f(`${name}.pem`));
  }
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key"), clientCert: f("client.pem"), clientKey: f("client.key") };
}

t.test("etcd over TLS with a client certificate", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-tls-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const tls = await makeCertificates(dir);
  const etcd = await startEtcd({ tls });
  t.teardown(() => etcd.cleanup());
  t.match(etcd.url, /^https:/);

  const a = await startDaemon({
    args: ["--etcd", etcd.url, "--etcd-ca", tls.ca, "--etcd-cert", tls.clientCert, "--etcd-key", tls.clientKey, "--host-id", "tls-a", "--lease-ttl", "5"],
  });
  t.teardown(() => a.cleanup());
  const host = await a.api.json<{ fleet: { etcd: { reachable: boolean }; lease?: { id: string } } }>("GET", "/v1/host");
  t.equal(host.fleet.etcd.reachable, true, "the daemon reaches etcd over TLS");
  t.ok(host.fleet.lease?.id, "and holds a lease");
  await defineGuestVm(a, "secure");
  const vm = await a.api.json<{ owner?: { host: string } }>("POST", "/v1/vms/secure/start?wait=true");
  t.equal(vm.owner?.host, "tls-a", "a start takes the owner key through TLS");
  t.match((await etcd.getKey("/vmhostd/vms/secure/owner"))?.value, /"host":"tls-a"/, "etcd holds it under the default prefix");
  await a.api.json("POST", "/v1/vms/secure/stop?wait=true");

  // Without a client certificate etcd refuses the daemon: it says so, and starts are 503.
  const b = await startDaemon({ args: ["--etcd", etcd.url, "--etcd-ca", tls.ca, "--host-id", "tls-b", "--lease-ttl", "5"] });
  t.teardown(() => b.cleanup());
  const bHost = await b.api.json<{ fleet: { etcd: { reachable: boolean; error?: string } } }>("GET", "/v1/host");
  t.equal(bHost.fleet.etcd.reachable, false, "a daemon without a client certificate is not let in");
  await defineGuestVm(b, "secure");
  const refused = await b.api.request("POST", "/v1/vms/secure/start?wait=true");
  t.equal(refused.status, 503, "and its starts are refused");
});
