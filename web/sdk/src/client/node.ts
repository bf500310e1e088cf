/**
 * Node only: a `SocketFactory` on the `ws` package (Node 20 has no stable
 * global WebSocket), with the server certificate pinned by its SHA-256 as on
 * QUIC (SPEC.md §12.2, §12.13). Not exported from the browser entry point.
 */
import { createHash } from "node:crypto";
import type { PeerCertificate } from "node:tls";

import { WebSocket } from "ws";

import { constantTimeEqual, fromHex } from "../bytes.js";
import type { SocketFactory, SocketLike } from "./connection.js";

/** How `nodeSocketFactory` trusts a `wss://` server. */
export interface NodeTlsOptions {
  /** The server's certificate (PEM), trusted as the only anchor (`ca`). */
  caPem?: string;
  /** SHA-256 of the server's DER certificate, hex, as the server prints it; checked in `checkServerIdentity`. */
  certSha256?: string;
}

/** Why a pinned certificate was refused. */
export class PinError extends Error {
  /** A `PinError`. */
  constructor(message: string) {
    super(message);
    this.name = "PinError";
  }
}

/** The pin check: `undefined` when `cert`'s SHA-256 equals `pinHex`, else a `PinError`. */
export function checkPin(pinHex: string, cert: PeerCertificate): Error | undefined {
  const digest = new Uint8Array(createHash("sha256").update(cert.raw).digest());
  const pin = fromHex(pinHex.toLowerCase().replace(/:/g, ""));
  return pin.length === 32 && constantTimeEqual(digest, pin) ? undefined : new PinError("the server certificate does not match the pin");
}

/** A `SocketFactory` for Node; `wss://` URLs trust only `caPem` and check the `certSha256` pin (the host name is not checked: the pin is the identity). */
export function nodeSocketFactory(tls: NodeTlsOptions = {}): SocketFactory {
  return (url: string, subprotocol: string): SocketLike => {
    const options: ConstructorParameters<typeof WebSocket>[2] = { maxPayload: 16 * 1024 * 1024 };
    if (url.startsWith("wss:")) {
      if (tls.caPem) options.ca = tls.caPem;
      const pin = tls.certSha256;
      // Passed through to tls.connect, whose callback returns an Error or undefined (@types/ws says boolean).
      if (pin) (options as Record<string, unknown>)["checkServerIdentity"] = (_host: string, cert: PeerCertificate) => checkPin(pin, cert);
    }
    return new WebSocket(url, subprotocol, options) as unknown as SocketLike;
  };
}
