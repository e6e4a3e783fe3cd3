// The ticket store (single use, expiry, the cap and the sweep, under a fake
// clock), where tickets stand in for the token, the log redaction and the Origin
// rule: no daemon, no qemu.
import t from "tap";
import { ConsoleTicketStore } from "../../src/vm/console/console-tickets.js";
import { checkConsoleOrigin, redactConsoleTicket, takesConsoleTicket } from "../../src/http/console-ticket-auth.js";

t.test("a ticket opens one session, within its time, for its VM, kind and mode", async (t) => {
  let now = 1_000_000;
  const store = new ConsoleTicketStore(10, () => now);
  t.teardown(() => store.close());
  const a = store.mint({ vm: "web", kind: "vnc", mode: "ro" }, 30);
  const b = store.mint({ vm: "web", kind: "vnc", mode: "ro" }, 30);
  t.match(a.ticket, /^[A-Za-z0-9_-]{43}$/);
  t.not(a.ticket, b.ticket, "each ticket its own random");
  t.equal(a.expiresAt.getTime(), now + 30_000);
  t.same(store.peek(a.ticket), { vm: "web", kind: "vnc", mode: "ro" }, "peeking does not use it up");
  t.same(store.redeem(a.ticket), { vm: "web", kind: "vnc", mode: "ro" });
  t.throws(() => store.redeem(a.ticket), { code: "VMH_ERR_CONSOLE_TICKET_SPENT", status: 410, reason: "used" }, "a second open is refused");
  t.throws(() => store.peek(a.ticket), { code: "VMH_ERR_CONSOLE_TICKET_SPENT", reason: "used" });
  now += 30_000;
  t.throws(() => store.redeem(b.ticket), { code: "VMH_ERR_CONSOLE_TICKET_SPENT", reason: "expired" }, "at expiresAt it opens nothing");
  t.throws(() => store.peek(b.ticket.slice(0, 42) + (b.ticket.endsWith("A") ? "B" : "A")), { code: "VMH_ERR_CONSOLE_TICKET", status: 403 }, "a near miss is a stranger");
  t.throws(() => store.peek("x"), { code: "VMH_ERR_CONSOLE_TICKET" });
  t.equal(store.mint({ vm: "web", kind: "serial", mode: "rw" }, 10_000).expiresAt.getTime(), now + 300_000, "a TTL is at most 300 s");
});

t.test("the store is bounded: a cap on live tickets, expired ones swept", async (t) => {
  let now = 0;
  const store = new ConsoleTicketStore(100, () => now);
  t.teardown(() => store.close());
  for (let i = 0; i < 100; i++) store.mint({ vm: "web", kind: "vnc", mode: "rw" }, 5);
  t.throws(() => store.mint({ vm: "web", kind: "vnc", mode: "rw" }), { code: "VMH_ERR_TOO_MANY_CLIENTS", fields: { scope: "console-tickets", limit: 100 } });
  t.equal(store.size, 100);
  now += 5_000;
  // Minting and dropping tickets over time never holds more than the cap.
  let most = 0;
  for (let i = 0; i < 20_000; i++) {
    now += 1_000;
    store.mint({ vm: "web", kind: "serial", mode: "ro" }, 5);
    most = Math.max(most, store.size);
  }
  t.ok(most <= 100, `at most ${most} tickets held while 20000 were minted`);
  now += 5_000;
  store.mint({ vm: "web", kind: "vnc", mode: "rw" }, 5);
  t.equal(store.size, 1, "the expired ones are gone");
});

t.test("only the console page, its socket and its static files go without the token", async (t) => {
  t.ok(takesConsoleTicket("/console/:ticket"));
  t.ok(takesConsoleTicket("/console/:ticket/ws"));
  t.ok(takesConsoleTicket("/console/assets/*"));
  for (const route of ["/v1/vms", "/v1/vms/:name/console", "/v1/vms/:name/console-tickets", "/openapi.json", "/healthz", "/console", undefined]) {
    t.notOk(takesConsoleTicket(route), `${route} wants the token`);
  }
});

t.test("the request log never carries a ticket", async (t) => {
  const ticket = "Q2hlY2tpbmcgdGhhdCB0aGUgdGlja2V0IGlzIGdvbmU";
  t.equal(redactConsoleTicket(`/console/${ticket}`), "/console/<ticket>");
  t.equal(redactConsoleTicket(`/console/${ticket}/ws`), "/console/<ticket>/ws");
  t.equal(redactConsoleTicket(`/console/not-a-ticket-shape?x=1`), "/console/<ticket>?x=1", "whatever stands where a ticket goes");
  t.equal(redactConsoleTicket("/console/assets/console-page.js"), "/console/assets/console-page.js");
  t.equal(redactConsoleTicket(`/v1/vms?ticket=${ticket}`), "/v1/vms?ticket=<ticket?>", "nor where an attacker puts one");
  t.equal(redactConsoleTicket("/v1/vms/web/console/log?offset=10"), "/v1/vms/web/console/log?offset=10");
});

t.test("a console socket's Origin: the page's own, or a configured one", async (t) => {
  t.doesNotThrow(() => checkConsoleOrigin(undefined, "h:1", []), "no Origin: not a browser");
  t.doesNotThrow(() => checkConsoleOrigin("http://h:1", "h:1", []), "the page's own");
  t.doesNotThrow(() => checkConsoleOrigin("https://PANEL.example/", "h:1", ["https://panel.example"]), "a configured one, case and slash aside");
  t.throws(() => checkConsoleOrigin("https://evil.example", "h:1", ["https://panel.example"]), { code: "VMH_ERR_CONSOLE_ORIGIN", status: 403 });
  t.throws(() => checkConsoleOrigin("https://panel.example.evil", "h:1", ["https://panel.example"]), { code: "VMH_ERR_CONSOLE_ORIGIN" });
  t.throws(() => checkConsoleOrigin("null", "h:1", []), { code: "VMH_ERR_CONSOLE_ORIGIN" }, "a sandboxed or file page");
  t.throws(() => checkConsoleOrigin("http://h:2", "h:1", []), { code: "VMH_ERR_CONSOLE_ORIGIN" }, "another port is another origin");
});
