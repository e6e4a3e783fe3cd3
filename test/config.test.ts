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
