// The `fennel` command: one subcommand per file beside this one.

import { Command } from 'commander';
import { registerBeat } from './beat.ts';
import { registerCall } from './call.ts';
import { registerControl } from './control.ts';
import { registerDeadLetters } from './dead-letters.ts';
import { registerGateway } from './gateway.ts';
import { registerNames } from './names.ts';
import { registerPurge } from './purge.ts';
import { registerRevoke } from './revoke.ts';
import { registerStatus } from './status.ts';
import { registerWorker } from './worker.ts';
import { FENNEL_VERSION } from '../version.ts';

const program = new Command('fennel').description('Fennel: a distributed task queue for TypeScript, on Celery\'s wire protocol').version(FENNEL_VERSION);
program.exitOverride((error) => process.exit(error.exitCode === 1 ? 2 : error.exitCode));
registerWorker(program);
registerBeat(program);
registerCall(program);
registerPurge(program);
registerRevoke(program);
registerControl(program);
registerStatus(program);
registerDeadLetters(program);
registerGateway(program);
registerNames(program);
await program.parseAsync(process.argv);
