// Parse an AsyncAPI document with the reference parser (@asyncapi/parser) and print
// its diagnostics and what it understood, as JSON. Usage: node parse.mjs FILE
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
const names = (messages) => messages.all().map((m) => m.name());
const out = {
  diagnostics: diagnostics.map((d) => ({
    code: d.code, severity: d.severity, message: d.message, path: d.path,
  })),
  parsed: document !== undefined,
};
if (document) {
  out.version = document.version();
  out.title = document.info().title();
  out.operations = Object.fromEntries(document.operations().all().map((op) => [op.id(), {
    action: op.action(),
    channel: op.channels().all().map((c) => c.id()),
    messages: names(op.messages()),
    reply: op.reply() ? names(op.reply().messages()) : null,
  }]));
  out.channels = Object.fromEntries(document.channels().all().map((c) => [c.id(), {
    address: c.address(),
    messages: names(c.messages()),
  }]));
  out.correlationIds = document.messages().all()
    .filter((m) => m.hasCorrelationId())
    .map((m) => [m.name(), m.correlationId().location()]);
}
console.log(JSON.stringify(out));
