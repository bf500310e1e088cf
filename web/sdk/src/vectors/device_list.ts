/** The `device_list` vector kind (SPEC.md §20, §17.1): signing and verifying signed device lists. */
import { toHex } from "../bytes.js";
import { DeviceListError, deviceListBody, newDeviceList, signDeviceList, verifyDeviceList } from "../device_list.js";
import { IdentityKeyPair } from "../identity.js";
import { bytesField, listField, stringField, uintField, VectorInputError, type Json } from "./json.js";

/** `op = "sign"` → {identity_key, body, signed_device_list}; `op = "verify"` → {error, version, timestamp_ms, device_ids}. */
export function computeDeviceList(input: Json): Json {
  const op = stringField(input, "op");
  if (op === "sign") {
    const seed = bytesField(input, "identity_seed");
    const ids = listField(input, "device_ids").map((v) => {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
        throw new VectorInputError("device_ids holds unsigned integers");
      }
      return BigInt(v);
    });
    const list = newDeviceList(
      stringField(input, "username"),
      BigInt(uintField(input, "version")),
      BigInt(uintField(input, "timestamp_ms")),
      ids,
    );
    return {
      identity_key: toHex(IdentityKeyPair.fromSeed(seed).publicKey.toBytes()),
      body: toHex(deviceListBody(list)),
      signed_device_list: toHex(signDeviceList(list, seed)),
    };
  }
  if (op === "verify") {
    try {
      const list = verifyDeviceList(
        bytesField(input, "signed_device_list"),
        bytesField(input, "identity_key"),
        stringField(input, "username"),
      );
      return {
        error: "",
        version: Number(list.version),
        timestamp_ms: Number(list.timestampMs),
        device_ids: list.deviceIds.map(Number),
      };
    } catch (error) {
      if (error instanceof DeviceListError) {
        return { error: error.kind, version: 0, timestamp_ms: 0, device_ids: [] };
      }
      throw error;
    }
  }
  throw new VectorInputError(`unknown op ${op}`);
}
