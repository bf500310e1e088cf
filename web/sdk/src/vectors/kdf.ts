/** The `kdf` vector kind (SPEC.md §17.1): HKDF, `KDF_RK`, `KDF_CK` + `MESSAGE_KEYS`. */
import { hkdf, kdfCk, kdfRk, messageKeys } from "../kdf.js";
import { bytesField, hex, stringField, uintField, VectorInputError, type Json } from "./json.js";

/** Computes a `kdf` output from its input. */
export function computeKdf(input: Json): Json {
  const op = stringField(input, "op");
  switch (op) {
    case "hkdf": {
      const salt = bytesField(input, "salt");
      const okm = hkdf(salt.length === 0 ? undefined : salt, bytesField(input, "ikm"), bytesField(input, "info"), uintField(input, "length"));
      return { okm: hex(okm) };
    }
    case "root_step": {
      const step = kdfRk(bytesField(input, "root_key"), bytesField(input, "dh_output"));
      return { root_key: hex(step.rootKey), chain_key: hex(step.chainKey) };
    }
    case "chain_step": {
      const step = kdfCk(bytesField(input, "chain_key"));
      const keys = messageKeys(step.messageKey);
      return {
        message_key: hex(step.messageKey),
        next_chain_key: hex(step.nextChainKey),
        aead_key: hex(keys.aeadKey),
        nonce: hex(keys.nonce),
      };
    }
    default:
      throw new VectorInputError(`unknown kdf op ${op}`);
  }
}
