/**
 * A TypeScript device signing itself into its account's signed device list
 * (SPEC.md §20.2) after linking, so senders that check the list (the Rust
 * SDK) encrypt to it too. The new list is built from the last list that
 * verifies under the account's identity, never from the server's unsigned
 * `DeviceList.devices`, which decides only whether a list is started: an
 * account without a list whose other devices never signed one keeps the
 * rule before §20. Contacts' lists are checked when sending
 * (device_list_check.ts, SPEC.md §20.4).
 */
import { DeviceListError, newDeviceList, signDeviceList, verifyDeviceList, type DeviceList } from "../device_list.js";
import { ErrorCode } from "../gen/transport_pb.js";
import { IdentityKeyPair } from "../identity.js";
import { ServerError, type Connection } from "./connection.js";

/** Attempts when other devices sign at the same time (`STALE_DEVICE_LIST`). */
const SIGN_ATTEMPTS = 3;

/**
 * Signs `deviceId` into `username`'s list with the identity seed. Returns
 * false when the account keeps no list (older devices that never sign),
 * true once the list names the device.
 */
export async function signIntoDeviceList(
  connection: Connection,
  identitySeed: Uint8Array,
  username: string,
  deviceId: bigint,
): Promise<boolean> {
  const identityKey = IdentityKeyPair.fromSeed(identitySeed).publicKey.toBytes();
  for (let attempt = 0; attempt < SIGN_ATTEMPTS; attempt++) {
    const served = await connection.call({ case: "listDevices", value: {} }, "deviceList");
    let current: DeviceList | undefined;
    if (served.signedDeviceList.length === 0) {
      if (served.devices.some((d) => d.deviceId !== deviceId)) return false;
    } else {
      try {
        current = verifyDeviceList(served.signedDeviceList, identityKey, username);
      } catch (error) {
        // Signed by another identity: this identity starts its own list.
        if (!(error instanceof DeviceListError && error.kind === "BadSignature")) throw error;
      }
    }
    if (current?.deviceIds.includes(deviceId)) return true;
    const now = BigInt(Date.now());
    const next =
      current === undefined
        ? newDeviceList(username, 1n, now, [deviceId])
        : newDeviceList(username, current.version + 1n, now, [...current.deviceIds, deviceId]);
    try {
      await connection.call({ case: "uploadDeviceList", value: { signedDeviceList: signDeviceList(next, identitySeed) } }, "ok");
      return true;
    } catch (error) {
      if (!(error instanceof ServerError && error.code === ErrorCode.STALE_DEVICE_LIST)) throw error;
    }
  }
  throw new Error("the account's device list kept changing while signing");
}
