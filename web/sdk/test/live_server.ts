/**
 * The pieces the live tests share: a real `microbot-server` child process
 * on a free loopback port (cheap password hashing, wide TOTP skew, no
 * registration or login rate limits), its address and certificate pin read
 * from its first lines; and a runner for the Rust CLI.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** A started server. */
export interface LiveServer {
  /** `host:port` it listens on (QUIC and WebSocket). */
  address: string;
  /** SHA-256 of its certificate, hex. */
  fingerprint: string;
  /** Its self-signed certificate (PEM), for Node's chain check. */
  certPemPath: string;
  /** Stops it (SIGTERM). */
  stop(): void;
}

/** Starts `bin` with its data in `dataDir` and `extraArgs` after the test settings; rejects if it has not printed its address and pin within 20 s. */
export async function startLiveServer(bin: string, dataDir: string, extraArgs: string[] = []): Promise<LiveServer> {
  const child: ChildProcess = spawn(
    bin,
    ["--data-dir", dataDir, "--listen", "127.0.0.1:0", "--argon2-memory-kib", "64", "--argon2-iterations", "1", "--totp-skew-steps", "10",
      "--rate-register-per-ip", "0", "--rate-login-per-ip", "0", "--rate-login-per-account", "0", ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let address = "";
  let fingerprint = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 20_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const listen = /listening on (\S+)/.exec(line);
      if (listen) address = listen[1]!;
      const fp = /fingerprint: ([0-9a-f]{64})/.exec(line);
      if (fp) fingerprint = fp[1]!;
      if (address && fingerprint) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.resume();
  });
  return { address, fingerprint, certPemPath: join(dataDir, "cert.pem"), stop: () => child.kill("SIGTERM") };
}

/** What a CLI run printed and how it ended. */
export type CliRun = { code: number | null; stdout: string; stderr: string };

/** Runs the CLI `bin` in `profile` (state under `home`, `password` from the environment); `onLine` sees each stdout line and the CLI's stdin, else `input` is its whole stdin. */
export function runCli(bin: string, home: string, password: string, profile: string, args: string[], input = "", onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(bin, ["--profile", profile, ...args], {
      env: { ...process.env, MICROBOT_HOME: home, MICROBOT_PASSWORD: password, MICROBOT_CONNECT_TIMEOUT: "20", MICROBOT_PASSPHRASE: "" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    createInterface({ input: child.stdout! }).on("line", (line) => {
      stdout += line + "\n";
      onLine?.(line, child.stdin!);
    });
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    if (!onLine) child.stdin!.end(input);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
