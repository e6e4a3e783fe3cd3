// The settings that keep the TCP API and its token from crossing a network in clear.
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { isLoopback, loadConfig } from "../src/config.js";
import { readTokenFile } from "../src/host/peer-token-files.js";

const TOKEN_A = "token-a-0123456789abcdef";
const TOKEN_B = "token-b-0123456789abcdef";

async function tokenFile(dir: string, name: string, text: string, mode: number): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  await chmod(file, mode);
  return file;
}

t.test("loopback addresses", async (t) => {
  for (const a of ["127.0.0.1:8600", "127.1.2.3:1", "[::1]:8600", "localhost:8600"]) t.ok(isLoopback(a), a);
  for (const a of ["10.0.0.1:8600", "0.0.0.0:8600", "[::]:8600", "192.168.1.5:80", "127.evil.example:80", "host.example:80"]) t.notOk(isLoopback(a), a);
});

t.test("--listen beyond loopback needs TLS or --insecure-listen", async (t) => {
  const tok = ["--peer-token", TOKEN_A];
  t.throws(() => loadConfig(["--listen", "10.1.2.3:8600", ...tok], {}), /--listen \(VMHOSTD_LISTEN\): is not a loopback address: give --tls-cert/);
  t.throws(() => loadConfig(["--listen", "0.0.0.0:8600", ...tok], {}), /--listen/);
  t.equal(loadConfig(["--listen", "127.0.0.1:8600", ...tok], {}).insecureListen, false, "loopback in clear is fine");
  t.equal(loadConfig(["--listen", "10.1.2.3:8600", "--insecure-listen", ...tok], {}).insecureListen, true);
  t.equal(loadConfig(["--listen", "10.1.2.3:8600", ...tok], { VMHOSTD_INSECURE_LISTEN: "1" }).insecureListen, true, "or its variable");
  const c = loadConfig(["--listen", "10.1.2.3:8600", "--tls-cert", "/etc/c.pem", "--tls-key", "/etc/k.pem", ...tok], {});
  t.equal(c.tlsCert, "/etc/c.pem");
  t.throws(() => loadConfig(["--tls-cert", "/etc/c.pem"], {}), /--tls-cert.*go together/);
  t.throws(() => loadConfig(["--tls-ca", "/etc/ca.pem"], {}), /--tls-ca \(VMHOSTD_TLS_CA\)/);
  t.throws(() => loadConfig(["--tls-cert", "rel.pem", "--tls-key", "/k"], {}), /--tls-cert/);
});

t.test("token files: private, owned, one line; the first is sent", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-tok-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const a = await tokenFile(dir, "a", `${TOKEN_A}\n`, 0o600);
  const b = await tokenFile(dir, "b", TOKEN_B, 0o400);
  const open = await tokenFile(dir, "open", TOKEN_A, 0o644);
  const short = await tokenFile(dir, "short", "tiny\n", 0o600);
  const spaced = await tokenFile(dir, "spaced", "two words but long enough\n", 0o600);

  const c = loadConfig(["--listen", "127.0.0.1:1", "--peer-token-file", a, "--peer-token-file", b], {});
  t.same(c.peerTokens, [TOKEN_A, TOKEN_B], "both accepted, in order: the first is the one sent");
  t.same(loadConfig([], { VMHOSTD_PEER_TOKEN_FILE: `${b},${a}` }).peerTokens, [TOKEN_B, TOKEN_A], "env: comma-separated");
  t.equal(c.peerTokenInClear, false);
  const inClear = loadConfig(["--peer-token-file", a], { VMHOSTD_PEER_TOKEN: TOKEN_B });
  t.same(inClear.peerTokens, [TOKEN_A, TOKEN_B], "a token in clear comes after the files'");
  t.equal(inClear.peerTokenInClear, true, "and is flagged, to be warned about");
  t.notOk("peerToken" in inClear, "the settings keep no single token that code could send instead of the first");
  t.throws(() => loadConfig(["--peer-token-file", open], {}), /--peer-token-file \(VMHOSTD_PEER_TOKEN_FILE\).*mode 0644: must be 0600 or stricter/);
  t.throws(() => loadConfig(["--peer-token-file", short], {}), /at least 16/);
  t.throws(() => loadConfig(["--peer-token-file", spaced], {}), /one line/);
  t.throws(() => loadConfig(["--peer-token-file", path.join(dir, "missing")], {}), /--peer-token-file.*ENOENT/);
  t.throws(() => loadConfig(["--peer-token-file", a, "--peer-token-file", a], {}), /twice/);
  if (process.getuid?.() === 0) {
    // Someone else's file, however private, is not a token this daemon's operator gave it.
    const theirs = await tokenFile(dir, "theirs", TOKEN_A, 0o600);
    await chown(theirs, 4242, 4242);
    t.throws(() => loadConfig(["--peer-token-file", theirs], {}), /owned by uid 4242: must be root's or the daemon's/);
    t.equal(readTokenFile(theirs, "x", 4242), TOKEN_A, "the daemon's own user may own it");
  }
  t.throws(() => loadConfig(["--listen", "127.0.0.1:1"], {}), /--peer-token-file \(VMHOSTD_PEER_TOKEN_FILE\): is required with --listen/);
});

t.test("systemd credential, read only when no token is given", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-cred-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const other = await tokenFile(dir, "other", TOKEN_B, 0o600);
  t.same(loadConfig([], { CREDENTIALS_DIRECTORY: dir }).peerTokens, [], "no credential file: no token");
  await tokenFile(dir, "peer-token", "", 0o400);
  t.same(loadConfig([], { CREDENTIALS_DIRECTORY: dir }).peerTokens, [], "an empty credential: no token");
  t.throws(() => loadConfig(["--listen", "127.0.0.1:1"], { CREDENTIALS_DIRECTORY: dir }), /is required with --listen/);
  await rm(path.join(dir, "peer-token"));
  await tokenFile(dir, "peer-token", `${TOKEN_A}\n`, 0o400);
  t.same(loadConfig(["--listen", "127.0.0.1:1"], { CREDENTIALS_DIRECTORY: dir }).peerTokens, [TOKEN_A]);
  t.same(loadConfig(["--peer-token-file", other], { CREDENTIALS_DIRECTORY: dir }).peerTokens, [TOKEN_B], "a flag wins");
  await chmod(path.join(dir, "peer-token"), 0o640);
  t.throws(() => loadConfig([], { CREDENTIALS_DIRECTORY: dir }), /CREDENTIALS_DIRECTORY\/peer-token.*mode 0640/);
});
