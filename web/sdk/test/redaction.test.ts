/** Objects holding keys print nothing secret (console.log, util.inspect, JSON.stringify). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { inspect } from "node:util";

import { AttachmentKey } from "../src/attachment.js";
import { toHex } from "../src/bytes.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../src/prekeys.js";
import { RatchetSession } from "../src/ratchet/session.js";
import { OutboundSenderKey } from "../src/sender_key.js";
import { seededRng } from "./helpers.js";

test("secret-holding objects print as Name(<redacted>)", () => {
  const rng = seededRng("redact");
  const identity = IdentityKeyPair.generate(rng);
  const signed = SignedPreKey.generate(rng, identity, 1);
  const prekeys = new LocalPreKeys();
  prekeys.addSigned(signed);
  const session = RatchetSession.responder(new Uint8Array(32).fill(7), new Uint8Array(64), new Uint8Array(32).fill(8));
  const objects: [object, string][] = [
    [identity, "IdentityKeyPair"],
    [signed, "SignedPreKey"],
    [OneTimePreKey.generate(rng, 1), "OneTimePreKey"],
    [KemPreKey.generate(rng, identity, 1), "KemPreKey"],
    [prekeys, "LocalPreKeys"],
    [session, "RatchetSession"],
    [OutboundSenderKey.create(rng, new Uint8Array(16)), "OutboundSenderKey"],
    [AttachmentKey.generate(rng), "AttachmentKey"],
  ];
  for (const [object, name] of objects) {
    assert.equal(inspect(object), `${name}(<redacted>)`);
    assert.equal(JSON.stringify({ object }), `{"object":"${name}(<redacted>)"}`);
  }
  assert.ok(!inspect({ nested: identity }, { depth: 5 }).includes(toHex(identity.exportSeed()).slice(0, 8)));
});
