import t from "tap";
import { loadConfig } from "../src/config.js";

t.test("defaults need nothing", async (t) => {
  const c = loadConfig([], {});
  t.equal(c.stateDir, "/var/lib/vmhostd");
  t.equal(c.socket, "/run/vmhostd/vmhostd.sock");
  t.equal(c.accel, "auto");
});

t.test("flags win over the environment", async (t) => {
  const c = loadConfig(["--accel", "tcg"], { VMHOSTD_ACCEL: "kvm", VMHOSTD_RUN_DIR: "/tmp/r" });
  t.equal(c.accel, "tcg");
  t.equal(c.socket, "/tmp/r/vmhostd.sock");
});

t.test("a bad value names the setting", async (t) => {
  t.throws(() => loadConfig(["--accel", "xen"], {}), /--accel \(VMHOSTD_ACCEL\)/);
  try {
    loadConfig([], { VMHOSTD_LISTEN: "nonsense" });
    t.fail("should throw");
  } catch (err) {
    t.match((err as Error).message, /--listen \(VMHOSTD_LISTEN\)/);
  }
  t.throws(() => loadConfig(["--state-dir", "relative"], {}), /--state-dir/);
  t.throws(() => loadConfig(["--bogus"], {}), /--bogus/);
});

t.test("fleet settings", async (t) => {
  const single = loadConfig([], {});
  t.equal(single.etcd, undefined, "no --etcd: single-host mode");
  t.equal(single.etcdPrefix, "/vmhostd/");
  t.equal(single.leaseTtl, 10);
  t.ok(single.hostId.length > 0, "host id defaults to the hostname");
  const c = loadConfig(["--etcd", "http://10.0.0.1:2379,http://10.0.0.2:2379", "--host-id", "hv7", "--lease-ttl", "6"], { VMHOSTD_ETCD_PREFIX: "/fleet/" });
  t.equal(c.etcd, "http://10.0.0.1:2379,http://10.0.0.2:2379");
  t.equal(c.hostId, "hv7");
  t.equal(c.leaseTtl, 6);
  t.equal(c.etcdPrefix, "/fleet/");
  t.throws(() => loadConfig(["--etcd", "10.0.0.1:2379"], {}), /--etcd \(VMHOSTD_ETCD\)/);
  t.throws(() => loadConfig(["--lease-ttl", "1"], {}), /--lease-ttl/);
  // Below 5 s a daemon restart on a loaded host can miss the fence's deadline.
  t.throws(() => loadConfig(["--lease-ttl", "2"], {}), /--lease-ttl \(VMHOSTD_LEASE_TTL\): must be at least 5 seconds/);
  t.throws(() => loadConfig([], { VMHOSTD_LEASE_TTL: "4" }), /--lease-ttl \(VMHOSTD_LEASE_TTL\)/);
  t.equal(loadConfig(["--lease-ttl", "5"], {}).leaseTtl, 5, "5 s is the least accepted");
  t.throws(() => loadConfig(["--etcd-prefix", "vmhostd"], {}), /--etcd-prefix/);
  t.throws(() => loadConfig(["--etcd-cert", "/etc/c.pem"], {}), /--etcd-cert/);
});

t.test("watchdog settings", async (t) => {
  const fleet = ["--etcd", "http://127.0.0.1:2379", "--lease-ttl", "10"];
  t.equal(loadConfig(fleet, {}).watchdog, undefined, "off unless asked for");
  const c = loadConfig([...fleet, "--watchdog", "/dev/watchdog", "--watchdog-timeout", "5"], {});
  t.equal(c.watchdog, "/dev/watchdog");
  t.equal(c.watchdogTimeout, 5);
  t.equal(loadConfig([...fleet], { VMHOSTD_WATCHDOG: "/dev/watchdog1" }).watchdog, "/dev/watchdog1");
  t.throws(() => loadConfig(["--watchdog", "/dev/watchdog"], {}), /--watchdog \(VMHOSTD_WATCHDOG\): needs fleet mode/);
  t.throws(() => loadConfig([...fleet, "--watchdog", "watchdog"], {}), /--watchdog .*absolute/);
  t.throws(() => loadConfig([...fleet, "--watchdog", "/dev/watchdog", "--watchdog-timeout", "6"], {}), /--watchdog-timeout .*half of --lease-ttl/);
});

t.test("console log cap in bytes with K/M/G", async (t) => {
  t.equal(loadConfig([], {}).consoleLogMax, 8 * 1024 * 1024);
  t.equal(loadConfig(["--console-log-max", "256K"], {}).consoleLogMax, 256 * 1024);
  t.equal(loadConfig([], { VMHOSTD_CONSOLE_LOG_MAX: "1g" }).consoleLogMax, 1024 ** 3);
  t.equal(loadConfig(["--console-log-max", "65536"], {}).consoleLogMax, 65536);
  t.throws(() => loadConfig(["--console-log-max", "8MB"], {}), /--console-log-max \(VMHOSTD_CONSOLE_LOG_MAX\)/);
  t.throws(() => loadConfig(["--console-log-max", "1K"], {}), /at least 4K/);
});

t.test("limits and memory reserve", async (t) => {
  const c = loadConfig([], {});
  t.match(c, { reserveMemory: 512, maxConsoleViewers: 8, maxStreams: 128, maxStreamsPerPeer: 16, maxUnauthenticated: 64, maxUnauthenticatedPerPeer: 16 });
  t.equal(loadConfig(["--reserve-memory", "0"], {}).reserveMemory, 0, "no reserve at all may be asked for");
  t.equal(loadConfig([], { VMHOSTD_MAX_CONSOLE_VIEWERS: "2" }).maxConsoleViewers, 2);
  t.throws(() => loadConfig(["--max-streams", "0"], {}), /--max-streams \(VMHOSTD_MAX_STREAMS\)/, "a cap of 0 would lock everyone out");
  t.throws(() => loadConfig(["--reserve-memory", "-1"], {}), /--reserve-memory/);
});

t.test("console origins and the console URL", async (t) => {
  t.same(loadConfig([], {}).consoleOrigins, []);
  const flags = loadConfig(["--console-origin", "https://panel.example", "--console-origin", "https://a.example:8443,http://b.example"], {});
  t.same(flags.consoleOrigins, ["https://panel.example", "https://a.example:8443", "http://b.example"], "repeatable, each a comma list");
  t.same(loadConfig([], { VMHOSTD_CONSOLE_ORIGINS: "https://p.example,https://q.example" }).consoleOrigins, ["https://p.example", "https://q.example"]);
  t.throws(() => loadConfig(["--console-origin", "https://panel.example/path"], {}), /--console-origin \(VMHOSTD_CONSOLE_ORIGINS\)/, "an origin has no path");
  t.throws(() => loadConfig(["--console-origin", "*"], {}), /--console-origin/, "no wildcard");
  t.equal(loadConfig(["--console-url", "https://host7.example/vmh"], {}).consoleUrl, "https://host7.example/vmh");
  t.throws(() => loadConfig(["--console-url", "https://host7.example/"], {}), /--console-url/, "no trailing slash");
});
