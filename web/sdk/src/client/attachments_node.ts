/**
 * Node only: attachment sources and sinks on files (attachments.ts), read
 * and written one segment at a time so a large file never sits in memory.
 * Exported as `@microbot/sdk/attachments-node`.
 */
import { open, rename, rm, type FileHandle } from "node:fs/promises";

import type { AttachmentSink, AttachmentSource } from "./attachments.js";

/** A source reading `path` (its size taken now); `close()` when done. */
export async function fileSource(path: string): Promise<AttachmentSource & { close(): Promise<void> }> {
  const handle = await open(path, "r");
  const { size } = await handle.stat();
  return {
    size,
    read: async (offset, length) => {
      const buffer = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return buffer.subarray(0, filled);
    },
    close: () => handle.close(),
  };
}

/**
 * A sink writing to `path + ".part"`; `commit()` (after `downloadAttachment`
 * resolved) renames it to `path`, so an unverified file never has the final
 * name. `reset()` empties it.
 */
export function fileSink(path: string): AttachmentSink & { commit(): Promise<void> } {
  const partial = `${path}.part`;
  let handle: FileHandle | undefined;
  return {
    write: async (chunk) => {
      handle ??= await open(partial, "w");
      await handle.write(chunk);
    },
    reset: async () => {
      await handle?.close();
      handle = undefined;
      await rm(partial, { force: true });
    },
    commit: async () => {
      handle ??= await open(partial, "w");
      await handle.close();
      handle = undefined;
      await rename(partial, path);
    },
  };
}
