"""Python Celery's side of the remote-control benchmark (bench/control.bench.ts): the Celery app, and the client.

As the app, run by the worker the driver spawns (cwd bench/peers), on a queue nothing is sent to:
    CELERY_BENCH_BROKER=redis://127.0.0.1:6379/15 /usr/bin/python3 -m celery -A celery_control worker -P solo -Q q -n node
It prints one JSON "worker ready" line on stdout (the worker_ready signal) so the driver knows when to start. The
command line's ping is Celery's own: ``python3 -m celery -A celery_control inspect ping -d node --timeout 5``.

As the client, one measurement per invocation, printed as one JSON line on stdout:
    python3 celery_control.py ping <node> <count> <warmup>
<warmup> untimed pings, then <count> timed one at a time: time.perf_counter() around each
``app.control.ping(destination=[node], timeout=5)`` (with a destination, Celery stops gathering at the reply).
Prints {"samples_ms": [...], "answered": <pings answered, warm-up included>}, and "error" (the exception's type and
text) when a ping raised or went unanswered, which ends the measurement there. No result backend: control needs none.
"""

import json
import os
import sys
import time

from celery import Celery
from celery.signals import worker_ready

BROKER = os.environ.get('CELERY_BENCH_BROKER', 'redis://127.0.0.1:6379/15')
TIMEOUT_SEC = 5

app = Celery('celery_control', broker=BROKER)
app.conf.broker_connection_retry_on_startup = True


@worker_ready.connect
def _ready(sender=None, **_):
    # The worker redirects sys.stdout into its logger; the driver reads the real stdout.
    print(json.dumps({'level': 30, 'msg': 'worker ready: celery', 'pid': os.getpid()}), file=sys.__stdout__, flush=True)


class NoReply(Exception):
    pass


def _ping_ms(node):
    t0 = time.perf_counter()
    replies = app.control.ping(destination=[node], timeout=TIMEOUT_SEC)
    elapsed = (time.perf_counter() - t0) * 1000
    if not any(node in reply for reply in replies):
        raise NoReply(f'no reply from {node} within {TIMEOUT_SEC} s (replies: {replies!r})')
    return elapsed


def ping(node, count, warmup):
    samples = []
    answered = 0
    try:
        for i in range(warmup + count):
            elapsed = _ping_ms(node)
            answered += 1
            if i >= warmup:
                samples.append(elapsed)
    except Exception as error:  # reported to the driver, which names the pair as failed
        return {'samples_ms': samples, 'answered': answered, 'error': f'{type(error).__name__}: {error}'}
    return {'samples_ms': samples, 'answered': answered}


def main(argv):
    mode, node, count, warmup = argv
    if mode != 'ping':
        sys.exit(f'unknown mode {mode!r}; usage: celery_control.py ping <node> <count> <warmup>')
    print(json.dumps(ping(node, int(count), int(warmup))), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
