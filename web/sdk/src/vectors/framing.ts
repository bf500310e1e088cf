/** The `framing` vector kind (SPEC.md §17.1): decoding streams and encoding `Hello`. */
import { FrameDecoder, FrameError } from "../framing.js";
import { decodeClientFrame, encodeHelloFrame } from "../transport.js";
import { boolField, bytesField, hex, listField, stringField, uintField, VectorInputError, type Json } from "./json.js";

/** Computes a `framing` output from its input. */
export function computeFraming(input: Json): Json {
  const op = stringField(input, "op");
  switch (op) {
    case "decode": {
      const decoder = new FrameDecoder(uintField(input, "max_frame_len"));
      const asClientFrames = boolField(input, "as_client_frames");
      const frames: string[] = [];
      let error = "";
      try {
        decoder.push(bytesField(input, "stream"));
        for (let frame = decoder.nextFrame(); frame !== undefined; frame = decoder.nextFrame()) {
          if (asClientFrames) {
            decodeClientFrame(frame);
          }
          frames.push(hex(frame));
        }
        decoder.finish();
      } catch (e) {
        if (!(e instanceof FrameError)) {
          throw e;
        }
        error = e.kind;
      }
      return { frames, error };
    }
    case "encode_hello": {
      const versions = listField(input, "versions").map((v) => {
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
          throw new VectorInputError("versions holds a non-u32");
        }
        return v;
      });
      const frame = encodeHelloFrame(BigInt(uintField(input, "request_id")), versions, stringField(input, "client_agent"));
      return { frame: hex(frame) };
    }
    default:
      throw new VectorInputError(`unknown framing op ${op}`);
  }
}
