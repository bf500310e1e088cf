/** Tiny DOM helpers the sample apps' front ends share (no framework: the apps stay a few kilobytes). */

/** Creates an element with properties and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string | boolean | ((event: Event) => void)>> = {},
  ...children: Array<Node | string | null | undefined>
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(key.replace(/^on/, "").toLowerCase(), value);
    else if (key === "text") element.textContent = String(value);
    else if (key in element && typeof value === "boolean") (element as unknown as Record<string, boolean>)[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) element.append(child);
  return element;
}

/** Replaces everything under `root` with `children`. */
export function render(root: HTMLElement, ...children: Array<Node | null>): void {
  root.replaceChildren(...children.filter((c): c is Node => c !== null));
}

/** The app's root element. */
export function appRoot(): HTMLElement {
  const root = document.getElementById("app");
  if (!root) throw new Error("no #app element in the miniapp document");
  return root;
}

/** 16 random bytes in hex. */
export function randomId(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}
