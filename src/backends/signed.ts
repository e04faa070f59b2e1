// Signed results and records: what an app with `signingKey` stores in its result backend carries an HMAC (the
// message signature's keys, protocol/signing.ts), and what it reads must carry a valid one. A result that does not
// verify reads as a FAILURE with SignatureError (get() rejects; a call taking it as a reference fails with
// DependencyError), never as the forged value; a record that does not verify (the name server's entries, beat's
// state) is left out of readRecords, with a process warning naming it.
//
// Wraps any engine: every method passes through but those that store or read metas and records. Chord joins
// (their members' results inside the join) and leases are not covered: docs/security.md.

import type { ResultBackend } from './backend.ts';
import { overlay } from '../util/overlay.ts';
import { exceptionInfo, type TaskMeta } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import { SIGNATURE_HEADER, type Signer } from '../protocol/signing.ts';

/** A record as an app with a key stores it: the record's own JSON, and the signature over its table, key and JSON. */
interface SignedRecord {
  fennel_record: string;
  [SIGNATURE_HEADER]: string;
}

export function signedBackend(inner: ResultBackend, signer: Signer): ResultBackend {
  const sign = (meta: TaskMeta): TaskMeta => ({ ...meta, [SIGNATURE_HEADER]: signer.signText(metaText(meta)) }) as TaskMeta;
  const check = (meta: TaskMeta | undefined): TaskMeta | undefined => {
    if (!meta) return meta;
    const { [SIGNATURE_HEADER]: signature, ...plain } = meta as TaskMeta & { [SIGNATURE_HEADER]?: unknown };
    const verdict = signer.verifyText(metaText(plain), signature);
    if (verdict.ok) return plain;
    return { status: States.FAILURE, result: exceptionInfo('SignatureError', `the stored result of task ${meta.task_id} was refused: ${verdict.reason}`, 'fennel'), traceback: null, children: [], date_done: meta.date_done, task_id: meta.task_id };
  };
  const overrides: Partial<ResultBackend> = {
    store: (meta) => inner.store(sign(meta)),
    get: async (taskId) => check(await inner.get(taskId)),
    wait: async (taskId, options) => check(await inner.wait(taskId, options)),
  };
  if (inner.storeFor) overrides.storeFor = (meta, ttlSec) => inner.storeFor!(sign(meta), ttlSec);
  if (inner.settle) overrides.settle = (meta) => inner.settle!(sign(meta));
  if (inner.settleAndAck) overrides.settleAndAck = (meta, ack) => inner.settleAndAck!(sign(meta), ack);
  if (inner.putRecord) {
    overrides.putRecord = (table, key, json) => {
      const record: SignedRecord = { fennel_record: json, [SIGNATURE_HEADER]: signer.signText(recordText(table, key, json)) };
      return inner.putRecord!(table, key, JSON.stringify(record));
    };
  }
  if (inner.readRecords) {
    overrides.readRecords = async (table) => {
      const verified = new Map<string, string>();
      for (const [key, text] of await inner.readRecords!(table)) {
        let record: Partial<SignedRecord> | undefined;
        try {
          record = JSON.parse(text) as Partial<SignedRecord>;
        } catch {
          record = undefined;
        }
        const json = typeof record?.fennel_record === 'string' ? record.fennel_record : undefined;
        const verdict = json === undefined ? { ok: false as const, reason: 'it is not signed' } : signer.verifyText(recordText(table, key, json), record?.[SIGNATURE_HEADER]);
        if (verdict.ok) verified.set(key, json!);
        else process.emitWarning(`record ${JSON.stringify(key)} of ${table} in ${inner.url} was left out: ${verdict.reason}`, { code: 'FENNEL_SIGNATURE' });
      }
      return verified;
    };
  }
  return overlay(inner, overrides);
}

/** What a result's signature covers: its id, state, result, traceback and time (the fields a reader acts on). */
function metaText(meta: TaskMeta): string {
  return JSON.stringify(['fennel-result-v1', meta.task_id, meta.status, meta.result === undefined ? null : meta.result, meta.traceback, meta.date_done]);
}

function recordText(table: string, key: string, json: string): string {
  return JSON.stringify(['fennel-record-v1', table, key, json]);
}
