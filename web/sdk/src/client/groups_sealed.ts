/**
 * The sealed legs of a group send (SPEC.md §19.8), as the Rust SDK's
 * `groups/send_sealed.rs` and `distribute_sealed` do, over one
 * `SealedBatch`: the sender-key ciphertext sealed as content type 0x02
 * (`group_id ‖ SenderKeyMessage`) once per member account, in one
 * `SendSealed` naming all of that member's devices; and the sender-key
 * distribution (content type 0x01, pairwise session messages) to the
 * members that need it. A member whose queue is full is reported, the
 * others still get theirs; a member that refuses our access key makes the
 * message go identified (`SealedGroupResult.accessDenied`) and its
 * distribution go identified; any other refusal stops the send with a
 * `SealedMemberError` naming the member. Who is sent to sealed is decided
 * elsewhere (`sealedRecipients`), except that an announcement introducing
 * the group to members goes identified (`introducesGroup`); the encryption
 * and what a refusal changes in the group's device lists are groups.ts'.
 */
import { concat } from "../bytes.js";
import { GroupChangeKind, type Content } from "../content.js";
import { ErrorCode } from "../gen/transport_pb.js";
import { ServerError } from "./connection.js";
import { SEALED_SENDER_KEY, SEALED_SESSION, type DeviceEnvelope, type SealedBatch, type SealedRecipient } from "./sealed_send.js";

/** A member account of a sealed group send and the devices it goes to (all of them: the server refuses a send that leaves one out). */
export interface SealedMember {
  /** The account, its identity and access key. */
  recipient: SealedRecipient;
  /** Its devices holding our sender key. */
  deviceIds: bigint[];
}

/** A member's sealed send the server refused (other than a full queue or, for the message, a refused access key). */
export class SealedMemberError extends Error {
  /** The member account. */
  readonly username: string;
  /** The server's refusal (`MISSING_DEVICES`, `UNKNOWN_DEVICE`, `DEVICE_REMOVED`, `RATE_LIMITED`, …). */
  override readonly cause: ServerError;

  /** `cause` refused the sealed send to `username`. */
  constructor(username: string, cause: ServerError) {
    super(`sealed send to ${username}: ${cause.message}`, { cause });
    this.name = "SealedMemberError";
    this.username = username;
    this.cause = cause;
  }
}

/** What became of a sealed group message. */
export type SealedGroupResult =
  /** Stored for every member but `skipped` (full queues), at the latest of the server's time stamps (0n when nothing was sent). */
  | { kind: "sent"; serverTimestampMs: bigint; skipped: { username: string; deviceIds: bigint[] }[] }
  /** A member refused our access key (it changed its profile key): send the message identified. */
  | { kind: "accessDenied" };

/**
 * Whether `content` announces a group to members that may hold no record
 * of it yet (`CREATED`, `MEMBERS_ADDED`, §11.5). Such an announcement goes
 * identified: sealing it would hide nothing, since the server learnt who
 * made the change from the logged-in request that made it, and a receiver
 * that does not fetch an unknown group before checking a sealed sender's
 * membership (§19.8) would refuse it.
 */
export function introducesGroup(content: Content): boolean {
  if (content.body.case !== "groupChange") return false;
  const kind = content.body.value.kind;
  return kind === GroupChangeKind.CREATED || kind === GroupChangeKind.MEMBERS_ADDED;
}

/** Whether `error` is the server's `code`. */
function refusedWith(error: unknown, code: ErrorCode): error is ServerError {
  return error instanceof ServerError && error.code === code;
}

/** Sends `ciphertext` (our sender key's message in group `groupId`) sealed to every member with a device. */
export async function sendSealedGroupMessage(batch: SealedBatch, groupId: Uint8Array, members: SealedMember[], ciphertext: Uint8Array): Promise<SealedGroupResult> {
  const message = concat(groupId, ciphertext);
  let serverTimestampMs = 0n;
  const skipped: { username: string; deviceIds: bigint[] }[] = [];
  for (const { recipient, deviceIds } of members) {
    if (deviceIds.length === 0) continue;
    try {
      const at = await batch.send(recipient, SEALED_SENDER_KEY, deviceIds.map((recipientDeviceId) => ({ recipientDeviceId, ciphertext: message })));
      if (at > serverTimestampMs) serverTimestampMs = at;
    } catch (error) {
      // Like a full queue in a group fan-out (§12.10): not delivered there, the others still get it.
      if (refusedWith(error, ErrorCode.QUEUE_FULL)) skipped.push({ username: recipient.username, deviceIds: [...deviceIds] });
      else if (refusedWith(error, ErrorCode.UNIDENTIFIED_ACCESS_DENIED)) return { kind: "accessDenied" };
      else if (error instanceof ServerError) throw new SealedMemberError(recipient.username, error);
      else throw error;
    }
  }
  return { kind: "sent", serverTimestampMs, skipped };
}

/** One pairwise envelope of a distribution, to `username`'s device. */
export interface DistributionEnvelope {
  /** The member account. */
  username: string;
  /** The envelope (a session message) for one of its devices. */
  envelope: DeviceEnvelope;
}

/**
 * Sends the distribution envelopes of sealed `members` sealed, one
 * `SendSealed` per member. Returns those the server stored (`sent`) and
 * those still to send identified (`rest`: other accounts', ours, and a
 * member's that refused our access key); a member whose queue is full is
 * in neither (its devices get the key with the next send).
 */
export async function distributeSealed(batch: SealedBatch, members: SealedRecipient[], envelopes: DistributionEnvelope[]): Promise<{ sent: DistributionEnvelope[]; rest: DistributionEnvelope[] }> {
  const sealedNames = new Set(members.map((m) => m.username));
  const sent: DistributionEnvelope[] = [];
  const rest = envelopes.filter((e) => !sealedNames.has(e.username));
  for (const recipient of members) {
    const mine = envelopes.filter((e) => e.username === recipient.username);
    if (mine.length === 0) continue;
    try {
      await batch.send(recipient, SEALED_SESSION, mine.map((e) => e.envelope));
      sent.push(...mine);
    } catch (error) {
      if (refusedWith(error, ErrorCode.QUEUE_FULL)) continue;
      if (refusedWith(error, ErrorCode.UNIDENTIFIED_ACCESS_DENIED)) rest.push(...mine);
      else if (error instanceof ServerError) throw new SealedMemberError(recipient.username, error);
      else throw error;
    }
  }
  return { sent, rest };
}
