// The service worker: keeps the app shell (index, hashed script and style,
// icon, manifest) so the app opens offline; never touches /v1/ (the
// WebSocket) and answers other requests from the network first.
const SHELL = "%SHELL%";
const CACHE = `microbot-shell-${SHELL.join("|").length}-${SHELL[1]}`;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => response)
      .catch(() => caches.match(url.pathname === "/" || url.pathname === "/index.html" ? "/" : event.request).then((hit) => hit ?? Response.error())),
  );
});
