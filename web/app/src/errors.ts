/**
 * Errors in words a person understands: what went wrong and what to do.
 */
import { client, transport } from "@microbot/sdk";

const Code = transport.ErrorCode;

/** The largest file the app sends (the reference server's default `max_attachment_len`). */
export const MAX_FILE_BYTES = 100 * 1024 * 1024;

/** A file over `MAX_FILE_BYTES`. */
export class FileTooLargeError extends Error {
  constructor(readonly size: number) {
    super(`file of ${size} bytes over the limit of ${MAX_FILE_BYTES}`);
    this.name = "FileTooLargeError";
  }
}

/** A sentence for any error the SDK or the browser throws. */
export function describeError(error: unknown): string {
  if (error instanceof FileTooLargeError) return `That file is too large to send (${Math.round(error.size / 1048576)} MiB; the limit is ${MAX_FILE_BYTES / 1048576} MiB).`;
  if (error instanceof client.TransferError) {
    if (error.code === Code.FRAME_TOO_LARGE || /large|limit|size/i.test(error.message)) return "That file is too large for this server.";
    if (error.kind === "TooManyAttempts") return "The file transfer kept breaking off. Check your connection and try again.";
    return "The file could not be transferred. Try again.";
  }
  if (error instanceof client.LinkError) {
    switch (error.kind) {
      case "InvalidCode":
        return "That is not a linking code. Check that you typed all 77 letters and digits shown on the new device.";
      case "SlotGone":
        return "This code expired or was already used. Start linking again on the new device to get a new code.";
      case "TimedOut":
        return "Nothing arrived in time. Start linking again on the new device to get a new code.";
      case "Unreachable":
        return "The server is unreachable. Check your connection and try again.";
      case "DoesNotOpen":
        return "What arrived was not sealed to this code (was the code typed on the other device wrong?). Start again with a new code.";
      case "InvalidMessage":
        return "What arrived from the other device is damaged or not an account. Start again with a new code.";
      case "TooLarge":
        return "Too much to send at once: try again without history.";
      case "Refused":
        return error.cause instanceof client.ServerError ? describeError(error.cause) : "The server refused this. Try again.";
      case "Cancelled":
        return "Linking was cancelled.";
      default:
        return "Linking failed. Start again with a new code.";
    }
  }
  if (error instanceof client.ServerError) {
    switch (error.code) {
      case Code.USERNAME_TAKEN:
        return "That name is taken. Please choose another one.";
      case Code.INVALID_CREDENTIALS:
        return "Wrong name, password or code. Check them and try again.";
      case Code.INVALID_SECOND_FACTOR:
        return "Wrong code. Type the 6 digits your authenticator app shows now.";
      case Code.TOTP_REPLAYED:
        return "That code was used already. Wait for the next one (up to 30 seconds) and type it.";
      case Code.ACCOUNT_INACTIVE:
        return "This account is not confirmed yet. Finish the registration first.";
      case Code.UNKNOWN_ACCOUNT:
        return "Nobody with that name is on this server.";
      case Code.NO_PREKEYS:
        return "That person has no device ready to receive messages yet.";
      case Code.RATE_LIMITED:
        return `Too many attempts. Please wait${error.retryAfterMs > 0 ? ` ${Math.ceil(error.retryAfterMs / 1000)} s` : " a moment"} and try again.`;
      case Code.DEVICE_REMOVED:
      case Code.UNKNOWN_DEVICE:
        return "This browser was signed out (its device was removed). Log in again.";
      case Code.INVALID_ARGUMENT:
        return `The server refused this: ${error.message}`;
      case Code.FRAME_TOO_LARGE:
        return "That is too large to send.";
      default:
        return `The server refused this (${error.message}).`;
    }
  }
  if (error instanceof client.ConnectionError) {
    switch (error.kind) {
      case "ConnectFailed":
      case "Closed":
      case "Silent":
        return "The server is unreachable. Check your connection; the app keeps trying.";
      case "UnsupportedVersion":
        return "This app and the server do not speak the same version. Reload the page.";
      default:
        return "The connection to the server was lost. The app keeps trying.";
    }
  }
  if (error instanceof client.CallSignalError) {
    if (error.kind === "Busy") return "You are already in a call. Hang up first.";
    return "The call could not go on. Try calling again.";
  }
  if (error instanceof client.MessengerError) {
    switch (error.kind) {
      case "NoDevices":
        return "That person has no device ready to receive messages yet.";
      case "IdentityChanged":
        return "This contact's safety number changed. Verify it before you continue.";
      default:
        return "The message could not be sent. Try again.";
    }
  }
  if (error instanceof Error && /IndexedDB/i.test(error.message)) return "This browser cannot store your keys (private window?).";
  return "Something went wrong. Please try again.";
}
