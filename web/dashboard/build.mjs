// Builds the dashboard into dist/: a content-hashed script and style under
// dist/assets/ and an index.html naming them (no inline script or style:
// the admin listener's CSP forbids both, SPEC.md §18.7).
import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

const root = new URL(".", import.meta.url).pathname;
const dist = `${root}dist`;
rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}/assets`, { recursive: true });

const result = await build({
  entryPoints: [`${root}src/main.ts`, `${root}src/style.css`],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  outdir: `${dist}/assets`,
  entryNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
  legalComments: "none",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const script = outputs.find((n) => n.startsWith("main-") && n.endsWith(".js"));
const style = outputs.find((n) => n.startsWith("style-") && n.endsWith(".css"));
if (!script || !style) throw new Error(`build outputs missing: ${outputs.join(", ")}`);
const html = readFileSync(`${root}src/index.html`, "utf8").replace("%SCRIPT%", `/admin/assets/${script}`).replace("%STYLE%", `/admin/assets/${style}`);
writeFileSync(`${dist}/index.html`, html);
console.log(`built dist/ (${script}, ${style})`);
