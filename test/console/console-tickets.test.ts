// Console tickets against a real daemon on TCP, a real qemu and a real headless
// Chromium: the page shows the VM's screen (noVNC) and takes keys on its serial
// console (xterm.js); a ticket opens one session and nothing else; the attacker
// reuses, outlives, borrows and forges tickets, writes through read-only ones,
// comes from another origin, and floods the store.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import puppeteer, { type Browser } from "puppeteer-core";
import t from "tap";
import { freePort } from "../../src/net/free-port.js";
import { openConsole } from "../helpers/console-socket.js";
import { httpGet, mintTicket, openTicketSocket, refusedSocket, rfb, rfbHandshake, type Minted } from "../helpers/console-ticket.js";
import { decodePng, distinctPixels } from "../helpers/png.js";
import { consoleFromDisk, defineShellVm, startDaemon, vmctlJs, waitForBoot, waitForConsole } from "../helpers/daemon.js";

const VM = "cust";
const OTHER = "other";
const TOKEN = "console-test-peer-token-0123456789";
const PANEL = "https://panel.example";
const run = promisify(execFile);
const CHROMIUM = process.env.VMH_CHROMIUM ?? "/usr/bin/chromium";

t.test("console tickets: the page in Chromium, one session per ticket, the attacker refused", async (t) => {
  const port = await freePort("127.0.0.1");
  const base = `http://127.0.0.1:${port}`;
  const d = await startDaemon({ args: ["--listen", `127.0.0.1:${port}`, "--peer-token", TOKEN, "--console-origin", PANEL] });
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await defineShellVm(d, OTHER);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const minted: Minted[] = [];
  const mint = async (vm: string, body: Parameters<typeof mintTicket>[2]) => {
    const m = await mintTicket(d, vm, body);
    minted.push(m);
    return m;
  };

  const browser: Browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root cannot use Chromium's user-namespace sandbox.
    args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--disable-gpu", "--disable-dev-shm-usage"],
  });
  t.teardown(() => browser.close());
  const artefacts = await mkdtemp(path.join(os.tmpdir(), "vmh-console-page-"));
  t.comment(`console page screenshots: ${artefacts}`);

  await waitForBoot(d, VM, 1);
  await waitForConsole(d, VM, /vmh# /);

  await t.test("a minted ticket's URL points at the TCP listener; minting needs the token", async (t) => {
    const m = await mint(VM, { kind: "vnc" });
    t.match(m.ticket, /^[A-Za-z0-9_-]{43}$/, "256 random bits, URL-safe");
    t.equal(m.url, `${base}/console/${m.ticket}`);
    t.equal(m.mode, "rw", "rw unless asked");
    const ttl = Date.parse(m.expiresAt) - Date.now();
    t.ok(ttl > 20_000 && ttl <= 30_000, `30 s by default (${ttl} ms left)`);
    const bad = await d.api.request("POST", `/v1/vms/${VM}/console-tickets`, { kind: "vnc", ttlSec: 301 });
    t.equal(bad.status, 400, "at most 300 s");
    t.match(JSON.parse(bad.body.toString()), { code: "VMH_ERR_VALIDATION", field: "ttlSec" });
    t.equal((await d.api.request("POST", `/v1/vms/nope/console-tickets`, { kind: "vnc" })).status, 404);
    const cli = await run(process.execPath, [vmctlJs, "--socket", d.socket, "console-ticket", VM, "--kind", "serial", "--mode", "ro", "--ttl", "60"]);
    t.match(cli.stdout, new RegExp(`^${base}/console/[A-Za-z0-9_-]{43}\n$`), "vmctl console-ticket prints the URL");
    minted.push({ ticket: cli.stdout.trim().split("/").pop()! } as Minted);
    const overTcp = await httpGet(`${base}/v1/vms/${VM}/console-tickets`, { authorization: `Bearer ${TOKEN}` }, "POST", { kind: "serial", mode: "ro" });
    t.equal(overTcp.status, 201, "a panel with the peer token mints over TCP");
    minted.push(JSON.parse(overTcp.body) as Minted);
    t.equal((await httpGet(`${base}/v1/vms/${VM}/console-tickets`, {}, "POST", { kind: "vnc" })).status, 401, "and without it cannot");
  });

  await t.test("VNC page: noVNC's canvas shows the VM's screen within 15 s", async (t) => {
    const m = await mint(VM, { kind: "vnc", mode: "rw", ttlSec: 60 });
    const page = await browser.newPage();
    t.teardown(() => page.close());
    await page.setViewport({ width: 1024, height: 600 });
    const res = await page.goto(m.url);
    t.equal(res?.status(), 200);
    const csp = res?.headers()["content-security-policy"] ?? "";
    t.match(csp, /script-src 'self'(;|$)/, "scripts from the daemon only, none inline");
    t.match(csp, new RegExp(`frame-ancestors ${PANEL}`), "only the panel may frame it");
    t.equal(res?.headers()["referrer-policy"], "no-referrer", "the ticket in the URL goes nowhere else");
    const started = Date.now();
    await page.waitForFunction(CANVAS_NOT_BLANK, { timeout: 15_000, polling: 200 });
    t.pass(`the canvas has the VM's picture after ${Date.now() - started} ms`);
    t.match(await page.$eval("#vm-name", (e) => e.textContent), VM, "the page names the VM");
    t.match(await page.$eval("#vm-state", (e) => e.textContent), "running", "and its state");
    const file = path.join(artefacts, "vnc-page.png");
    await page.screenshot({ path: file as `${string}.png` });
    t.comment(`screenshot of the VNC page: ${file}`);
    if (process.env.VMH_CONSOLE_DOC_SCREENSHOT) await page.screenshot({ path: process.env.VMH_CONSOLE_DOC_SCREENSHOT as `${string}.png` });

    const roTicket = await mint(VM, { kind: "vnc", mode: "ro" });
    const roPage = await browser.newPage();
    t.teardown(() => roPage.close());
    await roPage.goto(roTicket.url);
    await roPage.waitForFunction(CANVAS_NOT_BLANK, { timeout: 15_000, polling: 200 });
    t.equal(await roPage.$eval("#session-mode", (e) => e.textContent), "view only", "a read-only page says it is view only");
    t.ok(await roPage.$eval("#ctrl-alt-del", (e) => e.hasAttribute("hidden")), "and offers no Ctrl-Alt-Del");
    t.equal(await roPage.evaluate("window.vmhConsole.rfb.viewOnly"), true, "noVNC is view-only");

    const again = await httpGet(m.url);
    t.equal(again.status, 410, "the page of a used ticket: 410");
    t.match(again.body, /already used/, "saying it was used");
    const reuse = await refusedSocket(m.url);
    t.equal(reuse.status, 410, "a second session from the same ticket is refused");
    t.equal(reuse.problem.code, "VMH_ERR_CONSOLE_TICKET_SPENT");
  });

  await t.test("serial page: typed into xterm.js, the guest's shell answers", async (t) => {
    const m = await mint(VM, { kind: "serial", mode: "rw" });
    const page = await browser.newPage();
    t.teardown(() => page.close());
    await page.goto(m.url);
    await page.waitForFunction(SESSION_IS("open"), { timeout: 10_000 });
    await page.click("#screen");
    await page.keyboard.type("echo $((6*7))\n");
    await page.waitForFunction(TERMINAL_HAS_LINE("42"), { timeout: 15_000, polling: 100 });
    t.pass("42 is on a line of the page's terminal buffer");
    await page.screenshot({ path: path.join(artefacts, "serial-page.png") as `${string}.png` });
  });

  await t.test("a ticket is refused when expired, unknown, for a stopped VM, or from another origin", async (t) => {
    const short = await mint(VM, { kind: "serial", ttlSec: 1 });
    await sleep(1_100);
    const expiredPage = await httpGet(short.url);
    t.equal(expiredPage.status, 410, "an expired ticket's page");
    t.match(expiredPage.body, /expired/);
    const expired = await refusedSocket(short.url);
    t.equal(expired.status, 410);
    t.match(expired.problem, { code: "VMH_ERR_CONSOLE_TICKET_SPENT", reason: "expired" });

    const forged = `${base}/console/${"A".repeat(43)}`;
    t.equal((await httpGet(forged)).status, 403, "a ticket never minted: 403");
    t.equal((await refusedSocket(forged)).problem.code, "VMH_ERR_CONSOLE_TICKET");

    // A ticket names its VM: nothing in the URL can point it at another.
    const other = await mint(OTHER, { kind: "serial", mode: "rw" });
    const otherPage = await httpGet(other.url);
    t.equal(otherPage.status, 200);
    t.match(otherPage.body, /data-vm="other"/);
    t.match(otherPage.body, /data-state="stopped"/);
    t.equal((await httpGet(`${other.url}?vm=${VM}`)).status, 400, "no query can name another VM");
    const notRunning = await refusedSocket(other.url);
    t.equal(notRunning.status, 409, `${OTHER}'s ticket opens ${OTHER} (stopped), not ${VM}`);
    t.equal(notRunning.problem.code, "VMH_ERR_VM_STATE");

    const m = await mint(VM, { kind: "serial" });
    const evil = await refusedSocket(m.url, { origin: "https://evil.example" });
    t.equal(evil.status, 403, "a page of another origin may not open the socket");
    t.equal(evil.problem.code, "VMH_ERR_CONSOLE_ORIGIN");
    const lookalike = await refusedSocket(m.url, { origin: `${PANEL}.evil.example` });
    t.equal(lookalike.problem.code, "VMH_ERR_CONSOLE_ORIGIN", "nor one that merely starts like the panel's");
    const fromPanel = await openTicketSocket(m.url, { origin: PANEL });
    t.pass("the refusals did not use the ticket up: the panel's origin opens it");
    fromPanel.ws.close();
  });

  await t.test("no other route takes a ticket, and the routes of a ticket take no token", async (t) => {
    const m = await mint(VM, { kind: "serial" });
    for (const [method, url] of [
      ["GET", "/v1/vms"],
      ["GET", `/v1/vms/${VM}`],
      ["GET", `/v1/vms/${VM}/screenshot`],
      ["GET", `/v1/vms/${VM}/console/log`],
      ["POST", `/v1/vms/${VM}/console-tickets`],
      ["GET", "/openapi.json"],
    ] as const) {
      const asBearer = await httpGet(`${base}${url}`, { authorization: `Bearer ${m.ticket}` }, method);
      const asQuery = await httpGet(`${base}${url}?ticket=${m.ticket}`, {}, method);
      t.same([asBearer.status, asQuery.status], [401, 401], `${method} ${url} with the ticket: 401`);
    }
    const hub = await refusedSocket(`${base}/v1/vms/${VM}/console`, { headers: { authorization: `Bearer ${m.ticket}` } }).catch((e: Error) => e);
    t.equal((hub as { status?: number }).status, 401, "nor the token-only console WebSocket");
    t.equal((await httpGet(`${base}/console/${m.ticket}/extra`)).status, 401, "a path below the ticket's is not the page");
    t.equal((await httpGet(`${base}/v1/vms`, { authorization: `Bearer ${TOKEN}` })).status, 200, "(while the token works over TCP)");
    const s = await openTicketSocket(m.url);
    t.pass("the ticket alone opens its session: no token in the browser");
    s.ws.close();
  });

  await t.test("read-only tickets: the serial viewer's keys and the VNC viewer's input never reach the VM", async (t) => {
    const ro = await openTicketSocket((await mint(VM, { kind: "serial", mode: "ro" })).url);
    const writer = await openConsole(d, VM, "rw");
    ro.ws.send(Buffer.from("echo RO-$((7*8))\n"));
    await sleep(300);
    writer.type("echo RW-$((8*8))\n");
    await writer.waitFor(/^RW-64\r?$/m);
    t.notMatch(writer.text(), /RO-56/, "the read-only ticket's keys were not typed");
    t.match(ro.received().toString(), /RW-64/, "while it sees the output");
    writer.ws.close();
    ro.ws.close();

    // Ctrl-Alt-Del reboots the guest (its kernel restarts at once). First through a read-write ticket,
    // to see that it does and how long the console takes to show it; then the same bytes read-only.
    const consoleLog = path.join(d.stateDir, "vms", VM, "console.log");
    const logSize = async () => (await stat(consoleLog)).size;
    const rebootSince = async (offset: number, boots: number) => {
      const after = (await readFile(consoleLog)).subarray(offset).toString("latin1");
      return /reboot: Restarting system/.test(after) || (await consoleFromDisk(d, VM)).bootIds.length > boots;
    };
    const boots = (await consoleFromDisk(d, VM)).bootIds.length;
    const control = await openTicketSocket((await mint(VM, { kind: "vnc", mode: "rw" })).url);
    await rfbHandshake(control);
    const before = await logSize();
    const sent = Date.now();
    control.ws.send(rfb.ctrlAltDel());
    let shownMs = -1;
    for (let i = 0; i < 600 && shownMs < 0; i++) {
      if (await rebootSince(before, boots)) shownMs = Date.now() - sent;
      else await sleep(100);
    }
    t.ok(shownMs >= 0, `Ctrl-Alt-Del through a read-write ticket rebooted the guest (seen on its console after ${shownMs} ms)`);
    control.ws.close();
    await waitForBoot(d, VM, boots + 1, 60_000);

    const view = await openTicketSocket((await mint(VM, { kind: "vnc", mode: "ro" })).url);
    const { width, height, at } = await rfbHandshake(view);
    const roBefore = await logSize();
    view.ws.send(Buffer.concat([rfb.ctrlAltDel(), rfb.pointer(10, 10, 1), rfb.cutText("rm -rf /\n"), rfb.updateRequest(width, height)]));
    const update = await view.bytes(at, 1);
    t.equal(update[0], 0, "the read-only session still gets frame updates");
    // Twice as long as the read-write reboot took to show, and at least 5 s.
    const watchMs = Math.max(5_000, 2 * shownMs);
    const until = Date.now() + watchMs;
    let rebooted = false;
    while (!rebooted && Date.now() < until) {
      rebooted = await rebootSince(roBefore, boots + 1);
      await sleep(200);
    }
    t.notOk(rebooted, `Ctrl-Alt-Del through a read-only ticket did not reboot the guest (watched ${watchMs} ms)`);
    view.ws.send(Buffer.from([99, 0, 0, 0]));
    t.equal((await view.closed).code, 4003, "a message the filter cannot frame ends the read-only session");
  });

  await t.test("thumbnails for the panel's VM list keep the screen's aspect", async (t) => {
    const full = decodePng((await d.api.request("GET", `/v1/vms/${VM}/screenshot`)).body);
    const res = await d.api.request("GET", `/v1/vms/${VM}/screenshot?width=320`);
    t.equal(res.headers["content-type"], "image/png");
    const thumb = decodePng(res.body);
    t.equal(thumb.width, 320, `320 wide (the screen is ${full.width}x${full.height})`);
    t.ok(Math.abs(thumb.height - (full.height * 320) / full.width) <= 1, `height ${thumb.height} in proportion`);
    t.ok(distinctPixels(thumb) > 1, "not blank");
    const big = decodePng((await d.api.request("GET", `/v1/vms/${VM}/screenshot?width=4096`)).body);
    t.same([big.width, big.height], [full.width, full.height], "never scaled up");
    const bad = await d.api.request("GET", `/v1/vms/${VM}/screenshot?width=0`);
    t.match(JSON.parse(bad.body.toString()), { status: 400, code: "VMH_ERR_VALIDATION", field: "width" });
  });

  await t.test("the session ends when the VM stops, and the page says so", async (t) => {
    const m = await mint(VM, { kind: "serial", mode: "ro" });
    const page = await browser.newPage();
    t.teardown(() => page.close());
    await page.goto(m.url);
    await page.waitForFunction(SESSION_IS("open"), { timeout: 10_000 });
    const restartTicket = await mint(VM, { kind: "serial", ttlSec: 300 });
    await d.api.json("POST", `/v1/vms/${VM}/stop`);
    await page.waitForFunction(SESSION_IS("ended"), { timeout: 10_000 });
    t.match(await page.$eval("#status", (e) => e.textContent), /VM stopped/);
    t.equal(await page.$eval("#vm-state", (e) => e.textContent), "stopped");

    await d.kill();
    await d.restart();
    t.equal((await httpGet(restartTicket.url)).status, 403, "a ticket minted before a restart is refused afterwards");
    t.equal((await refusedSocket(restartTicket.url)).problem.code, "VMH_ERR_CONSOLE_TICKET");
  });

  await t.test("many tickets minted and dropped: the store stays bounded", async (t) => {
    let refused = 0;
    let first429: { code?: string; scope?: string } | undefined;
    for (let i = 0; i < 1100; i++) {
      const res = await d.api.request("POST", `/v1/vms/${VM}/console-tickets`, { kind: "vnc", ttlSec: 300 });
      if (res.status === 429) {
        refused++;
        first429 ??= JSON.parse(res.body.toString());
      }
    }
    t.equal(refused, 1100 - 1024, "minting stops at the cap of 1024 live tickets (the restarted daemon held none)");
    t.match(first429, { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "console-tickets" });
  });

  const log = d.log();
  const leaked = minted.filter((m) => log.includes(m.ticket));
  const where = log.split("\n").filter((line) => leaked.some((m) => line.includes(m.ticket)));
  t.same(where.map((line) => leaked.reduce((l, m) => l.replaceAll(m.ticket, "<LEAKED>"), line)), [], `no ticket appears in the daemon's log (${log.length} bytes, level debug)`);
  t.match(log, /\/console\/<ticket>/, "the console's requests are logged with the ticket redacted");
});

// Run in the page (the test is compiled without the DOM's types, so they are text).

/** Whether the page's status says the session is in this phase (console-page.js sets data-session). */
const SESSION_IS = (phase: string) => `document.body.dataset.session === ${JSON.stringify(phase)}`;

/** Whether noVNC's canvas has more than one colour. */
const CANVAS_NOT_BLANK = `(() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || canvas.width < 10 || canvas.height < 10) return false;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 4; i < data.length; i += 4) {
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) return true;
  }
  return false;
})()`;

/** Whether a line of the terminal's buffer reads exactly `text`. */
const TERMINAL_HAS_LINE = (text: string) => `(() => {
  const buffer = window.vmhConsole?.term?.buffer.active;
  if (!buffer) return false;
  for (let i = 0; i < buffer.length; i++) if (buffer.getLine(i)?.translateToString(true).trim() === ${JSON.stringify(text)}) return true;
  return false;
})()`;
