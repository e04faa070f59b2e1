"""Python Celery's side of the Redis comparison (bench/redis.bench.ts): the Celery app, and the producer.

As the app, run by the worker processes bench/redis.bench.ts spawns (cwd bench/peers):
    CELERY_BENCH_URL=redis://127.0.0.1:6379/15 /usr/bin/python3 -m celery -A celery_bench worker -P threads -c 8
It prints one JSON "worker ready" line on stdout (the worker_ready signal) so the driver knows when to start.

As the producer, one measurement per invocation, printed as one JSON line on stdout:
    python3 celery_bench.py e2e <count> <batch>         group(...).apply_async() per batch, then join_native();
                                                        also prints the producer's own CPU seconds
    python3 celery_bench.py enqueue-single <count>      noop.delay() in a loop (a publish is synchronous)
    python3 celery_bench.py enqueue-bulk <count> <batch>  group(...).apply_async() per batch
    python3 celery_bench.py latency <count> <warmup>    noop.delay().get() one at a time: p50, p99 in ms
Everything else is Celery 5's defaults (JSON, Redis broker and result backend on the same database).
"""

import json
import os
import sys
import time
from collections import Counter

from celery import Celery, group
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet
from celery.signals import worker_ready

URL = os.environ.get('CELERY_BENCH_URL', 'redis://127.0.0.1:6379/15')
# The AMQP comparison (bench/amqp.bench.ts) sets these: RabbitMQ as the broker, rpc:// results.
BROKER = os.environ.get('CELERY_BENCH_BROKER', URL)
BACKEND = os.environ.get('CELERY_BENCH_BACKEND', URL)
JOIN_TIMEOUT_SEC = 120

app = Celery('celery_bench', broker=BROKER, backend=BACKEND)
app.conf.broker_connection_retry_on_startup = True


@app.task(name='bench.noop')
def noop():
    return None


@worker_ready.connect
def _ready(sender=None, **_):
    # The worker redirects sys.stdout into its logger; the driver reads the real stdout.
    print(json.dumps({'level': 30, 'msg': 'worker ready: celery', 'pid': os.getpid()}), file=sys.__stdout__, flush=True)


def _batches(count, batch):
    for start in range(0, count, batch):
        yield min(batch, count - start)


def _percentile(values, p):
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))  # nearest rank, as bench/support.ts
    return ordered[min(len(ordered), rank) - 1]


def end_to_end(count, batch):
    noop.delay().get(timeout=60)  # the worker consumes, and the queue is empty, before the clock starts
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    results = []
    for size in _batches(count, batch):
        results.extend(group(noop.s() for _ in range(size)).apply_async().results)
    try:
        ResultSet(results).join_native(timeout=JOIN_TIMEOUT_SEC)
    except CeleryTimeoutError:
        # Say which results never came (lost tasks, or lost result messages), rather than only that it hung.
        states = Counter(r.state for r in results)
        sys.exit(f'join_native timed out after {JOIN_TIMEOUT_SEC} s; stored states of the {count} results: {dict(states)}')
    return {'rate': count / (time.perf_counter() - t0), 'producer_cpu_sec': time.process_time() - cpu0}


def enqueue_single(count):
    noop.delay()  # connects outside the timing
    t0 = time.perf_counter()
    for _ in range(count):
        noop.delay()
    return {'rate': count / (time.perf_counter() - t0)}


def enqueue_bulk(count, batch):
    noop.delay()
    t0 = time.perf_counter()
    for size in _batches(count, batch):
        group(noop.s() for _ in range(size)).apply_async()
    return {'rate': count / (time.perf_counter() - t0)}


def latency(count, warmup):
    for _ in range(warmup):
        noop.delay().get(timeout=60)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        noop.delay().get(timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
    return {'p50': _percentile(times, 50), 'p99': _percentile(times, 99)}


def main(argv):
    mode, *numbers = argv
    n = [int(x) for x in numbers]
    run = {
        'e2e': lambda: end_to_end(n[0], n[1]),
        'enqueue-single': lambda: enqueue_single(n[0]),
        'enqueue-bulk': lambda: enqueue_bulk(n[0], n[1]),
        'latency': lambda: latency(n[0], n[1]),
    }[mode]
    print(json.dumps(run()), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
