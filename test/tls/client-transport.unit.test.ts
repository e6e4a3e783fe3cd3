// An https:// URL is spoken to over TLS or not at all: the peer client and vmctl's
// client never fall back to plain HTTP, which would hand the token to anyone on
// the path. A loopback listener records the first bytes it is sent.
import net from "node:net";
import t from "tap";
import { ApiClient } from "../../src/cli/api-client.js";
import { PeerClient } from "../../src/migration/peer-client.js";
import { describeTransportError, transportFor } from "../../src/tls/client-transport.js";

const TOKEN = "never-in-clear-0123456789";

/** A TCP listener that keeps what each connection sends first, and closes it. */
async function recorder(): Promise<{ port: number; first: Buffer[]; close: () => Promise<void> }> {
  const first: Buffer[] = [];
  const server = net.createServer((sock) => {
    sock.once("data", (b: Buffer) => {
      first.push(b);
      sock.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { port, first, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

t.test("https:// starts a TLS handshake, never an HTTP request", async (t) => {
  const r = await recorder();
  t.teardown(r.close);
  const peer = new PeerClient(`https://127.0.0.1:${r.port}`, TOKEN);
  await t.rejects(peer.request("GET", "/v1/host"), /127\.0\.0\.1/);
  const api = new ApiClient({ url: `https://127.0.0.1:${r.port}`, token: TOKEN });
  await t.rejects(api.request("GET", "/v1/vms"), /cannot reach vmhostd/);
  t.equal(r.first.length, 2, "both connected");
  for (const b of r.first) {
    t.equal(b[0], 0x16, "a TLS handshake record (ClientHello)");
    t.notOk(b.toString("latin1").includes(TOKEN), "the token is not in it");
  }
});

t.test("http:// is plain, other schemes are refused", async (t) => {
  const r = await recorder();
  t.teardown(r.close);
  await new PeerClient(`http://127.0.0.1:${r.port}`, TOKEN).request("GET", "/v1/host").catch(() => undefined);
  t.match(r.first[0]?.toString("latin1"), /^GET \/v1\/host HTTP\/1\.1/, "http:// is HTTP, as asked");
  t.throws(() => transportFor(new URL("ftp://127.0.0.1/")), /only http:\/\/ and https:\/\//);
  const opts = transportFor(new URL("https://host.example:8600"), { ca: "CA", cert: "C", key: "K" }).options;
  t.match(opts, { host: "host.example", port: 8600, servername: "host.example", rejectUnauthorized: true, ca: "CA", cert: "C", key: "K" });
  t.notOk("servername" in transportFor(new URL("https://[::1]:1")).options, "no SNI for an address");
  t.equal(transportFor(new URL("https://10.0.0.1")).options.port, 443);
});

t.test("TLS failures in words", async (t) => {
  const err = (code: string) => Object.assign(new Error("x"), { code });
  t.match(describeTransportError(err("SELF_SIGNED_CERT_IN_CHAIN")), /not signed by a trusted CA \(give the fleet's CA: --ca FILE\)/);
  t.match(describeTransportError(err("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")), /requires a client certificate/);
  t.equal(describeTransportError(err("ECONNREFUSED")), "x", "other errors as they are");
});
