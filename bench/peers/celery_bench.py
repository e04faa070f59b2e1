"""Python Celery's side of the Redis comparison (bench/redis.bench.ts): the Celery app, and the producer.

As the app, run by the worker processes bench/redis.bench.ts spawns (cwd bench/peers):
    CELERY_BENCH_URL=redis://127.0.0.1:6379/15 /usr/bin/python3 -m celery -A celery_bench worker -P threads -c 8
It prints one JSON "worker ready" line on stdout (the worker_ready signal) so the driver knows when to start.

As the producer, one measurement per invocation, printed as one JSON line on stdout:
    python3 celery_bench.py e2e <count> <batch> [<warmup>]   group(...).apply_async() per batch, then join_native();
                                                        also prints the producer's own CPU seconds
    python3 celery_bench.py enqueue-single <count> [<warmup>]  noop.delay() in a loop (a publish is synchronous)
    python3 celery_bench.py enqueue-bulk <count> <batch> [<warmup>]  group(...).apply_async() per batch
    python3 celery_bench.py latency <count> <warmup>    noop.delay().get() one at a time: p50, p99 in ms
With --echo first (the Redis comparison), every call is echo(n), n counting from 1, and every result awaited is
checked to be n. <warmup> is what runs untimed first: that many tasks end to end (e2e, in the same batches),
calls (enqueue-*) or round trips (latency); without it, e2e runs one round trip and enqueue-* one call (the AMQP
comparison's no-op runs).
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


@app.task(name='bench.echo')
def echo(x):
    return x


# Set by --echo: the task every mode calls, with its argument n (1, 2, ...), or the no-op with none.
ECHO = False


def _signature(n):
    return echo.s(n) if ECHO else noop.s()


def _call(n):
    return echo.delay(n) if ECHO else noop.delay()


def _check(values, first):
    if not ECHO:
        return
    for offset, value in enumerate(values):
        if value != first + offset:
            sys.exit(f'echo({first + offset}) returned {value!r}')


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


def _pass(first, count, batch):
    """Sends `count` calls in groups of `batch`, then awaits every result (and checks it, with --echo)."""
    results = []
    for size in _batches(count, batch):
        start = first + len(results)
        results.extend(group(_signature(n) for n in range(start, start + size)).apply_async().results)
    try:
        values = ResultSet(results).join_native(timeout=JOIN_TIMEOUT_SEC)
    except CeleryTimeoutError:
        # Say which results never came (lost tasks, or lost result messages), rather than only that it hung.
        states = Counter(r.state for r in results)
        sys.exit(f'join_native timed out after {JOIN_TIMEOUT_SEC} s; stored states of the {count} results: {dict(states)}')
    _check(values, first)


def end_to_end(count, batch, warmup=None):
    # The worker consumes, and the queue is empty, before the clock starts.
    if warmup is None:
        _call(1).get(timeout=60)
    else:
        _pass(1, warmup, batch)
    first = 1 + (warmup or 1)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    _pass(first, count, batch)
    return {'rate': count / (time.perf_counter() - t0), 'producer_cpu_sec': time.process_time() - cpu0}


def enqueue_single(count, warmup=1):
    for n in range(1, warmup + 1):  # connects outside the timing
        _call(n)
    t0 = time.perf_counter()
    for n in range(warmup + 1, warmup + count + 1):
        _call(n)
    return {'rate': count / (time.perf_counter() - t0)}


def enqueue_bulk(count, batch, warmup=1):
    def send(first, total):
        for offset, size in zip(range(0, total, batch), _batches(total, batch)):
            group(_signature(n) for n in range(first + offset, first + offset + size)).apply_async()

    send(1, warmup)
    t0 = time.perf_counter()
    send(warmup + 1, count)
    return {'rate': count / (time.perf_counter() - t0)}


def _round_trip(n, timeout):
    value = _call(n).get(timeout=timeout)
    _check([value], n)


def latency(count, warmup):
    for n in range(1, warmup + 1):
        _round_trip(n, 60)
    times = []
    for n in range(warmup + 1, warmup + count + 1):
        t0 = time.perf_counter()
        _round_trip(n, 30)
        times.append((time.perf_counter() - t0) * 1000)
    return {'p50': _percentile(times, 50), 'p99': _percentile(times, 99)}


def main(argv):
    global ECHO
    if argv[:1] == ['--echo']:
        ECHO = True
        argv = argv[1:]
    mode, *numbers = argv
    n = [int(x) for x in numbers]
    run = {
        'e2e': lambda: end_to_end(*n[:3]),
        'enqueue-single': lambda: enqueue_single(*n[:2]),
        'enqueue-bulk': lambda: enqueue_bulk(*n[:3]),
        'latency': lambda: latency(n[0], n[1]),
    }[mode]
    print(json.dumps(run()), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
