// Types of the QMP commands for a VM's disks (resize, backup), after qemu's
// qapi/block-core.json. blockdev-add/-del and the block-job queries are typed with
// the migration commands, which use them too.

type Empty = Record<string, never>;

export interface BlockCommands {
  /** Grows (or shrinks) the image under a node; the guest's virtio-blk sees a capacity change. */
  block_resize: { args: { "node-name": string; size: number }; result: Empty };
  /** Copies `device` to the node `target` as it is when the job starts (sync full: every block). */
  "blockdev-backup": {
    args: { "job-id": string; device: string; target: string; sync: "full" | "top" | "none"; "auto-dismiss"?: boolean; speed?: number };
    result: Empty;
  };
}
