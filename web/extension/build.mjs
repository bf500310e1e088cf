// Builds the unpacked extension into dist/ (or --out DIR) for one server:
// `node build.mjs --server https://chat.example.org:7447` (or MICROBOT_SERVER;
// default https://localhost:7447, what scripts/run.sh serves). The server's
// origin goes into the bundle, into the manifest's only host permission and
// into the content security policy's only connect-src.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

const root = new URL(".", import.meta.url).pathname;
const { values } = parseArgs({ options: { server: { type: "string" }, out: { type: "string" } } });
const dist = values.out ?? `${root}dist`;

/** The configured origin, checked: https, or http only on loopback (a server started with --ws-plain). */
function serverOrigin(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`not a server URL: ${text} (expected https://host[:port])`);
  }
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) throw new Error(`the server must be https:// (http:// only on loopback): ${text}`);
  if (url.pathname !== "/" || url.search || url.hash || url.username) throw new Error(`give the server's origin only (scheme, host, port): ${text}`);
  return url;
}

const server = serverOrigin(values.server ?? process.env.MICROBOT_SERVER ?? "https://localhost:7447");
const origin = server.origin;
const wsOrigin = `${server.protocol === "http:" ? "ws:" : "wss:"}//${server.host}`;

rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}/icons`, { recursive: true });

await build({
  entryPoints: { background: `${root}src/background.ts`, popup: `${root}src/popup.tsx`, options: `${root}src/options.tsx` },
  bundle: true,
  format: "esm",
  target: "chrome116",
  minify: true,
  sourcemap: false,
  outdir: dist,
  jsx: "automatic",
  jsxImportSource: "preact",
  define: { MICROBOT_SERVER: JSON.stringify(origin) },
  logLevel: "warning",
  legalComments: "none",
});

for (const file of ["popup.html", "options.html", "extension.css"]) copyFileSync(`${root}src/${file}`, `${dist}/${file}`);
const icons = {};
for (const file of readdirSync(`${root}icons`).filter((f) => /^icon-\d+\.png$/.test(f))) {
  copyFileSync(`${root}icons/${file}`, `${dist}/icons/${file}`);
  icons[/\d+/.exec(file)[0]] = `icons/${file}`;
}

const manifest = {
  manifest_version: 3,
  name: "Microbot",
  version: "0.1.0",
  description: `End-to-end encrypted chat on ${server.host}: unread count, read and answer, notifications.`,
  // WebSocket traffic keeps a service worker alive from Chromium 116 on.
  minimum_chrome_version: "116",
  icons,
  action: { default_title: "Microbot", default_popup: "popup.html", default_icon: icons },
  background: { service_worker: "background.js", type: "module" },
  options_ui: { page: "options.html", open_in_tab: true },
  permissions: ["alarms", "notifications", "storage"],
  host_permissions: [`${origin}/*`],
  content_security_policy: {
    extension_pages: [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self'",
      `connect-src ${wsOrigin}`,
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
  },
};
writeFileSync(`${dist}/manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`built ${dist} for ${origin}`);
