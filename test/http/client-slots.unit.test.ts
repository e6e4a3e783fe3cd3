// The counting behind the stream and unauthenticated-connection caps: per
// listener, per peer, a release that gives back exactly once.
import t from "tap";
import { ClientSlots, peerAddress } from "../../src/http/client-slots.js";

t.test("caps per listener and per peer", async (t) => {
  const slots = new ClientSlots({ total: 3, perPeer: 2 });
  const a1 = slots.take("10.0.0.1");
  const a2 = slots.take("10.0.0.1");
  t.ok(a1 && a2, "a peer gets its share");
  t.equal(slots.take("10.0.0.1"), undefined, "not one more");
  t.equal(slots.refusal("10.0.0.1"), "peer");
  const b1 = slots.take("10.0.0.2");
  t.ok(b1, "another peer still gets in");
  t.equal(slots.refusal("10.0.0.3"), "listener", "then the listener is full for everyone");
  t.throws(() => slots.takeOrRefuse("10.0.0.3", "streams"), { code: "VMH_ERR_TOO_MANY_CLIENTS", status: 429, fields: { scope: "listener", limit: 3 } });
  a1!();
  a1!();
  t.equal(slots.size, 2, "a release counts once, however often it is called");
  t.equal(slots.heldBy("10.0.0.1"), 1);
  t.ok(slots.take("10.0.0.3"), "a freed place is taken again");
  t.throws(() => slots.takeOrRefuse("10.0.0.1", "streams"), { code: "VMH_ERR_TOO_MANY_CLIENTS", fields: { scope: "listener" } });
  a2!();
  b1!();
  t.equal(slots.heldBy("10.0.0.1"), 0, "a peer with nothing open is forgotten");
});

t.test("no peer address: only the listener's cap", async (t) => {
  const slots = new ClientSlots({ total: 2, perPeer: 1 });
  t.ok(slots.take(undefined));
  t.ok(slots.take(undefined), "the Unix socket has no peer to count by");
  t.equal(slots.refusal(undefined), "listener");
  const unix = new ClientSlots({ total: 5 });
  for (let i = 0; i < 5; i++) t.ok(unix.take("127.0.0.1"), `without a per-peer cap, take ${i + 1}`);
});

t.test("peer addresses", async (t) => {
  t.equal(peerAddress("::ffff:192.0.2.7"), "192.0.2.7", "an IPv4 client on a dual-stack socket is the same peer");
  t.equal(peerAddress("192.0.2.7"), "192.0.2.7");
  t.equal(peerAddress("2001:DB8::1"), "2001:db8::1");
  t.equal(peerAddress(undefined), undefined);
  t.equal(peerAddress(""), undefined);
});
