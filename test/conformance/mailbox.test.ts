// Runs the mailbox suite (mailbox.suite.ts) against every remote-control mailbox engine. Only memory:// exists so
// far (issue #16 in progress); Redis, RabbitMQ and SQLite join here as they are written.

import { randomUUID } from 'node:crypto';
import { MemoryMailboxEngine } from '../../src/control/memory.ts';
import { mailboxSuite } from './mailbox.suite.ts';

// memory:// engines are shared by URL within a process: the suite's engines of one test are one engine.
let shared: MemoryMailboxEngine | undefined;
mailboxSuite('memory', { open: () => (shared ??= new MemoryMailboxEngine(`memory://mailbox-${randomUUID()}`)) });
