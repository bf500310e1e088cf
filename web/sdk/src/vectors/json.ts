/**
 * Reading vector inputs (SPEC.md §17.1): lowercase hex byte strings, JSON
 * numbers, booleans and lists. A missing or ill-typed field is a
 * `VectorInputError`, never a silent default.
 */
import { fromHex, toHex } from "../bytes.js";

/** A vector input lacks a field or has one of the wrong type. */
export class VectorInputError extends Error {
  /** @param message the field and what was wrong */
  constructor(message: string) {
    super(message);
    this.name = "VectorInputError";
  }
}

/** A JSON object as read from a vector file. */
export type Json = Record<string, unknown>;

function field(input: Json, name: string): unknown {
  if (!(name in input)) {
    throw new VectorInputError(`missing field ${name}`);
  }
  return input[name];
}

/** A hex field as bytes. */
export function bytesField(input: Json, name: string): Uint8Array {
  const value = field(input, name);
  if (typeof value !== "string") {
    throw new VectorInputError(`${name} is not a hex string`);
  }
  return fromHex(value);
}

/** A list of hex strings as byte arrays (e.g. `*_draws`). */
export function byteListField(input: Json, name: string): Uint8Array[] {
  const value = field(input, name);
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new VectorInputError(`${name} is not a list of hex strings`);
  }
  return value.map((v: string) => fromHex(v));
}

/** A non-negative integer field. */
export function uintField(input: Json, name: string): number {
  const value = field(input, name);
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new VectorInputError(`${name} is not a non-negative integer`);
  }
  return value;
}

/** A string field. */
export function stringField(input: Json, name: string): string {
  const value = field(input, name);
  if (typeof value !== "string") {
    throw new VectorInputError(`${name} is not a string`);
  }
  return value;
}

/** A boolean field. */
export function boolField(input: Json, name: string): boolean {
  const value = field(input, name);
  if (typeof value !== "boolean") {
    throw new VectorInputError(`${name} is not a boolean`);
  }
  return value;
}

/** A list field of objects or numbers. */
export function listField(input: Json, name: string): unknown[] {
  const value = field(input, name);
  if (!Array.isArray(value)) {
    throw new VectorInputError(`${name} is not a list`);
  }
  return value;
}

/** An object field. */
export function objectOf(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new VectorInputError(`${what} is not an object`);
  }
  return value as Json;
}

/** Hex for outputs. */
export const hex = toHex;
