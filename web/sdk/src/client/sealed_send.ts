/**
 * Sending sealed (SPEC.md §19.8), for 1:1 messages (`Messenger`) and group
 * messages (`Groups`) alike, as the Rust SDK's `sealed.rs` and
 * `groups/send_sealed.rs` do: who may be sent to sealed (the rule, written
 * once: `sealedRecipients`), this device's sender certificate (fetched and
 * renewed over the logged-in connection), and a `SealedBatch`: one
 * connection that never logs in, over which each recipient account gets
 * one `SendSealed` with its access key, every envelope sealed under the
 * certificate to that account's identity key. Errors are the server's
 * (`ServerError`: `UNIDENTIFIED_ACCESS_DENIED`, `MISSING_DEVICES`, …); what
 * to do about them is the caller's.
 */
import { IdentityKey, type IdentityKeyPair } from "../identity.js";
import type { Rng } from "../rng.js";
import { accessKey, PROFILE_KEY_LEN, sealSealedSender, type ContentType, type SenderCertificate } from "../sealed_sender.js";
import type { Connection } from "./connection.js";
import { fetchCertificate } from "./sealed.js";
import type { ClientStore } from "./store.js";

/** A sender certificate is renewed when it expires within this (ms). */
export const CERTIFICATE_RENEW_BEFORE_MS = 60_000n;

/** Content type of a sealed `SessionMessage` (§19.3). */
export const SEALED_SESSION: ContentType = 1;
/** Content type of a sealed `group_id ‖ SenderKeyMessage` (§19.3). */
export const SEALED_SENDER_KEY: ContentType = 2;

/** An account a send may go to sealed: the identity it is sealed to and the access key presented. */
export interface SealedRecipient {
  /** The recipient account. */
  username: string;
  /** The identity key trusted for it (what its envelopes are sealed to). */
  identity: IdentityKey;
  /** Its access key (§19.7), from the profile key it shared with us. */
  accessKey: Uint8Array;
}

/** One envelope for one device, before or after sealing. */
export interface DeviceEnvelope {
  /** The recipient device. */
  recipientDeviceId: bigint;
  /** The ciphertext. */
  ciphertext: Uint8Array;
}

/**
 * The sealed recipients for a send to `usernames` (other accounts), or
 * `undefined` when it must go identified (§19.8): no connection for sealed
 * sends, no recipient at all, or one whose profile key or trusted identity
 * we do not hold. The one rule for 1:1 (one name) and group (every other
 * member) sends.
 */
export function sealedRecipients(store: ClientStore, usernames: string[], canSeal: boolean): SealedRecipient[] | undefined {
  if (!canSeal || usernames.length === 0) return undefined;
  const me = store.device()?.username;
  const out: SealedRecipient[] = [];
  for (const username of usernames) {
    const profileKey = store.contactProfileKey(username);
    const identity = store.contactIdentity(username);
    if (username === me || profileKey?.length !== PROFILE_KEY_LEN || !identity) return undefined;
    out.push({ username, identity: IdentityKey.fromBytes(identity), accessKey: accessKey(profileKey) });
  }
  return out;
}

/** This device's sender certificate, kept and renewed before it expires. */
export class CertificateCache {
  private certificate: SenderCertificate | undefined;

  /** A cache for the device of `store`. */
  constructor(private readonly store: ClientStore) {}

  /** The kept certificate, or a fresh one fetched over the logged-in `connection` when it is missing or about to expire. */
  async get(connection: Connection): Promise<SenderCertificate> {
    const now = BigInt(Date.now());
    if (!this.certificate || this.certificate.expiresAtMs <= now + CERTIFICATE_RENEW_BEFORE_MS) this.certificate = await fetchCertificate(connection, this.store);
    return this.certificate;
  }
}

/** One connection that never logs in, for the sealed sends of one message (and its sender-key distribution). */
export class SealedBatch {
  private constructor(
    private readonly connection: Connection,
    private readonly certificate: SenderCertificate,
    private readonly identity: IdentityKeyPair,
    private readonly rng: Rng,
  ) {}

  /** Takes the certificate (over the logged-in `connection`, from `certificates`) and opens the unauthenticated connection with `connect`. */
  static async open(connection: Connection, certificates: CertificateCache, connect: () => Promise<Connection>, identity: IdentityKeyPair, rng: Rng): Promise<SealedBatch> {
    const certificate = await certificates.get(connection);
    return new SealedBatch(await connect(), certificate, identity, rng);
  }

  /**
   * Seals each envelope's ciphertext as `contentType` to `recipient` and
   * sends them in one `SendSealed` with its access key; the server's time
   * stamp. Throws the server's refusal (`ServerError`) as it came.
   */
  async send(recipient: SealedRecipient, contentType: ContentType, envelopes: DeviceEnvelope[]): Promise<bigint> {
    const sealed = envelopes.map((e) => ({
      recipientDeviceId: e.recipientDeviceId,
      ciphertext: sealSealedSender(this.rng.fill(32), this.identity, this.certificate, recipient.identity, contentType, e.ciphertext),
    }));
    const response = await this.connection.call({ case: "sendSealed", value: { recipientUsername: recipient.username, accessKey: recipient.accessKey, envelopes: sealed } }, "send");
    return response.serverTimestampMs;
  }

  /** Closes the unauthenticated connection. */
  close(): void {
    this.connection.close();
  }
}
