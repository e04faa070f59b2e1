#!/usr/bin/env node
// The installed `fennel` command. tsx is registered so that `--app ./tasks.ts` loads TypeScript directly.
import { register } from 'tsx/esm/api';
register();
await import('../dist/cli/main.js');
