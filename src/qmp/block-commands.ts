// Types of the QMP commands for a VM's disks (resize, backup), after qemu's
// qapi/block-core.json. blockdev-add/-del and the block-job queries are typed with
// the migration commands, which use them too.

type Empty = Record<string, never>;

/** The counters of one block node, as query-blockstats reports them (only what vmhostd reads). */
export interface BlockDeviceStats {
  rd_bytes: number;
  wr_bytes: number;
  rd_operations: number;
  wr_operations: number;
  flush_operations: number;
  /** Nanoseconds spent on each kind of request, summed. */
  rd_total_time_ns: number;
  wr_total_time_ns: number;
  flush_total_time_ns: number;
}

/**
 * One entry of query-blockstats. With -blockdev, `device` (the legacy drive id) is
 * empty; the attached device is named by `qdev` (its QOM path, or id) and the root
 * node by `node-name`.
 */
export interface BlockStatsEntry {
  device?: string;
  qdev?: string;
  "node-name"?: string;
  stats: BlockDeviceStats;
}

export interface BlockCommands {
  /** I/O counters of every block backend attached to a device. */
  "query-blockstats": { args: { "query-nodes"?: boolean }; result: BlockStatsEntry[] };
  /** Grows (or shrinks) the image under a node; the guest's virtio-blk sees a capacity change. */
  block_resize: { args: { "node-name": string; size: number }; result: Empty };
  /** Copies `device` to the node `target` as it is when the job starts (sync full: every block). */
  "blockdev-backup": {
    args: { "job-id": string; device: string; target: string; sync: "full" | "top" | "none"; "auto-dismiss"?: boolean; speed?: number };
    result: Empty;
  };
}
