// Types of the QMP commands that read block devices and change removable media
// (a CD-ROM's tray and disc), after qemu's qapi/block.json and block-core.json as
// qemu 7.2 has them. blockdev-add and blockdev-del are typed with the migration's.

type Empty = Record<string, never>;

/** Where a command finds the drive: by its qdev id (`-device ...,id=`). */
type DriveId = { id: string };

/** The medium in a drive, as query-block reports it (BlockDeviceInfo, abridged). */
export interface InsertedMedium {
  /** The image's file name. */
  file: string;
  "node-name"?: string;
  ro: boolean;
  drv: string;
}

/** One block backend (BlockInfo). A `-device` drive attached by node name has an empty `device` and its qdev id in `qdev`. */
export interface BlockInfo {
  device: string;
  qdev?: string;
  type: string;
  removable: boolean;
  locked: boolean;
  inserted?: InsertedMedium;
  /** Only for drives with a tray. */
  tray_open?: boolean;
}

export interface RemovableMediaCommands {
  "query-block": { args: Empty; result: BlockInfo[] };
  /** force: open even if the guest locked the tray (otherwise the guest is only asked). */
  "blockdev-open-tray": { args: DriveId & { force?: boolean }; result: Empty };
  "blockdev-close-tray": { args: DriveId; result: Empty };
  /** The tray must be open. */
  "blockdev-remove-medium": { args: DriveId; result: Empty };
  /** The tray must be open and the drive empty. */
  "blockdev-insert-medium": { args: DriveId & { "node-name": string }; result: Empty };
}
