// Secrets stay secret, against real daemons, qemu, qemu-img, etcd and the fence
// process. The test plays a local user reading /proc and the daemon's log, and
// an API client reading a VM: the peer token (from a file, and also in the
// daemon's environment) reaches no child's environment or command line, a
// cloud-init user-data is not shown, logged or left readable. Start-up refuses a
// readable token file and a non-loopback listener in clear.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { freePort } from "../../src/net/free-port.js";
import { installGuest, mainJs, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN_FILE = "token-from-a-file-0123456789";
const TOKEN_ENV = "token-in-the-environment-0123";
const CANARY = "VMHOSTD_TEST_CANARY=daemon-env-canary-42";
const SECRET = `user-data-secret-${process.pid}-xyzzy`;
const VM = "secret-guest";

const tmp = await mkdtemp(path.join(os.tmpdir(), "vmh-sec-"));
await chmod(tmp, 0o755);
t.teardown(() => rm(tmp, { recursive: true, force: true }));
const tokenFile = async (name: string, token: string, mode: number): Promise<string> => {
  const f = path.join(tmp, name);
  await writeFile(f, `${token}\n`);
  await chmod(f, mode);
  return f;
};
const privateToken = await tokenFile("token", TOKEN_FILE, 0o600);
const readableToken = await tokenFile("token-0644", TOKEN_FILE, 0o644);

// qemu-img runs briefly; a wrapper records its environment and argv from /proc as it starts.
const dumps = path.join(tmp, "dumps");
await mkdir(dumps);
await chmod(dumps, 0o1777);
const qemuImgWrapper = path.join(tmp, "qemu-img");
await writeFile(
  qemuImgWrapper,
  `#!/bin/sh\ncat /proc/$$/environ > ${dumps}/env.$$ 2>/dev/null\ncat /proc/$$/cmdline > ${dumps}/cmd.$$ 2>/dev/null\nexec /usr/bin/qemu-img "$@"\n`,
);
await chmod(qemuImgWrapper, 0o755);

/** What a child process shows of itself, NUL-separated in /proc. */
async function procOf(pid: number): Promise<{ env: string[]; cmdline: string }> {
  const env = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0").filter(Boolean);
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").join(" ");
  return { env, cmdline };
}

/** tap's process tracker adds these to every process started below a test, the daemon's children included. */
const fromTap = (e: string): boolean => e.startsWith("_TAPJS_") || (e.startsWith("NODE_OPTIONS=") && e.includes("@tapjs"));

function checkChild(t: Test, what: string, p: { env: string[]; cmdline: string }): void {
  const names = p.env.filter((e) => !fromTap(e)).map((e) => e.slice(0, e.indexOf("=")));
  t.same(names.sort(), ["LANG", "PATH"], `${what}: PATH and LANG only`);
  for (const secret of [TOKEN_FILE, TOKEN_ENV, CANARY]) {
    t.notOk(p.env.join("\n").includes(secret) || p.cmdline.includes(secret), `${what}: no ${secret.slice(0, 12)}... in environ or cmdline`);
  }
}

/** vmhostd with these arguments, expected to refuse to start: its exit status and stderr. */
function startupError(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const dir = path.join(tmp, `refused-${Math.random().toString(36).slice(2)}`);
    execFile(process.execPath, [mainJs, "--state-dir", `${dir}/state`, "--run-dir", `${dir}/run`, ...args], { timeout: 20_000, env: { PATH: process.env.PATH } }, (err, _out, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? -1) : 0, stderr });
    });
  });
}

const etcd = await startEtcd();
t.teardown(() => etcd.cleanup());
const port = await freePort("127.0.0.1");
const d = await startDaemon({
  args: ["--listen", `127.0.0.1:${port}`, "--peer-token-file", privateToken, "--qemu-img", qemuImgWrapper,
    "--etcd", etcd.url, "--host-id", "secrets-host", "--lease-ttl", "5"],
  env: { VMHOSTD_PEER_TOKEN: TOKEN_ENV, [CANARY.split("=")[0]!]: CANARY.split("=")[1] },
});
t.teardown(() => d.cleanup());

const guest = await installGuest(d);
const created = await d.api.json<{ definition: { cloudInit?: Record<string, string> } }>("POST", "/v1/vms", {
  name: VM,
  memoryMiB: 128,
  boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
  disks: [{ name: "data", sizeGiB: 1 }],
  cloudInit: { userData: `#cloud-config\npassword: ${SECRET}\n`, metaData: "local-hostname: sec\n" },
});
await d.api.json("POST", `/v1/vms/${VM}/start`);
await waitForBoot(d, VM, 1);

t.test("the API shows no user-data unless asked for", async (t) => {
  t.same(created.definition.cloudInit, { metaData: "local-hostname: sec\n" }, "the create answer: seed without its user-data");
  const one = (await d.api.request("GET", `/v1/vms/${VM}`)).body.toString();
  const list = (await d.api.request("GET", "/v1/vms")).body.toString();
  t.notMatch(one, SECRET, "GET /v1/vms/{name}");
  t.notMatch(list, SECRET, "GET /v1/vms");
  t.match(JSON.parse(one), { definition: { cloudInit: { metaData: "local-hostname: sec\n" } } }, "the rest of the seed is shown");
  const asked = await d.api.json<{ definition: { cloudInit: { userData: string } } }>("GET", `/v1/vms/${VM}?include=cloud-init`);
  t.match(asked.definition.cloudInit.userData, SECRET, "?include=cloud-init shows it");
  const listed = await d.api.json<{ vms: { definition: { cloudInit?: { userData?: string } } }[] }>("GET", "/v1/vms?include=cloud-init");
  t.match(listed.vms[0]?.definition.cloudInit?.userData, SECRET, "on the list too");
  const bad = await d.api.request("GET", `/v1/vms/${VM}?include=everything`);
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body.toString()), { code: "VMH_ERR_VALIDATION", field: "include" });
  // The same over TCP with the file's token (and the environment's: both were given).
  for (const token of [TOKEN_FILE, TOKEN_ENV]) {
    const status = await new Promise<number>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port, path: `/v1/vms/${VM}`, headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject);
    });
    t.equal(status, 200, `token ${token.slice(0, 10)}... accepted over TCP`);
  }
});

t.test("the definition and the seed are the daemon's (and the VM's) alone; the log holds no secret", async (t) => {
  const vmDir = path.join(d.stateDir, "vms", VM);
  t.equal((await stat(path.join(vmDir, "definition.json"))).mode & 0o777, 0o600, "definition.json 0600");
  t.equal((await stat(path.join(vmDir, "cidata.iso"))).mode & 0o777, 0o600, "cidata.iso 0600");
  t.match(await readFile(path.join(vmDir, "definition.json"), "utf8"), SECRET, "(the definition does hold it)");
  const log = d.log();
  t.ok(log.includes("VM definition") || log.length > 1000, "the log has content (debug level)");
  t.notOk(log.includes(SECRET), "the user-data secret is nowhere in the daemon's log");
  t.notOk(log.includes(TOKEN_FILE) || log.includes(TOKEN_ENV), "nor a token");
  t.match(log, /--peer-token \(VMHOSTD_PEER_TOKEN\) gives the token in clear/, "a token from the environment is warned about");
});

t.test("no child sees a token: qemu, qemu-img, the fence process", async (t) => {
  const vm = await waitForVm<{ pid?: number }>(d, VM, (v) => v.pid !== undefined);
  checkChild(t, "qemu", await procOf(vm.pid!));

  const fencePid = Number((await readFile(path.join(d.runDir, "fence", "fence.pid"), "utf8")).trim());
  t.ok(fencePid > 0, `fence process ${fencePid}`);
  checkChild(t, "the fence process", await procOf(fencePid));

  const envs = (await readdir(dumps)).filter((f) => f.startsWith("env."));
  t.ok(envs.length >= 2, `${envs.length} qemu-img runs caught (the start-up probe and the disk's creation)`);
  for (const f of envs) {
    const env = (await readFile(path.join(dumps, f), "utf8")).split("\0").filter(Boolean);
    const cmdline = (await readFile(path.join(dumps, f.replace("env.", "cmd.")), "utf8")).split("\0").join(" ");
    checkChild(t, `qemu-img ${cmdline.split(" ").slice(2, 4).join(" ")}`, { env, cmdline });
  }
  // The daemon itself was given the token in its environment; read once, then dropped.
  t.match(readFileSync(`/proc/${d.proc.pid}/environ`, "utf8"), TOKEN_ENV, "(the daemon's own initial environment does hold it)");
});

t.test("start-up refuses a readable token file and plain HTTP beyond loopback", async (t) => {
  const readable = await startupError(["--listen", "127.0.0.1:1", "--peer-token-file", readableToken]);
  t.equal(readable.code, 2);
  t.match(readable.stderr, /invalid setting --peer-token-file \(VMHOSTD_PEER_TOKEN_FILE\): .*token-0644 has mode 0644: must be 0600 or stricter/);
  const clear = await startupError(["--listen", "10.9.8.7:8600", "--peer-token-file", privateToken]);
  t.equal(clear.code, 2);
  t.match(clear.stderr, /invalid setting --listen \(VMHOSTD_LISTEN\): is not a loopback address: give --tls-cert and --tls-key \(HTTPS\), or --insecure-listen/);
  const noToken = await startupError(["--listen", "127.0.0.1:1"]);
  t.match(noToken.stderr, /--peer-token-file \(VMHOSTD_PEER_TOKEN_FILE\): is required with --listen/);
});

t.test("--insecure-listen on a non-loopback address starts and warns; a systemd credential is a token", async (t) => {
  const hosts = makeTwoHosts();
  t.teardown(() => hosts.cleanup());
  const credentials = path.join(tmp, "credentials");
  await mkdir(credentials, { mode: 0o500 });
  await writeFile(path.join(credentials, "peer-token"), TOKEN_FILE, { mode: 0o400 });
  const credPort = await freePort("127.0.0.1");
  const [insecure, credential] = await Promise.all([
    startDaemon({ netns: hosts.a.ns, args: ["--listen", `${hosts.a.ip}:8600`, "--insecure-listen", "--peer-token-file", privateToken], exactArgs: true }),
    startDaemon({ args: ["--listen", `127.0.0.1:${credPort}`], env: { CREDENTIALS_DIRECTORY: credentials } }),
  ]);
  t.teardown(() => Promise.all([insecure.cleanup(), credential.cleanup()]));
  t.match(insecure.log(), /"listen":"10\.[\d.]+:8600".*--insecure-listen: the API and its token cross the network in clear/, "warned");
  const ask = (token: string) =>
    new Promise<number>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port: credPort, path: "/v1/vms", headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject);
    });
  t.equal(await ask(TOKEN_FILE), 200, "$CREDENTIALS_DIRECTORY/peer-token is the token");
  t.equal(await ask(TOKEN_ENV), 401, "and no other");
});
