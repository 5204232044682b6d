// web/test/browser/pages/opfs-page.js: the page side of the OPFS test.
// Starts /test-opfs-worker.js (pages/opfs.worker.js, bundled) as a module
// worker and exposes window.opfsTest.call(op, args) → a promise of the
// worker's answer (rejected with the worker's error, its name kept), and
// window.opfsTest.ready once the module ran.
const worker = new Worker(new URL('../test-opfs-worker.js', import.meta.url), { type: 'module' });
const waiting = new Map();
let next = 1;
let failure = null;

function failAll(why) {
  failure = why;
  for (const { reject } of waiting.values()) reject(new Error(why));
  waiting.clear();
}

worker.onmessage = (e) => {
  const { id, ok, value, error } = e.data;
  const w = waiting.get(id);
  if (!w) return;
  waiting.delete(id);
  if (ok) {
    w.resolve(value);
  } else {
    const err = new Error(error.message);
    err.name = error.name;
    w.reject(err);
  }
};
worker.onerror = (e) => failAll(`worker error: ${e.message || 'the worker script failed to load'}`);
worker.onmessageerror = () => failAll('worker message could not be decoded');

window.opfsTest = {
  ready: true,
  call(op, args) {
    if (failure) return Promise.reject(new Error(failure));
    const id = next++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, op, args });
    });
  },
};
