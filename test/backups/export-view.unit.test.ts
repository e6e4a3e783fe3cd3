// What the API says of an export: the NBD URI a tool is given names the export
// and the socket, and the bitmap only when the disk has one.
import t from "tap";
import { exportView } from "../../src/vm/backups/disk-export.js";

const entry = {
  id: "data-x",
  disk: "data",
  image: "/s/vms/web/exports/data.qcow2",
  socket: "/run/vmhostd/vms/web/exports/data.sock",
  pidFile: "/run/vmhostd/vms/web/exports/data.pid",
  exportName: "data",
  pid: 1,
  startTicks: 2,
  createdAt: "2026-01-01T00:00:00.000Z",
};

t.test("an export's URI names the export and the socket", async (t) => {
  const v = exportView({ ...entry, bitmap: "vmh-export" });
  t.equal(v.uri, "nbd+unix:///data?socket=/run/vmhostd/vms/web/exports/data.sock");
  t.equal(v.bitmap, "vmh-export");
  t.notOk("pid" in v, "the server's pid is the daemon's business");
});

t.test("a TLS export's URI is nbds:// with the host's address", async (t) => {
  const { socket: _, ...tcpEntry } = entry;
  const v = exportView({ ...tcpEntry, tcp: { host: "192.0.2.7", port: 10811 } });
  t.equal(v.uri, "nbds://192.0.2.7:10811/data");
  t.equal(v.tls, true);
  t.notOk("socket" in v);
  t.equal(exportView({ ...tcpEntry, tcp: { host: "2001:db8::7", port: 10811 } }).uri, "nbds://[2001:db8::7]:10811/data", "an IPv6 address in brackets");
});

t.test("a raw disk's export publishes no bitmap", async (t) => {
  t.notOk("bitmap" in exportView(entry));
});

t.test("an export name is escaped in the URI", async (t) => {
  t.match(exportView({ ...entry, exportName: "a b" }).uri, /^nbd\+unix:\/\/\/a%20b\?socket=/);
});
