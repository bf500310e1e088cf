/**
 * One session state, one writer at a time (SPEC.md §5, §6): a Double
 * Ratchet session must never encrypt twice from the same state (that
 * reuses a message key) and a send that encrypts on a copy, waits for the
 * server and then stores the copy must not overwrite what a receive stored
 * in between. `Messenger` and `Groups` therefore run every
 * encrypt → send → store, every decrypt → store and every session start
 * inside the `SerialQueue` of their `ClientStore` (`sessionLock`), which is
 * per device: a send to one contact also advances the sessions with the
 * account's other devices (§11.7 transcripts), so a lock per conversation
 * would not be enough. Tasks run in call order; the queue is not
 * re-entrant, so code inside a task never waits for the queue again.
 */

/** Runs asynchronous tasks one after the other, in the order `run` was called (a promise-chain mutex). */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` once every task queued before it has settled; resolves or rejects as `task` does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    // A failed task does not stop the ones queued after it.
    this.tail = result.catch(() => undefined);
    return result;
  }
}

const locks = new WeakMap<object, SerialQueue>();

/** The queue that serialises session changes of `store`: the same one for every `Messenger` and `Groups` over that store. */
export function sessionLock(store: object): SerialQueue {
  let lock = locks.get(store);
  if (!lock) {
    lock = new SerialQueue();
    locks.set(store, lock);
  }
  return lock;
}
