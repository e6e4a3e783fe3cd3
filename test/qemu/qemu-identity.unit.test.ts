// A qemu is recognised by what was recorded at its start: pid + start time +
// executable (device and inode) + the VM's uuid on its command line; never by its name.
import t from "tap";
import { matchIdentity, type QemuProcessIdentity } from "../../src/qemu/qemu-identity.js";

const recorded: QemuProcessIdentity = { pid: 4242, startTicks: 9000, uuid: "0b7c-uuid", exe: { path: "/usr/libexec/qemu-kvm", dev: 64769, ino: 123 } };
const argv = ["/usr/local/bin/my-qemu-wrapper", "-name", "guest=a", "-uuid", "0b7c-uuid"];
const same = { pid: 4242, startTicks: 9000, state: "S", exe: { dev: 64769, ino: 123 }, argv };

t.test("the very process: matched whatever its argv[0] says", async (t) => {
  t.same(matchIdentity(recorded, same), { kind: "match" });
  t.same(matchIdentity(recorded, { ...same, argv: ["kvm-anything", "-uuid", "0b7c-uuid"] }), { kind: "match" });
});

t.test("gone: ended, a zombie, or its pid recycled", async (t) => {
  t.equal(matchIdentity(recorded, { pid: 4242 }).kind, "gone");
  t.equal(matchIdentity(recorded, { ...same, state: "Z" }).kind, "gone");
  const reused = matchIdentity(recorded, { ...same, startTicks: 9001 });
  t.equal(reused.kind, "gone");
  t.match(reused, { why: /another process/ });
});

t.test("unconfirmed: there, but not provably the recorded qemu", async (t) => {
  t.match(matchIdentity(recorded, { ...same, exe: undefined, exeError: "EACCES" }), { kind: "unconfirmed", why: /exe: EACCES/ });
  t.match(matchIdentity(recorded, { ...same, exe: { dev: 64769, ino: 999 } }), { kind: "unconfirmed", why: /another executable/ });
  t.match(matchIdentity(recorded, { ...same, argv: ["/usr/libexec/qemu-kvm", "-uuid", "other"] }), { kind: "unconfirmed", why: /uuid/ });
  t.match(matchIdentity(recorded, { ...same, argv: undefined }), { kind: "unconfirmed", why: /cmdline/ });
  const { exe: _exe, ...noExe } = recorded;
  t.match(matchIdentity(noExe, same), { kind: "unconfirmed", why: /no executable was recorded/ });
});
