// The rules on how a migration may travel: in clear only on loopback or when
// allowed, and only to the address the source called.
import { execFileSync } from "node:child_process";
import t from "tap";
import { distinguishedName } from "../../src/migration/migration-tls.js";
import { checkAnsweredAddresses, checkClearMigration, isLoopbackHost, parseTcpUri } from "../../src/migration/migration-transport.js";

t.test("in clear: loopback always, elsewhere only with --insecure-migration; TLS always", async (t) => {
  const plain = { tls: false, insecureMigration: false };
  t.equal(checkClearMigration(plain, "127.0.0.1", "source"), false);
  t.equal(checkClearMigration(plain, "::1", "destination"), false);
  t.equal(checkClearMigration({ tls: true, insecureMigration: false }, "10.1.2.3", "source"), false);
  t.equal(checkClearMigration({ tls: false, insecureMigration: true }, "10.1.2.3", "source"), true, "allowed, to be warned about");
  t.throws(() => checkClearMigration(plain, "10.1.2.3", "source"), { code: "VMH_ERR_INSECURE_MIGRATION", status: 409, fields: { setting: "--insecure-migration" } });
  t.throws(() => checkClearMigration(plain, "hostb.example", "destination"), /--insecure-migration/);
  t.ok(isLoopbackHost("[::1]") && isLoopbackHost("localhost") && !isLoopbackHost("128.0.0.1"));
});

t.test("tcp uris", async (t) => {
  t.same(parseTcpUri("tcp:10.0.0.2:4444"), { host: "10.0.0.2", port: 4444 });
  t.same(parseTcpUri("tcp:[fd00::2]:4444"), { host: "fd00::2", port: 4444 });
  t.equal(parseTcpUri("unix:/tmp/x"), undefined);
  t.equal(parseTcpUri("tcp:10.0.0.2:0"), undefined);
  t.equal(parseTcpUri("exec:nc 10.0.0.2 4444"), undefined);
});

t.test("the destination's answer must name the address the source called", async (t) => {
  const nbd = (host: string) => ({ host, port: 10809, exports: { root: "root" } });
  await t.resolves(checkAnsweredAddresses("https://10.0.0.2:8600", { uri: "tcp:10.0.0.2:49152", nbd: nbd("10.0.0.2") }));
  await t.resolves(checkAnsweredAddresses("https://[fd00::2]:8600", { uri: "tcp:[fd00::2]:49152" }));
  await t.rejects(checkAnsweredAddresses("https://10.0.0.2:8600", { uri: "tcp:10.0.0.9:49152" }), { code: "VMH_ERR_MIGRATION_ADDRESS", fields: { field: "uri", answered: "10.0.0.9" } });
  await t.rejects(checkAnsweredAddresses("https://10.0.0.2:8600", { uri: "tcp:10.0.0.2:49152", nbd: nbd("10.0.0.9") }), { code: "VMH_ERR_MIGRATION_ADDRESS", fields: { field: "nbd.host" } });
  await t.rejects(checkAnsweredAddresses("https://10.0.0.2:8600", { uri: "exec:cat" }), { code: "VMH_ERR_MIGRATION_ADDRESS" });
  // A name: any address it resolves to, and nothing else.
  const resolve = async (name: string) => (name === "hostb.example" ? ["10.0.0.2", "fd00::2"] : []);
  await t.resolves(checkAnsweredAddresses("https://hostb.example:8600", { uri: "tcp:[fd00::2]:49152" }, resolve));
  await t.resolves(checkAnsweredAddresses("https://HostB.example:8600", { uri: "tcp:hostb.example:49152", nbd: nbd("10.0.0.2") }, resolve));
  await t.rejects(checkAnsweredAddresses("https://hostb.example:8600", { uri: "tcp:10.0.0.3:49152" }, resolve), { code: "VMH_ERR_MIGRATION_ADDRESS" });
  await t.rejects(checkAnsweredAddresses("https://nowhere.example:8600", { uri: "tcp:10.0.0.3:49152" }, async () => { throw new Error("NXDOMAIN"); }), { code: "VMH_ERR_MIGRATION_ADDRESS" });
});

t.test("a certificate's name as qemu's authz compares it: certificate order, ',' joined, ',' in a value escaped", async (t) => {
  const pem = execFileSync(
    "openssl",
    ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-days", "1", "-subj", "/C=DE/O=Fleet, Inc/CN=host a"],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  t.equal(distinguishedName(pem), "C=DE,O=Fleet\\, Inc,CN=host a");
});
