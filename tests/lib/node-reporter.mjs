// tests/lib/node-reporter.mjs: a reporter for Node's test runner that prints
// one line per test in the suites' format (tests/suites/README.md), so that
// run-all.sh counts each Node test:
//
//   node --test --test-reporter=tests/lib/node-reporter.mjs FILE...
//
//   PASS: SUITE: FILE: [PARENT > ]NAME
//   FAIL: SUITE: FILE: [PARENT > ]NAME      (the error and its stack before it)
//   SKIP: …  /  TODO: …                     (not counted: neither PASS nor FAIL)
//
// SUITE is $SYNCLOG_SUITE_NAME (default "node").  A describe() block is not a
// test of its own: only its tests are printed, named after it; a failure in
// a suite's hooks, or a file that fails before any test (an import error),
// is one FAIL line.  Diagnostics (the runner's "tests N", "pass N"…) and
// anything a test prints go to the output as "# " lines.
import { basename } from 'node:path';

const SUITE = process.env.SYNCLOG_SUITE_NAME || 'node';

function indent(text, by = '    ') {
  return String(text).split('\n').map((l) => by + l).join('\n');
}

function describeError(err) {
  if (!err) return '';
  /* the runner wraps a test's error: the interesting one is its cause */
  const e = err.cause ?? err;
  let s = e?.stack ?? String(e);
  if (e?.message && !s.includes(e.message)) s = `${e.message}\n${s}`;
  if (e && typeof e === 'object' && 'expected' in e && 'actual' in e && !s.includes('expected')) {
    s += `\nexpected: ${JSON.stringify(e.expected)}\nactual:   ${JSON.stringify(e.actual)}`;
  }
  return s;
}

export default async function* reporter(source) {
  /* per file: the names of the enclosing tests at each nesting level */
  const stacks = new Map();
  const label = (data) => {
    const file = data.file ? basename(data.file) : '?';
    const stack = stacks.get(data.file) ?? [];
    const parents = stack.slice(0, data.nesting).filter(Boolean);
    return `${SUITE}: ${file}: ${[...parents, data.name].join(' > ')}`;
  };
  for await (const { type, data } of source) {
    switch (type) {
      case 'test:start': {
        const stack = stacks.get(data.file) ?? [];
        stack[data.nesting] = data.name;
        stack.length = data.nesting + 1;
        stacks.set(data.file, stack);
        break;
      }
      case 'test:pass': {
        if (data.details?.type === 'suite') break;
        if (data.skip !== undefined && data.skip !== false) yield `SKIP: ${label(data)}${typeof data.skip === 'string' ? ` (${data.skip})` : ''}\n`;
        else if (data.todo !== undefined && data.todo !== false) yield `TODO: ${label(data)}\n`;
        else yield `PASS: ${label(data)}\n`;
        break;
      }
      case 'test:fail': {
        const err = data.details?.error;
        /* a suite fails when a test in it failed (already printed) or when
         * its own hooks or body did */
        if (data.details?.type === 'suite' && err?.failureType === 'subtestsFailed') break;
        if (data.todo !== undefined && data.todo !== false) {
          yield `TODO: ${label(data)} (failing)\n`;
          break;
        }
        yield `--- ${label(data)}:\n${indent(describeError(err))}\n`;
        yield `FAIL: ${label(data)}\n`;
        break;
      }
      case 'test:diagnostic':
        if (data.nesting === 0) yield `# ${data.message}\n`;
        break;
      case 'test:stdout':
      case 'test:stderr':
        yield indent(data.message.replace(/\n$/, ''), '# ') + '\n';
        break;
      default:
        break;
    }
  }
}
