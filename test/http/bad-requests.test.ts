// A table of bad requests: each gets a 4xx problem document that names what is
// wrong, and nothing is created or changed on disk.
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { installGuest, startDaemon, type TestDaemon } from "../helpers/daemon.js";

interface Case {
  what: string;
  method: string;
  url: string;
  body?: unknown;
  raw?: string;
  contentType?: string;
  status: number;
  code: string;
  /** Text the problem's field or detail must contain. */
  names: RegExp;
}

const vm = (over: Record<string, unknown>) => ({ name: "fresh", memoryMiB: 128, ...over });

const cases: Case[] = [
  { what: "name with path traversal", method: "POST", url: "/v1/vms", body: vm({ name: "../x" }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "name with a semicolon", method: "POST", url: "/v1/vms", body: vm({ name: "a;b" }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "upper-case name", method: "POST", url: "/v1/vms", body: vm({ name: "A" }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "64-character name", method: "POST", url: "/v1/vms", body: vm({ name: "a".repeat(64) }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "empty name", method: "POST", url: "/v1/vms", body: vm({ name: "" }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "name of the wrong type", method: "POST", url: "/v1/vms", body: vm({ name: 42 }), status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "missing name", method: "POST", url: "/v1/vms", body: { memoryMiB: 128 }, status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "memory 0", method: "POST", url: "/v1/vms", body: vm({ memoryMiB: 0 }), status: 400, code: "VMH_ERR_VALIDATION", names: /memoryMiB/ },
  { what: "memory 10^9 MiB", method: "POST", url: "/v1/vms", body: vm({ memoryMiB: 1e9 }), status: 400, code: "VMH_ERR_VALIDATION", names: /memoryMiB/ },
  { what: "memory as a string", method: "POST", url: "/v1/vms", body: vm({ memoryMiB: "512" }), status: 400, code: "VMH_ERR_VALIDATION", names: /memoryMiB/ },
  { what: "vcpus 0", method: "POST", url: "/v1/vms", body: vm({ vcpus: 0 }), status: 400, code: "VMH_ERR_VALIDATION", names: /vcpus/ },
  { what: "vcpus 1000", method: "POST", url: "/v1/vms", body: vm({ vcpus: 1000 }), status: 400, code: "VMH_ERR_VALIDATION", names: /vcpus/ },
  { what: "fractional vcpus", method: "POST", url: "/v1/vms", body: vm({ vcpus: 1.5 }), status: 400, code: "VMH_ERR_VALIDATION", names: /vcpus/ },
  { what: "unknown top-level field", method: "POST", url: "/v1/vms", body: vm({ colour: "red" }), status: 400, code: "VMH_ERR_VALIDATION", names: /colour/ },
  { what: "unknown field in a disk", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d", sizeGiB: 1, speed: 9 }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /disks\.0\.speed/ },
  { what: "disk image outside the pools (absolute)", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d", image: "/etc/passwd", format: "raw" }] }), status: 400, code: "VMH_ERR_PATH_OUTSIDE_POOL", names: /disks\.0\.image/ },
  { what: "disk image outside the pools (../)", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d", image: "../../../etc/shadow", format: "raw" }] }), status: 400, code: "VMH_ERR_PATH_OUTSIDE_POOL", names: /disks\.0\.image/ },
  { what: "kernel outside the pools", method: "POST", url: "/v1/vms", body: vm({ boot: { kernel: "/boot/vmlinuz" } }), status: 400, code: "VMH_ERR_PATH_OUTSIDE_POOL", names: /boot\.kernel/ },
  { what: "kernel that does not exist", method: "POST", url: "/v1/vms", body: vm({ boot: { kernel: "nope" } }), status: 400, code: "VMH_ERR_FILE_NOT_FOUND", names: /boot\.kernel/ },
  { what: "disk without size or image", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d" }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /disks\.0/ },
  { what: "negative disk size", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d", sizeGiB: -1 }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /disks\.0\.sizeGiB/ },
  { what: "disk name with a slash", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "a/b", sizeGiB: 1 }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /disks\.0\.name/ },
  { what: "unknown disk format", method: "POST", url: "/v1/vms", body: vm({ disks: [{ name: "d", sizeGiB: 1, format: "vmdk" }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /disks\.0\.format/ },
  { what: "unknown network type", method: "POST", url: "/v1/vms", body: vm({ nics: [{ network: { type: "bridge" } }] }), status: 400, code: "VMH_ERR_VALIDATION", names: /nics\.0\.network/ },
  { what: "unknown firmware", method: "POST", url: "/v1/vms", body: vm({ firmware: "coreboot" }), status: 400, code: "VMH_ERR_VALIDATION", names: /firmware/ },
  { what: "bad onCrash", method: "POST", url: "/v1/vms", body: vm({ onCrash: "explode" }), status: 400, code: "VMH_ERR_VALIDATION", names: /onCrash/ },
  { what: "body is not JSON", method: "POST", url: "/v1/vms", raw: "{not json", contentType: "application/json", status: 400, code: "VMH_ERR_VALIDATION", names: /body/ },
  { what: "body is an array", method: "POST", url: "/v1/vms", body: [1, 2], status: 400, code: "VMH_ERR_VALIDATION", names: /body/ },
  { what: "wrong content type", method: "POST", url: "/v1/vms", raw: "name=x", contentType: "application/x-www-form-urlencoded", status: 415, code: "VMH_ERR_UNSUPPORTED_MEDIA_TYPE", names: /body/ },
  { what: "existing name", method: "POST", url: "/v1/vms", body: vm({ name: "runner" }), status: 409, code: "VMH_ERR_VM_EXISTS", names: /name/ },
  { what: "unknown VM", method: "GET", url: "/v1/vms/nobody", status: 404, code: "VMH_ERR_VM_NOT_FOUND", names: /nobody/ },
  { what: "start of an unknown VM", method: "POST", url: "/v1/vms/nobody/start", status: 404, code: "VMH_ERR_VM_NOT_FOUND", names: /nobody/ },
  { what: "invalid name in the path", method: "GET", url: "/v1/vms/Bad_Name", status: 400, code: "VMH_ERR_VALIDATION", names: /name/ },
  { what: "unknown action", method: "POST", url: "/v1/vms/runner/explode", status: 400, code: "VMH_ERR_VALIDATION", names: /action/ },
  { what: "start of a running VM", method: "POST", url: "/v1/vms/runner/start", status: 409, code: "VMH_ERR_VM_STATE", names: /running/ },
  { what: "resume of a running VM", method: "POST", url: "/v1/vms/runner/resume", status: 409, code: "VMH_ERR_VM_STATE", names: /running/ },
  { what: "delete of a running VM", method: "DELETE", url: "/v1/vms/runner", status: 409, code: "VMH_ERR_VM_STATE", names: /running/ },
  { what: "stop of a stopped VM", method: "POST", url: "/v1/vms/idle/stop", status: 409, code: "VMH_ERR_VM_STATE", names: /stopped/ },
  { what: "shutdown timeout of the wrong type", method: "POST", url: "/v1/vms/runner/shutdown", body: { timeoutSec: "soon" }, status: 400, code: "VMH_ERR_VALIDATION", names: /timeoutSec/ },
  { what: "shutdown timeout 0", method: "POST", url: "/v1/vms/runner/shutdown", body: { timeoutSec: 0 }, status: 400, code: "VMH_ERR_VALIDATION", names: /timeoutSec/ },
  { what: "a body on start", method: "POST", url: "/v1/vms/runner/start", body: { force: true }, status: 400, code: "VMH_ERR_VALIDATION", names: /force/ },
  { what: "negative console offset", method: "GET", url: "/v1/vms/runner/console/log?offset=-5", status: 400, code: "VMH_ERR_VALIDATION", names: /offset/ },
  { what: "console page over 1 MiB", method: "GET", url: "/v1/vms/runner/console/log?limit=1048577", status: 400, code: "VMH_ERR_VALIDATION", names: /limit/ },
  { what: "unknown query parameter", method: "POST", url: "/v1/vms/runner/pause?now=1", status: 400, code: "VMH_ERR_VALIDATION", names: /now/ },
  { what: "unknown endpoint", method: "GET", url: "/v2/everything", status: 404, code: "VMH_ERR_NOT_FOUND", names: /v2/ },
];

async function snapshotState(dir: string): Promise<string> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      // Logs grow while the guest runs; everything else must stay as it was.
      if (e.name.endsWith(".log")) continue;
      if (e.isDirectory()) {
        out.push(`${p}/`);
        await walk(p);
      } else {
        const st = await stat(p);
        out.push(`${p} ${st.size} ${e.name.endsWith(".json") ? await readFile(p, "utf8") : st.mtimeMs}`);
      }
    }
  };
  await walk(dir);
  return out.join("\n");
}

t.test("bad requests get a 4xx naming the problem and change nothing", async (t) => {
  const d: TestDaemon = await startDaemon();
  t.teardown(() => d.cleanup());
  const guest = await installGuest(d);
  await d.api.json("POST", "/v1/vms", {
    name: "runner",
    memoryMiB: 128,
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
  });
  await d.api.json("POST", "/v1/vms", { name: "idle", memoryMiB: 128 });
  const running = await d.api.json<VmJson>("POST", "/v1/vms/runner/start");
  t.equal(running.state, "running");

  t.ok(cases.length >= 25, `${cases.length} cases`);
  for (const c of cases) {
    const before = await snapshotState(d.stateDir);
    const res = c.raw !== undefined ? await rawRequest(d, c) : await d.api.request(c.method, c.url, c.body);
    const text = res.body.toString("utf8");
    let problem: { code?: string; field?: string; detail?: string; status?: number } = {};
    try {
      problem = JSON.parse(text) as typeof problem;
    } catch {
      // asserted below
    }
    t.equal(res.status, c.status, `${c.what}: HTTP ${c.status}`);
    t.equal(String(res.headers["content-type"]).split(";")[0], "application/problem+json", `${c.what}: problem+json`);
    t.equal(problem.code, c.code, `${c.what}: code ${c.code}`);
    t.match(`${problem.field ?? ""} ${problem.detail ?? ""}`, c.names, `${c.what}: names the problem (${problem.detail})`);
    t.equal(await snapshotState(d.stateDir), before, `${c.what}: nothing changed on disk`);
  }
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/runner")).state, "running", "the running VM was not disturbed");
});

async function rawRequest(d: TestDaemon, c: Case) {
  const http = await import("node:http");
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    const req = http.request(
      { socketPath: d.socket, method: c.method, path: c.url, headers: { "content-type": c.contentType ?? "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (x: Buffer) => chunks.push(x));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.end(c.raw);
  });
}
