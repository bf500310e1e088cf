/**
 * Persisted state (SPEC.md §9): the typed error every state reader throws,
 * and the checks shared by the readers. The schemas are in
 * `proto/state.proto` (§5.7, §6.7, §9.1–§9.3); each object's `toBytes` /
 * `fromBytes` lives with the object. A state that fails to load leaves
 * nothing half-restored; writers emit fields in field-number order and omit
 * proto3 defaults, so decoding and re-encoding yields the same bytes.
 */
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";

import { STATE_VERSION } from "./labels.js";

/** A persisted state was refused (§9). */
export class StateError extends Error {
  /** `decode`: not the protobuf message; `unsupported_version`; `invalid_field` (see `field`). */
  readonly kind: "decode" | "unsupported_version" | "invalid_field";
  /** For `invalid_field`: which field. */
  readonly field: string | undefined;

  /** @param kind the failure; @param field for `invalid_field` */
  constructor(kind: StateError["kind"], field?: string) {
    super(field === undefined ? kind.replaceAll("_", " ") : `invalid field ${field}`);
    this.name = "StateError";
    this.kind = kind;
    this.field = field;
  }
}

/** Decodes `bytes` as `schema` and checks `version` = `STATE_VERSION`. */
export function decodeState<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  let state: MessageShape<Desc>;
  try {
    state = fromBinary(schema, bytes);
  } catch {
    throw new StateError("decode");
  }
  if ((state as unknown as { version: number }).version !== STATE_VERSION) {
    throw new StateError("unsupported_version");
  }
  return state;
}

/** Refuses a field whose length is not `len`. */
export function requireLength(bytes: Uint8Array, len: number, field: string): Uint8Array {
  if (bytes.length !== len) {
    throw new StateError("invalid_field", field);
  }
  return bytes;
}

/** Refuses when `ok` is false. */
export function requireField(ok: boolean, field: string): void {
  if (!ok) {
    throw new StateError("invalid_field", field);
  }
}
