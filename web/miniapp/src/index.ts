/**
 * `@microbot/miniapp`: miniapps inside Microbot group chats (SPEC.md §11.9,
 * docs/MINIAPPS.md). The bridge protocol (`protocol.ts`), its host side for
 * chat clients (`host.ts`, also `@microbot/miniapp/host`), its app side
 * (`app.ts`, also `@microbot/miniapp/app`) and the sample apps' convergent
 * state (`@microbot/miniapp/samples`).
 */
export * from "./protocol.js";
export * from "./host.js";
export * from "./app.js";
