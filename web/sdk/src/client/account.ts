/**
 * Account set-up and login over a `Connection` (SPEC.md §13, §12.5, §12.6):
 * register and confirm with TOTP, enrol a device key, log in by signing the
 * challenge, and upload prekeys (signed prekey with `kem_flag = 0x01`, §4.1,
 * so a last-resort KEM prekey is always uploaded with it).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";

import { concat, utf8 } from "../bytes.js";
import type { UploadPrekeysRequestSchema } from "../gen/transport_pb.js";
import type { IdentityKeyPair } from "../identity.js";
import { KemPreKey, SignedPreKey, type LocalPreKeys } from "../prekeys.js";
import type { Rng } from "../rng.js";
import type { Connection } from "./connection.js";
import { decodeBase32, totpCode } from "./totp.js";

/** The login message prefix of §12.5 (24 bytes, ASCII). */
export const LOGIN_CONTEXT = "Microbot device login v1";

/** `"Microbot device login v1" ‖ 0x00 ‖ challenge ‖ u64be(device_id)`, the 65 bytes a device signs to log in (§12.5). */
export function loginMessage(challenge: Uint8Array, deviceId: bigint): Uint8Array {
  const id = new Uint8Array(8);
  new DataView(id.buffer).setBigUint64(0, deviceId, false);
  return concat(utf8(LOGIN_CONTEXT), new Uint8Array([0]), challenge, id);
}

/** What registration returns once, to be shown to the user (§13.1). */
export interface Registration {
  /** The 20-byte TOTP secret. */
  totpSecret: Uint8Array;
  /** `otpauth://` URI for an authenticator app. */
  otpauthUri: string;
  /** Ten one-time recovery codes (§13.4). */
  recoveryCodes: string[];
}

/** Registers `username` and confirms it with the TOTP code of `nowSeconds` (§13.1). */
export async function registerAccount(connection: Connection, username: string, password: string, nowSeconds: number = Date.now() / 1000): Promise<Registration> {
  const response = await connection.call({ case: "register", value: { username, password } }, "register");
  const totpSecret = decodeBase32(response.totpSecretBase32);
  await connection.call({ case: "confirmRegistration", value: { username, password, totpCode: totpCode(totpSecret, nowSeconds) } }, "ok");
  return { totpSecret, otpauthUri: response.otpauthUri, recoveryCodes: response.recoveryCodes };
}

/** A second factor for enrolment (§13.6). */
export type SecondFactor = { totpCode: string } | { recoveryCode: string };

/** Enrols `deviceKey` on an active account (§13.6); returns the new device id. */
export async function enrolDevice(
  connection: Connection,
  username: string,
  password: string,
  secondFactor: SecondFactor,
  deviceKey: IdentityKeyPair,
  deviceName: string,
): Promise<bigint> {
  const factor = "totpCode" in secondFactor ? { case: "totpCode" as const, value: secondFactor.totpCode } : { case: "recoveryCode" as const, value: secondFactor.recoveryCode };
  const response = await connection.call(
    { case: "enrolDevice", value: { username, password, secondFactor: { factor }, devicePublicKey: deviceKey.publicKey.toBytes(), deviceName } },
    "enrolDevice",
  );
  return response.deviceId;
}

/** Logs the connection in as `deviceId` (§12.5), asking for a fresh challenge first; returns `{ username, queuedEnvelopes }`. */
export async function login(connection: Connection, deviceId: bigint, deviceKey: IdentityKeyPair): Promise<{ username: string; queuedEnvelopes: number }> {
  // The HelloResponse challenge is consumed by any login attempt; a fresh one is always safe.
  const fresh = await connection.call({ case: "challenge", value: {} }, "challenge");
  connection.challenge = fresh.challenge;
  const signature = deviceKey.sign(loginMessage(fresh.challenge, deviceId));
  const response = await connection.call({ case: "login", value: { deviceId, signature } }, "login");
  return { username: response.username, queuedEnvelopes: response.queuedEnvelopes };
}

/** Ids the first prekey upload uses. */
export const FIRST_SIGNED_PREKEY_ID = 1;
/** Id of the first last-resort KEM prekey. */
export const FIRST_KEM_PREKEY_ID = 1;

/**
 * Makes and uploads prekeys (§12.6): on the first call a signed prekey
 * (`kem_flag = 0x01`) with the identity key and a last-resort KEM prekey,
 * which §4.1 requires while that signed prekey is published; every call adds
 * `oneTimeCount` one-time prekeys. The private halves go into `preKeys`
 * before the upload, so a bundle handed out at once can be answered.
 */
export async function uploadPreKeys(
  connection: Connection,
  rng: Rng,
  identity: IdentityKeyPair,
  preKeys: LocalPreKeys,
  oneTimeCount: number,
): Promise<void> {
  const first = preKeys.signedPreKey(FIRST_SIGNED_PREKEY_ID) === undefined;
  const oneTime = preKeys.generateOneTime(rng, oneTimeCount);
  const request: MessageInitShape<typeof UploadPrekeysRequestSchema> = { oneTimePrekeys: oneTime.map((k) => k.public()) };
  if (first) {
    const signed = SignedPreKey.generate(rng, identity, FIRST_SIGNED_PREKEY_ID, true);
    const kem = KemPreKey.generate(rng, identity, FIRST_KEM_PREKEY_ID);
    preKeys.addSigned(signed);
    preKeys.addKem(kem);
    request.identityKey = identity.publicKey.toBytes();
    request.signedPrekey = signed.public();
    request.lastResortKemPrekey = kem.public();
  }
  await connection.call({ case: "uploadPrekeys", value: request }, "ok");
}
