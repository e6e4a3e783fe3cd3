// The TCP API's request latency over mutual TLS against plain HTTP: two
// daemons on loopback, one with --tls-cert/--tls-key/--tls-ca, one in clear,
// asked `GET /v1/vms` (with the token) in interleaved rounds, each request on a
// new connection (as vmctl and the peer client make them, so the TLS handshake
// is counted) and on one kept-alive connection. Prints n, median, p90, min, max in ms.
// Run as root from the repo: node dist/bench/api-tls.js [--runs N] [--smoke]
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../src/net/free-port.js";
import { formatTable } from "./latency-stats.js";
import { BenchRun, numberArg, smokeMode } from "./bench-run.js";
import { BenchDaemon, daemonEntry } from "./vmhostd-daemon.js";

// Smoke: 5 rounds.
const runs = smokeMode() ? 5 : numberArg("runs", 400) || 400;
const mainJs = daemonEntry(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../.."));
const TOKEN = "bench-token-0123456789abcdef";

const bench = new BenchRun("api-tls");
await bench.run(main);

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vb-tls-"));
  bench.defer(() => rm(dir, { recursive: true, force: true }));
  const openssl = (args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const f = (n: string): string => path.join(dir, n);
  openssl(["req", "-x509", "-new", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "1", "-subj", "/CN=bench CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
  await writeFile(f("host.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n");
  openssl(["req", "-new", ...ec, "-keyout", f("host.key"), "-out", f("host.csr"), "-subj", "/CN=bench"]);
  openssl(["x509", "-req", "-in", f("host.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-set_serial", "7", "-days", "1", "-extfile", f("host.ext"), "-out", f("host.pem")]);
  await writeFile(f("token"), TOKEN);
  await chmod(f("token"), 0o600);

  const [plainPort, tlsPort] = [await freePort("127.0.0.1"), await freePort("127.0.0.1")];
  const plain = await BenchDaemon.launch(mainJs, undefined, "warn", ["--listen", `127.0.0.1:${plainPort}`, "--peer-token-file", f("token")]);
  bench.defer(() => plain.shutdown());
  const secure = await BenchDaemon.launch(mainJs, undefined, "warn", ["--listen", `127.0.0.1:${tlsPort}`, "--peer-token-file", f("token"),
    "--tls-cert", f("host.pem"), "--tls-key", f("host.key"), "--tls-ca", f("ca.pem")]);
  bench.defer(() => secure.shutdown());
  await Promise.all([plain.waitReady(), secure.waitReady()]);
  const [ca, cert, key] = await Promise.all([readFile(f("ca.pem")), readFile(f("host.pem")), readFile(f("host.key"))]);
  const plainAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: 1, ca, cert, key });
  const timed = (tls: boolean, agent: http.Agent | false): Promise<number> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const options = { host: "127.0.0.1", path: "/v1/vms", headers: { authorization: `Bearer ${TOKEN}` }, agent };
      const onRes = (res: http.IncomingMessage): void => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`HTTP ${res.statusCode}`))));
      };
      const req = tls ? https.request({ ...options, port: tlsPort, ca, cert, key }, onRes) : http.request({ ...options, port: plainPort }, onRes);
      req.on("error", reject);
      req.end();
    });
  const rows = { plainNew: [] as number[], tlsNew: [] as number[], plainKept: [] as number[], tlsKept: [] as number[] };
  for (let i = 0; i < 20; i++) await Promise.all([timed(false, false), timed(true, false)]); // warm-up
  for (let i = 0; i < runs; i++) {
    rows.plainNew.push(await timed(false, false));
    rows.tlsNew.push(await timed(true, false));
    rows.plainKept.push(await timed(false, plainAgent));
    rows.tlsKept.push(await timed(true, tlsAgent));
  }
  plainAgent.destroy();
  tlsAgent.destroy();
  process.stdout.write(
    formatTable([
      { label: "HTTP, new connection", samples: rows.plainNew },
      { label: "mTLS, new connection", samples: rows.tlsNew },
      { label: "HTTP, kept alive", samples: rows.plainKept },
      { label: "mTLS, kept alive", samples: rows.tlsKept },
    ]) + "\n",
  );
}
