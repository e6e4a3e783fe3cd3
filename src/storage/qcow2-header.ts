// The part of a qcow2 header that says which other files the image makes qemu
// open: its backing file (and that file's format) and an external data file.
// Read by the daemon itself, so looking at an untrusted image opens nothing but
// that image: `qemu-img info` would already open a data file it names.
// Layout: qemu's docs/interop/qcow2.txt.

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_DATA_FILE = 0x44415441;
/** Incompatible feature bit 2: the guest's data lives in an external file. */
const INCOMPAT_DATA_FILE = 1n << 2n;

export interface Qcow2Header {
  version: number;
  virtualSize: number;
  clusterBits: number;
  /** The backing file's name as written (relative names are relative to the image's directory). */
  backingFile?: string;
  /** The backing file's format as recorded; absent means qemu would guess it from content. */
  backingFormat?: string;
  /** The image keeps its data in another file (the incompatible feature bit). */
  hasDataFile: boolean;
  /** That file's name, if the image records one. */
  dataFile?: string;
  /** 0: none; 1: AES; 2: LUKS. */
  cryptMethod: number;
}

export class Qcow2HeaderError extends Error {}

/** How much of the file to read: the header and its extensions lie in the first cluster (at most 2 MiB). */
export const QCOW2_HEADER_READ_BYTES = 2 * 1024 * 1024;

/** Whether `buf` starts like a qcow2 image. */
export function isQcow2(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === QCOW2_MAGIC;
}

/**
 * Parses the header from the file's first bytes. `buf` must hold the first
 * cluster (or the whole file if smaller); a name that lies beyond it is an error,
 * never a guess.
 */
export function parseQcow2Header(buf: Buffer): Qcow2Header {
  if (buf.length < 72 || !isQcow2(buf)) throw new Qcow2HeaderError("not a qcow2 image (no QFI\\xfb magic)");
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new Qcow2HeaderError(`qcow2 version ${version} is not supported`);
  const backingOffset = buf.readBigUInt64BE(8);
  const backingSize = buf.readUInt32BE(16);
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw new Qcow2HeaderError(`cluster_bits ${clusterBits} is out of range`);
  const clusterSize = 1 << clusterBits;
  const virtualSize = Number(buf.readBigUInt64BE(24));
  const cryptMethod = buf.readUInt32BE(32);
  let headerLength = 72;
  let incompatible = 0n;
  if (version === 3) {
    if (buf.length < 104) throw new Qcow2HeaderError("truncated qcow2 v3 header");
    incompatible = buf.readBigUInt64BE(72);
    headerLength = buf.readUInt32BE(100);
    if (headerLength < 104 || headerLength > clusterSize) throw new Qcow2HeaderError(`header_length ${headerLength} is out of range`);
  }
  const out: Qcow2Header = { version, virtualSize, clusterBits, hasDataFile: (incompatible & INCOMPAT_DATA_FILE) !== 0n, cryptMethod };
  if (backingOffset !== 0n) {
    const start = Number(backingOffset);
    if (backingSize === 0 || backingSize > 1023 || start + backingSize > Math.min(clusterSize, buf.length)) {
      throw new Qcow2HeaderError("the backing file name lies outside the image's first cluster");
    }
    out.backingFile = buf.toString("utf8", start, start + backingSize);
  }
  // Extensions run from the header's end to the backing name (or the cluster's end), as qemu reads them.
  const extEnd = Math.min(backingOffset !== 0n ? Number(backingOffset) : clusterSize, buf.length);
  let off = headerLength;
  for (let n = 0; off + 8 <= extEnd; n++) {
    if (n > 1024) throw new Qcow2HeaderError("too many header extensions");
    const type = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (type === EXT_END) break;
    const data = off + 8;
    if (data + len > extEnd) throw new Qcow2HeaderError(`header extension 0x${type.toString(16)} overruns the header`);
    const text = buf.toString("utf8", data, data + len);
    if (type === EXT_BACKING_FORMAT) out.backingFormat = text;
    else if (type === EXT_DATA_FILE) out.dataFile = text;
    off = data + Math.ceil(len / 8) * 8;
  }
  return out;
}
