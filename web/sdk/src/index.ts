/**
 * `@microbot/sdk`: the client side of the Microbot protocol (SPEC.md) in
 * TypeScript, written from the SPEC. The module map mirrors the Rust crates:
 * framing, content and transport messages (protocol), kdf, identity,
 * prekeys, handshake, ratchet, session, sender_key, attachment, fingerprint
 * (crypto-core). Randomness is injected (`Rng`) so that every operation is
 * reproducible in tests and vectors.
 */
export * from "./attachment.js";
export * from "./bytes.js";
export * as content from "./content.js";
export { ContentError, decodeContent, encodeContent, paddingLength, validateContent } from "./content.js";
export * from "./convergence.js";
export * from "./fingerprint.js";
export * from "./framing.js";
export * from "./group_metadata.js";
export * from "./handshake.js";
export * from "./identity.js";
export * from "./kdf.js";
export * from "./labels.js";
export * from "./prekeys.js";
export * from "./provisioning.js";
export * from "./ratchet/header.js";
export * from "./ratchet/session.js";
export * from "./rng.js";
export * from "./sender_key.js";
export * from "./session.js";
export * as transport from "./transport.js";
export * as client from "./client/index.js";
