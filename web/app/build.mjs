// Builds the app into dist/: content-hashed script and style under
// dist/assets/ (cached as immutable by the server, SPEC.md §12.16), an
// index.html naming them (no inline script: the CSP forbids it), the PWA
// manifest, the service worker and the icon.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

const root = new URL(".", import.meta.url).pathname;
const dist = `${root}dist`;
rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}/assets`, { recursive: true });

const result = await build({
  entryPoints: [`${root}src/main.tsx`, `${root}src/style.css`],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  outdir: `${dist}/assets`,
  entryNames: "[name]-[hash]",
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  logLevel: "warning",
  legalComments: "none",
});

// The sample miniapps (web/miniapp): one classic script each (a sandboxed
// frame has an opaque origin, so a module script would need CORS) and their
// stylesheet, under /miniapps/ (revalidated on each load).
mkdirSync(`${dist}/miniapps`, { recursive: true });
await build({
  entryPoints: { poll: `${root}../miniapp/src/samples/poll_main.ts`, checklist: `${root}../miniapp/src/samples/checklist_main.ts` },
  bundle: true,
  format: "iife",
  target: "es2022",
  minify: true,
  outdir: `${dist}/miniapps`,
  logLevel: "warning",
  legalComments: "none",
});
copyFileSync(`${root}../miniapp/src/samples/miniapp.css`, `${dist}/miniapps/miniapp.css`);

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const script = outputs.find((n) => n.startsWith("main-") && n.endsWith(".js"));
const style = outputs.find((n) => n.startsWith("style-") && n.endsWith(".css"));
if (!script || !style) throw new Error(`build outputs missing: ${outputs.join(", ")}`);

const html = readFileSync(`${root}src/index.html`, "utf8").replace("%SCRIPT%", `/assets/${script}`).replace("%STYLE%", `/assets/${style}`);
writeFileSync(`${dist}/index.html`, html);
// The service worker caches the shell: it learns the hashed names here.
const sw = readFileSync(`${root}public/sw.js`, "utf8").replace('"%SHELL%"', JSON.stringify(["/", `/assets/${script}`, `/assets/${style}`, "/icon.svg", "/manifest.webmanifest"]));
writeFileSync(`${dist}/sw.js`, sw);
for (const file of ["manifest.webmanifest", "icon.svg"]) copyFileSync(`${root}public/${file}`, `${dist}/${file}`);
console.log(`built dist/ (${script}, ${style})`);
