// web/test/browser/pages/nostorage.worker.js: synclog's own worker
// (/synclog-worker.js, from web/dist) started in a context that has no
// Origin Private File System, as an old browser or a refused storage would
// be: navigator.storage is hidden before the worker's module runs.
Object.defineProperty(self.navigator, 'storage', { value: undefined, configurable: true });
/* The page's first messages may come while the import is under way, before
 * synclog's worker listens: keep them and hand them over afterwards. */
const early = [];
const keep = (e) => early.push(e.data);
self.addEventListener('message', keep);
const real = '/synclog-worker.js'; /* a variable, so that esbuild leaves the import to the browser */
await import(real);
self.removeEventListener('message', keep);
for (const data of early) self.dispatchEvent(new MessageEvent('message', { data }));
