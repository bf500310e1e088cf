/**
 * Reconnect with exponential backoff (SPEC.md §12.8, §12.9): after a lost
 * connection the client waits, opens a new one and runs its set-up (login,
 * fetch) again. A server's `retry_after_ms` is honoured; a removed device or
 * an unsupported version stops it for good.
 */
import { ErrorCode } from "../gen/transport_pb.js";
import { Connection, ConnectionError, ServerError } from "./connection.js";

/** Backoff parameters: delay = min(maxMs, initialMs · 2^attempt), scaled by a factor in [0.5, 1) from `random`. */
export interface BackoffOptions {
  /** The first delay (default 500 ms). */
  initialMs?: number;
  /** The largest delay (default 30 s). */
  maxMs?: number;
  /** A number in [0, 1) (default `Math.random`): the jitter. */
  random?: () => number;
}

/** The delay before reconnect attempt `attempt` (0-based), at least `retryAfterMs`. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, retryAfterMs = 0): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  const jitter = 0.5 + 0.5 * (options.random ?? Math.random)();
  return Math.max(retryAfterMs, Math.floor(base * jitter));
}

/** Whether a failure means reconnecting cannot help (§12.8: device removed or unknown, no common version, closed by the client). */
export function isFatal(error: unknown): boolean {
  if (error instanceof ServerError) return error.code === ErrorCode.DEVICE_REMOVED || error.code === ErrorCode.UNKNOWN_DEVICE;
  if (!(error instanceof ConnectionError)) return false;
  if (error.kind === "UnsupportedVersion" || error.kind === "ClosedByClient") return true;
  return error.code === ErrorCode.DEVICE_REMOVED || error.code === ErrorCode.UNSUPPORTED_VERSION;
}

/** Options of `Reconnector`. */
export interface ReconnectorOptions {
  /** Opens a connection (`Connection.open`). */
  connect: () => Promise<Connection>;
  /** Runs on every new connection before it counts as up (login, fetch of the queue). */
  setUp: (connection: Connection) => Promise<void>;
  /** Waits `ms` (default `setTimeout`); tests inject their own. */
  sleep?: (ms: number) => Promise<void>;
  /** Backoff parameters. */
  backoff?: BackoffOptions;
  /** Called with each connection once it is set up. */
  onUp?: (connection: Connection) => void;
  /** Called when the reconnector stops for good (fatal error or `stop()`). */
  onStop?: (error: unknown) => void;
}

/** Keeps one connection up: connects, sets up, and on a close waits with backoff and starts again. */
export class Reconnector {
  private readonly options: ReconnectorOptions;
  private stopped = false;
  private current: Connection | undefined;
  private waiters: ((connection: Connection) => void)[] = [];
  /** How many connections were set up so far. */
  connections = 0;

  /** A reconnector; call `start()`. */
  constructor(options: ReconnectorOptions) {
    this.options = options;
  }

  /** Starts the connect loop (returns at once). */
  start(): void {
    void this.loop();
  }

  /** The set-up connection, waiting for one if none is up. */
  connection(): Promise<Connection> {
    if (this.current && !this.current.closed) return Promise.resolve(this.current);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops reconnecting and closes the current connection. */
  stop(): void {
    this.stopped = true;
    this.current?.close();
  }

  private async loop(): Promise<void> {
    const sleep = this.options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    let attempt = 0;
    while (!this.stopped) {
      let retryAfter = 0;
      let connection: Connection | undefined;
      try {
        connection = await this.options.connect();
        const opened = connection;
        const closed = new Promise<ConnectionError>((resolve) => opened.onClose(resolve));
        await this.options.setUp(connection);
        if (this.stopped) {
          connection.close();
          break;
        }
        this.current = connection;
        this.connections += 1;
        attempt = 0;
        this.options.onUp?.(connection);
        const waiters = this.waiters;
        this.waiters = [];
        for (const waiter of waiters) waiter(connection);
        const error = await closed;
        if (isFatal(error) || this.stopped) {
          this.stopped = true;
          this.options.onStop?.(error);
          return;
        }
        retryAfter = error.retryAfterMs;
      } catch (error) {
        if (connection && !connection.closed) connection.close();
        if (isFatal(error)) {
          this.stopped = true;
          this.options.onStop?.(error);
          return;
        }
        if (error instanceof ConnectionError || error instanceof ServerError) retryAfter = error.retryAfterMs;
      }
      if (this.stopped) break;
      await sleep(backoffDelay(attempt, this.options.backoff, retryAfter));
      attempt += 1;
    }
    this.options.onStop?.(new ConnectionError("ClosedByClient", "stopped"));
  }
}
