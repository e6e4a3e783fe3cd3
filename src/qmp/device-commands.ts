// Types of the QMP commands that plug devices in and out of a running VM, read
// its PCI topology and drive the memory balloon, after qemu's qapi/qdev.json,
// net.json, misc.json (query-pci), machine.json (balloon) and qom.json, as qemu
// 7.2 has them. blockdev-add and blockdev-del are typed with the migration's.

type Empty = Record<string, never>;

/** One PCI function as query-pci reports it (PciDeviceInfo, abridged). */
export interface PciDeviceInfo {
  bus: number;
  slot: number;
  function: number;
  /** The device's qdev id (`-device ...,id=`), empty when it has none. */
  qdev_id: string;
  /** A bridge (a PCIe root port is one): the devices behind it. */
  pci_bridge?: { devices?: PciDeviceInfo[] };
}

export interface PciInfo {
  bus: number;
  devices: PciDeviceInfo[];
}

export interface ObjectPropertyInfo {
  name: string;
  type: string;
}

export interface DeviceCommands {
  /** Arguments as on the command line's JSON `-device`: driver, id, bus and the driver's properties. */
  device_add: { args: Record<string, unknown>; result: Empty };
  /** Asks the guest to release the device; DEVICE_DELETED says when it has. */
  device_del: { args: { id: string }; result: Empty };
  /** As the command line's JSON `-object`: qom-type, id and the type's properties. */
  "object-add": { args: Record<string, unknown>; result: Empty };
  "object-del": { args: { id: string }; result: Empty };
  netdev_add: { args: Record<string, unknown>; result: Empty };
  netdev_del: { args: { id: string }; result: Empty };
  "query-pci": { args: Empty; result: PciInfo[] };
  /** Lists the children of a QOM path: `/machine/peripheral` holds every device with an id. */
  "qom-list": { args: { path: string }; result: ObjectPropertyInfo[] };
  /** One property of a QOM object: a throttle group's `limits` (ThrottleLimits) is set and read so. */
  "qom-set": { args: { path: string; property: string; value: unknown }; result: Empty };
  "qom-get": { args: { path: string; property: string }; result: unknown };
  /** The guest's memory target, in bytes; the guest's balloon driver gets there in its own time. */
  balloon: { args: { value: number }; result: Empty };
  /** What the guest has given back so far: `actual` is the memory it has left, in bytes. */
  "query-balloon": { args: Empty; result: { actual: number } };
}
