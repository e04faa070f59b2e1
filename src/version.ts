// Fennel's version, read from package.json (src/ and dist/ both sit one level below it).

import { readFileSync } from 'node:fs';

export const FENNEL_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
