import t from "tap";
import { completeDefinition, vmCreateSchema, vmDefinitionSchema } from "../../src/definition/vm-definition.js";

t.test("defaults and generated fields", async (t) => {
  const d = completeDefinition(vmCreateSchema.parse({ name: "a", nics: [{}], disks: [{ name: "root", sizeGiB: 2 }] }));
  t.equal(d.machine, "q35");
  t.equal(d.firmware, "bios");
  t.equal(d.vcpus, 1);
  t.equal(d.rng, true);
  t.equal(d.onCrash, "stop");
  t.match(d.uuid, /^[0-9a-f-]{36}$/);
  t.match(d.nics[0]!.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
  t.equal(d.disks[0]!.format, "qcow2");
  t.ok(vmDefinitionSchema.safeParse(d).success, "the stored form validates");
});

const bad: [string, unknown][] = [
  ["name with slash", { name: "../x" }],
  ["upper case", { name: "A" }],
  ["64 chars", { name: "a".repeat(64) }],
  ["vcpus 0", { name: "a", vcpus: 0 }],
  ["memory 0", { name: "a", memoryMiB: 0 }],
  ["unknown field", { name: "a", colour: "red" }],
  ["disk with both size and image", { name: "a", disks: [{ name: "d", sizeGiB: 1, image: "x" }] }],
  ["duplicate disk", { name: "a", disks: [{ name: "d", sizeGiB: 1 }, { name: "d", sizeGiB: 1 }] }],
  ["initrd without kernel", { name: "a", boot: { initrd: "i" } }],
  ["bad mac", { name: "a", nics: [{ mac: "zz" }] }],
];
for (const [what, input] of bad) {
  t.test(`refuses ${what}`, async (t) => {
    t.notOk(vmCreateSchema.safeParse(input).success);
  });
}
