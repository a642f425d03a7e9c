// A reporter for `node --test` that writes JUnit XML, for macrohard's verdict.
// It lives in the sandbox image, outside the product, so a product cannot replace it:
//   node --test --test-reporter=/usr/local/lib/macrohard/junit-reporter.mjs --test-reporter-destination=REPORT
// A test's id is its file (relative to the working directory) and the names of the tests
// it is nested in; a skipped or todo test is reported skipped.
import { relative } from 'node:path';

function escape(text) {
  return String(text)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export default async function* junit(source) {
  const stacks = new Map(); // file -> names of the tests started at each nesting level
  const cases = [];
  for await (const event of source) {
    const data = event.data || {};
    const file = data.file ? relative(process.cwd(), data.file) : '(unknown file)';
    if (event.type === 'test:start') {
      const stack = stacks.get(file) || [];
      stack.length = data.nesting;
      stack.push(data.name);
      stacks.set(file, stack);
    } else if (event.type === 'test:pass' || event.type === 'test:fail') {
      const parents = (stacks.get(file) || []).slice(0, data.nesting);
      const seconds = ((data.details && data.details.duration_ms) || 0) / 1000;
      let outcome = '';
      if (data.skip !== undefined || data.todo !== undefined) {
        outcome = '<skipped/>';
      } else if (data.nesting === 0 && data.file && data.name === data.file) {
        // node reports a test file whose process ran no test as one test named by its path, passed
        // when the process exited 0: product code that exits as it is loaded would pass every file.
        outcome = '<failure message="the test file ran no test: its process ended before any test ran"></failure>';
      } else if (event.type === 'test:fail') {
        const error = data.details && data.details.error;
        outcome = `<failure message="${escape(error && error.message ? error.message : 'failed')}">${escape(error && error.stack ? error.stack : error || '')}</failure>`;
      }
      cases.push(`<testcase classname="${escape(file)}" name="${escape([...parents, data.name].join(' > '))}" time="${seconds}">${outcome}</testcase>`);
    }
  }
  yield `<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="node --test" tests="${cases.length}">\n${cases.join('\n')}\n</testsuite></testsuites>\n`;
}
