// Validates an AsyncAPI document with the official parser (@asyncapi/parser, its default
// rulesets): prints every diagnostic and exits 1 if any is an error (severity 0), 2 on bad usage.
//
//   node tests/asyncapi/validate.mjs generated/asyncapi/asyncapi.json
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'information', 'hint'];

const file = process.argv[2];
if (!file || process.argv.length > 3) {
  console.error('usage: node validate.mjs ASYNCAPI_FILE');
  process.exit(2);
}

const source = pathToFileURL(resolve(file)).href;
const text = await readFile(file, 'utf8');
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source });

let errors = 0;
for (const d of diagnostics) {
  const severity = SEVERITY[d.severity] ?? String(d.severity);
  if (d.severity === DiagnosticSeverity.Error) errors += 1;
  const where = d.path && d.path.length ? ` at /${d.path.join('/')}` : '';
  console.log(`${severity}: ${d.code}${where}: ${d.message}`);
}

if (errors > 0 || document === undefined) {
  console.log(`${file}: ${errors} error(s), ${diagnostics.length - errors} other diagnostic(s): INVALID`);
  process.exit(1);
}
console.log(
  `${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
    `${document.operations().length} operations, ${document.messages().length} messages; ` +
    `${diagnostics.length} diagnostic(s), none an error`,
);
