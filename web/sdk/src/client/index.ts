/**
 * The client half (SPEC.md §12.13, §13): WebSocket connection, account
 * set-up and login, TOTP, reconnect with backoff, an in-memory store, 1:1
 * messaging with own-device copies, groups, device linking, miniapp events, attachment transfers, the
 * offline outbox and the IndexedDB store. Browser-safe; the Node socket
 * factory is `@microbot/sdk/node`, file sources/sinks
 * `@microbot/sdk/attachments-node`.
 */
export * from "./account.js";
export * from "./attachments.js";
export * from "./calls.js";
export * from "./connection.js";
export * from "./device_list_check.js";
export * from "./groups.js";
export * from "./groups_store.js";
export * from "./idb_store.js";
export * from "./linking.js";
export * from "./messenger.js";
export * from "./miniapp_events.js";
export * from "./outbox.js";
export * from "./reconnect.js";
export * from "./sealed.js";
export * from "./serial.js";
export * from "./store.js";
export * from "./sync.js";
export * from "./totp.js";
