// The read-only endpoints an orchestrator starts with: liveness, the host's
// inventory, and the OpenAPI document generated from the routes' schemas.
import t from "tap";
import { startDaemon } from "../helpers/daemon.js";

t.test("healthz, host inventory and the OpenAPI document", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());

  t.same(await d.api.json("GET", "/healthz"), { status: "ok" });

  const host = await d.api.json<Record<string, any>>("GET", "/v1/host");
  t.equal(host.accel, "tcg", "the accelerator in use");
  t.match(host.qemu.version, /^\d+\.\d+/, "qemu's version");
  t.ok(host.cpu.logical >= 1, "CPU count");
  t.ok(host.memory.totalBytes > 0 && host.memory.availableBytes > 0, "memory");
  t.equal(host.pools[0].name, "images");
  t.ok(host.pools[0].freeBytes > 0, "pool free space");
  t.same(host.vms, { defined: 0, running: 0 });

  // Served by the daemon itself; test/http/api-document.test.ts checks it route by route.
  const doc = await d.api.json<Record<string, any>>("GET", "/openapi.json");
  t.equal(doc.openapi, "3.0.3");
  for (const p of ["/v1/vms", "/v1/vms/{name}", "/v1/vms/{name}/start", "/v1/vms/{name}/shutdown", "/v1/vms/{name}/console/log", "/v1/host", "/openapi.json"]) {
    t.ok(doc.paths[p], `documents ${p}`);
  }
  const create = doc.components.schemas.VmCreate;
  t.same(create.required, ["name"], "only the name is required");
  t.equal(create.properties.name.pattern, "^[a-z0-9][a-z0-9-]{0,62}$", "the name rule comes from the schema");
  t.equal(create.additionalProperties, false, "unknown fields are refused, and documented so");
  t.ok(doc.components.schemas.Problem.properties.code.enum.includes("VMH_ERR_VM_NOT_FOUND"), "error codes listed");

  // The answer is what the VM view holds, not what the response schema lists: nothing is filtered out.
  await d.api.json("POST", "/v1/vms", { name: "documented", memoryMiB: 64, disks: [{ name: "root", sizeGiB: 1 }] });
  const vm = await d.api.json<Record<string, any>>("GET", "/v1/vms/documented");
  t.same(Object.keys(vm).sort(), ["definition", "name", "state", "uuid"], "the VM's fields");
  t.equal(vm.definition.disks[0].name, "root", "the definition as stored");
  t.ok(vm.definition.createdAt, "with its creation time");
  const vmProps = Object.keys(doc.components.schemas.Vm.properties);
  t.ok(Object.keys(vm).every((k) => vmProps.includes(k)), "each field is documented");
  const defProps = Object.keys(doc.components.schemas.VmDefinition.properties);
  t.same(Object.keys(vm.definition).filter((k) => !defProps.includes(k)), [], "each definition field is documented");
});
