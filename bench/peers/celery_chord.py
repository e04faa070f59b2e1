"""Python Celery's side of the chord comparison (bench/canvas.bench.ts): the Celery app, and the producer.

As the app, run by the worker process bench/canvas.bench.ts spawns (cwd bench/peers):
    CELERY_BENCH_URL=redis://127.0.0.1:6379/15 /usr/bin/python3 -m celery -A celery_chord worker -P threads -c 8
It prints one JSON "worker ready" line on stdout (the worker_ready signal) so the driver knows when to start.

As the producer, one measurement per invocation, printed as one JSON line on stdout:
    python3 celery_chord.py chord <members> <runs>
        chord(noop.s() × members, count.s()).apply_async().get(), timed from the call to the callback's
        result, after one untimed warm-up chord; prints each run's milliseconds.
The app is celery_bench.py's (imported, so `-A celery_chord` finds it with this module's callback task).
Everything else is Celery 5's defaults: JSON, a Redis broker and the Redis result backend on the same database,
whose chord support joins the header in Redis (an atomic counter per group, no chord_unlock polling task).
"""

import json
import sys
import time

from celery import chord

# The app (Redis broker and results from CELERY_BENCH_URL), its no-op task and the "worker ready" line are
# celery_bench.py's; this module adds the chord's callback.
from celery_bench import app, noop

TIMEOUT_SEC = 120


@app.task(name='bench.count')
def count(results):
    return len(results)


def one_chord(members):
    t0 = time.perf_counter()
    got = chord(noop.s() for _ in range(members))(count.s()).get(timeout=TIMEOUT_SEC)
    ms = (time.perf_counter() - t0) * 1000
    if got != members:
        sys.exit(f'the chord callback saw {got} results, not {members}')
    return ms


def main(argv):
    mode, members, runs = argv[0], int(argv[1]), int(argv[2])
    if mode != 'chord':
        sys.exit(f'unknown mode {mode!r}')
    one_chord(members)  # warm-up: connections, the worker's first tasks
    print(json.dumps({'ms': [one_chord(members) for _ in range(runs)]}), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
