// The arithmetic of a log kept to its newest bytes in two files: the live file a
// writer appends to, and one rotated file (`.1`) holding the bytes just before
// it. Positions are logical: counted from the first byte ever written, so a
// reader's offset keeps its meaning across rotations. Pure, so it is tested alone.

/** Where the two files sit in the whole stream. */
export interface LogLayout {
  /** Logical position of the live file's first byte (bytes rotated away or into `.1` so far). */
  currentStart: number;
  rotatedSize: number;
  currentSize: number;
}

export function retainedStart(l: LogLayout): number {
  return Math.max(0, l.currentStart - l.rotatedSize);
}

export function logEnd(l: LogLayout): number {
  return l.currentStart + l.currentSize;
}

/** A byte range of one of the two files. */
export interface FileRange {
  file: "rotated" | "current";
  position: number;
  length: number;
}

export interface ReadPlan {
  /** Logical position of the first byte returned: later than asked when that byte is gone. */
  from: number;
  /** Bytes between the asked offset and `from` that were rotated away. */
  skipped: number;
  ranges: FileRange[];
  /** Where the next read continues. */
  next: number;
}

/**
 * What to read for `limit` bytes from logical `offset`. An offset before the
 * retained log reads from its start; one past the end (a log that was reset,
 * or a position from before a daemon crash mid-rotation) reads nothing and
 * continues from the end, so a follower never waits for bytes that will not come.
 */
export function planRead(l: LogLayout, offset: number, limit: number): ReadPlan {
  const start = retainedStart(l);
  const end = logEnd(l);
  const from = Math.min(Math.max(offset, start), end);
  const ranges: FileRange[] = [];
  let pos = from;
  let room = limit;
  if (pos < l.currentStart && room > 0) {
    const length = Math.min(room, l.currentStart - pos);
    // Counted back from the live file's start, which stays right even if `.1` outgrew its recorded place.
    ranges.push({ file: "rotated", position: l.rotatedSize - (l.currentStart - pos), length });
    pos += length;
    room -= length;
  }
  if (pos < end && room > 0) {
    const length = Math.min(room, end - pos);
    ranges.push({ file: "current", position: pos - l.currentStart, length });
    pos += length;
  }
  return { from, skipped: Math.max(0, from - offset), ranges, next: pos };
}

/** The live file is rotated once it holds more than half the cap: both files together then stay near the cap. */
export function needsRotation(currentSize: number, maxBytes: number): boolean {
  return currentSize > keepBytes(maxBytes);
}

/** How many of the newest bytes of the live file a rotation keeps in `.1`. */
export function keepBytes(maxBytes: number): number {
  return Math.floor(maxBytes / 2);
}

/** The live file's bytes [0, consumed) left it; the layout after the rotation. */
export function afterRotation(l: LogLayout, consumed: number, keptInRotated: number): LogLayout {
  return {
    currentStart: l.currentStart + consumed,
    rotatedSize: keptInRotated,
    currentSize: Math.max(0, l.currentSize - consumed),
  };
}

/**
 * How long to wait before looking at the live file's size again: soon when it
 * grows fast enough to pass the threshold before a slow look would, so a guest
 * writing flat out cannot outrun the bound; rarely when it is quiet.
 */
export function nextCheckDelayMs(currentSize: number, bytesPerSecond: number, maxBytes: number, minMs = 20, maxMs = 1000): number {
  const room = keepBytes(maxBytes) - currentSize;
  if (room <= 0 || bytesPerSecond <= 0) return room <= 0 ? minMs : maxMs;
  // Look again when a quarter of the room could be used up.
  const ms = ((room / bytesPerSecond) * 1000) / 4;
  return Math.min(maxMs, Math.max(minMs, Math.floor(ms)));
}
