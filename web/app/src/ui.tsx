/**
 * Small shared pieces of the UI: a QR code image, the busy/error pattern of
 * every network action, an error line.
 */
import { useState } from "preact/hooks";
import encodeQR from "qr";

import { describeError } from "./errors.js";

/** An SVG QR code of `text` as an image. */
export function Qr({ text, label }: { text: string; label: string }) {
  const svg = encodeQR(text, "svg");
  return <img class="qr" alt={label} src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`} />;
}

/** Runs `action` with a busy flag and an error in words. */
export function useAction(): [boolean, string | undefined, (action: () => Promise<void>) => Promise<void>, (e?: string) => void] {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      console.warn(e);
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  };
  return [busy, error, run, setError];
}

export function ErrorLine({ error }: { error: string | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

