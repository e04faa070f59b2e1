// Runs the transport and backend conformance suites against the in-process memory:// engines.
// Each factory call is a new engine instance, so every test starts from an empty broker and store.

import { randomUUID } from 'node:crypto';
import { MemoryBackend } from '../../src/backends/memory.ts';
import { MemoryTransport } from '../../src/transports/memory.ts';
import { backendSuite } from './backend.suite.ts';
import { transportSuite } from './transport.suite.ts';

transportSuite('memory', () => new MemoryTransport(`memory://${randomUUID()}`), { delayedDelivery: true, priorities: true, crossProcess: false, deduplication: true, broadcast: true }, { presence: 'announced' });

backendSuite('memory', () => new MemoryBackend(`memory://${randomUUID()}`));
