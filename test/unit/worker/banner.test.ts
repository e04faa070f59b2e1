// The start banner (src/worker/banner.ts): the facts a person checks first, URLs without their passwords.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderBanner, type BannerFacts } from '../../../src/worker/banner.ts';

const facts: BannerFacts = {
  name: 'fennel.4711@vm',
  version: '9.9.9',
  appPath: '/srv/app/tasks.ts',
  broker: 'redis://:s3cret@10.0.0.5:6379/0',
  backend: 'redis://:s3cret@10.0.0.5:6379/1',
  pool: 'process',
  concurrency: 4,
  taskEvents: false,
  queues: ['math', 'celery'],
  tasks: ['math.mul', 'fennel.starmap', 'math.add'],
};

describe('renderBanner', () => {
  it('names the worker and version, the masked URLs, pool, concurrency, events, queues and sorted task names', () => {
    const text = renderBanner(facts, '/srv/app');
    assert.match(text, /fennel\.4711@vm v9\.9\.9/);
    assert.match(text, /\.> app: +\.\/tasks\.ts$/m);
    assert.match(text, /\.> transport: +redis:\/\/:\*\*\*@10\.0\.0\.5:6379\/0$/m);
    assert.match(text, /\.> results: +redis:\/\/:\*\*\*@10\.0\.0\.5:6379\/1$/m);
    assert.match(text, /\.> concurrency: +4 \(process pool\)$/m);
    assert.match(text, /\.> task events: +OFF/m);
    assert.match(text, /\[queues\]\n\.> math\n\.> celery\n/);
    assert.match(text, /\[tasks\]\n {2}\. math\.add\n {2}\. math\.mul\n/);
    assert.doesNotMatch(text, /s3cret/);
    assert.doesNotMatch(text, /fennel\.starmap/, 'the built-in task is not listed');
  });

  it('shows an app outside the working directory by its full path, and no app line without one', () => {
    assert.match(renderBanner(facts, '/elsewhere'), /\.> app: +\/srv\/app\/tasks\.ts$/m);
    assert.doesNotMatch(renderBanner({ ...facts, appPath: undefined }), /\.> app:/);
    assert.match(renderBanner({ ...facts, taskEvents: true, tasks: [] }), /task events: +ON\n[\s\S]*\(none registered\)/);
  });

  it('says whether it runs only signed messages, by key id', () => {
    assert.match(renderBanner(facts), /\.> signed: +OFF \(any message on its queues runs\)$/m);
    assert.match(renderBanner({ ...facts, signingKeyIds: ['0a1b2c3d', '4e5f6a7b'] }), /\.> signed: +ON: runs only messages signed with key 0a1b2c3d or 4e5f6a7b$/m);
  });
});
