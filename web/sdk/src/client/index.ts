/**
 * The client half (SPEC.md §12.13, §13): WebSocket connection, account
 * set-up and login, TOTP, reconnect with backoff, an in-memory store, 1:1
 * messaging with own-device copies, and groups. Browser-safe; the Node
 * socket factory is `@microbot/sdk/node`.
 */
export * from "./account.js";
export * from "./connection.js";
export * from "./groups.js";
export * from "./groups_store.js";
export * from "./messenger.js";
export * from "./reconnect.js";
export * from "./store.js";
export * from "./sync.js";
export * from "./totp.js";
