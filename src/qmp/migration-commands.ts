// Types of the QMP commands a live migration uses, after qemu's qapi/migration.json,
// qapi/block-export.json, qapi/block-core.json and qapi/block.json.

export type MigrationStatus =
  | "none"
  | "setup"
  | "cancelling"
  | "cancelled"
  | "active"
  | "postcopy-active"
  | "postcopy-paused"
  | "postcopy-recover"
  | "completed"
  | "failed"
  | "colo"
  | "pre-switchover"
  | "device"
  | "wait-unplug";

export interface MigrationStats {
  transferred: number;
  remaining: number;
  total: number;
  "dirty-pages-rate"?: number;
  mbps?: number;
  "dirty-sync-count"?: number;
}

export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationStats;
  "total-time"?: number;
  "expected-downtime"?: number;
  downtime?: number;
  "setup-time"?: number;
  "error-desc"?: string;
}

export interface BlockJobInfo {
  type: string;
  device: string;
  len: number;
  offset: number;
  ready: boolean;
  status: string;
  error?: string;
}

type Empty = Record<string, never>;
export type InetAddress = { host: string; port: string };

export interface MigrationCommands {
  "migrate-set-capabilities": { args: { capabilities: { capability: string; state: boolean }[] }; result: Empty };
  "migrate-set-parameters": {
    args: {
      "downtime-limit"?: number;
      "max-bandwidth"?: number;
      "max-postcopy-bandwidth"?: number;
      /** The id of a tls-creds-x509 object; "" turns TLS off. */
      "tls-creds"?: string;
      /** The name the destination's certificate must carry (source side). */
      "tls-hostname"?: string;
      /** The id of an authz object the source's certificate must satisfy (destination side). */
      "tls-authz"?: string;
      "multifd-channels"?: number;
    };
    result: Empty;
  };
  migrate: { args: { uri: string }; result: Empty };
  "migrate-incoming": { args: { uri: string }; result: Empty };
  "migrate-start-postcopy": { args: Record<string, never>; result: Empty };
  migrate_cancel: { args: Record<string, never>; result: Empty };
  "query-migrate": { args: Record<string, never>; result: MigrationInfo };
  "nbd-server-start": { args: { addr: { type: "inet"; data: InetAddress }; "tls-creds"?: string; "tls-authz"?: string }; result: Empty };
  "nbd-server-stop": { args: Record<string, never>; result: Empty };
  "block-export-add": {
    args: { type: "nbd"; id: string; "node-name": string; name: string; writable: boolean };
    result: Empty;
  };
  "blockdev-add": { args: Record<string, unknown>; result: Empty };
  "blockdev-del": { args: { "node-name": string }; result: Empty };
  "blockdev-mirror": {
    args: { "job-id": string; device: string; target: string; sync: "full" | "top" | "none"; "copy-mode"?: "background" | "write-blocking" };
    result: Empty;
  };
  "block-job-cancel": { args: { device: string; force?: boolean }; result: Empty };
  "query-block-jobs": { args: Record<string, never>; result: BlockJobInfo[] };
}
