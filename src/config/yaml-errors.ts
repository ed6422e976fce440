/**
 * A YAML document's parse errors as the sidecar's problem lines, one per error: `where:line:col:
 * is not valid <what>: <first line of the message>`. The settings file and the webhook's sidecar
 * template both report them this way.
 */
import type { Document } from 'yaml';

export function yamlErrorLines(document: Document, where: string, what: string): string[] {
  return document.errors.map((error) => {
    // A pretty message carries a code excerpt on the lines after the first; one line each.
    const first = (error.message.split('\n')[0] ?? '').replace(/( at line \d+, column \d+)?:$/, '');
    const at = error.linePos?.[0];
    return `${where}${at === undefined ? '' : `:${at.line}:${at.col}`}: is not valid ${what}: ${first}`;
  });
}
