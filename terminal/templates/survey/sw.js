/* Service Worker of the desk tablet app (scope /tablet/). The app shell is cached at install,
   so the survey keeps working — and reloads — while the server is unreachable. Answers never
   pass through here: the page keeps them in IndexedDB until the server confirms them. Nor does
   the configuration: the page keeps its own copy, which also records the shift started on this
   tablet; a copy cached here would predate the shift and, served offline, lose who served. */
"use strict";
const CACHE = "cnap-tablet-{{ version }}";
const MEDIA_CACHE = "cnap-tablet-media";
const SHELL = ["/tablet/", "/tablet/static/tablet.js", "/tablet/static/tablet.css", "/static/kiosk.css",
               "/static/kiosk.js", "/static/i18n.js", "/tablet/i18n/uk.json", "/tablet/i18n/en.json",
               "/tablet/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(
    keys.filter((k) => k !== CACHE && k !== MEDIA_CACHE).map((k) => caches.delete(k))
  )).then(() => self.clients.claim()));
});

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), ms);
    promise.then((v) => { clearTimeout(timer); resolve(v); }, (e) => { clearTimeout(timer); reject(e); });
  });
}

// Network first (so updates arrive), the cache when the server is away or too slow.
async function networkFirst(request, cacheKey) {
  const cache = await caches.open(CACHE);
  try {
    const response = await withTimeout(fetch(request), 4000);
    if (response.ok) await cache.put(cacheKey, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(cacheKey);
    if (cached) return cached;
    throw err;
  }
}

// Media names are content hashes: cache first, and answer range requests from the cache too.
async function media(request) {
  const cache = await caches.open(MEDIA_CACHE);
  const url = new URL(request.url).pathname;
  let cached = await cache.match(url);
  if (!cached) {
    const full = await fetch(url);
    if (full.ok && full.status === 200) { await cache.put(url, full.clone()); }
    cached = full;
  }
  const range = request.headers.get("range");
  if (!range || cached.status !== 200) return cached;
  const blob = await cached.clone().blob();
  const match = /bytes=(\d*)-(\d*)/.exec(range);
  const start = match && match[1] ? parseInt(match[1], 10) : 0;
  const end = match && match[2] ? Math.min(parseInt(match[2], 10), blob.size - 1) : blob.size - 1;
  return new Response(blob.slice(start, end + 1), {
    status: 206,
    headers: { "Content-Type": cached.headers.get("Content-Type") || "application/octet-stream",
               "Content-Range": `bytes ${start}-${end}/${blob.size}`, "Content-Length": String(end - start + 1),
               "Accept-Ranges": "bytes" },
  });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/tablet/media/")) { event.respondWith(media(request)); return; }
  if (request.mode === "navigate" && url.pathname.startsWith("/tablet/")) {
    event.respondWith(networkFirst(request, "/tablet/")); return;
  }
  // The page links its files as /…/tablet.css?v=<content hash>: cached by path, query stripped,
  // so an offline reload finds them whatever version the cached page names.
  if (SHELL.includes(url.pathname)) { event.respondWith(networkFirst(request, url.pathname)); }
});
