"""Python Celery's side of the beat benchmark (bench/beat.bench.ts): one schedule, every second, of a no-op task.

Run by the driver (cwd bench/peers):
    CELERY_BENCH_URL=redis://127.0.0.1:6379/15 BENCH_BEAT_QUEUE=q /usr/bin/python3 -m celery -A celery_beat beat -s <file> -l INFO
Celery beat logs "Scheduler: Sending due task bench.tick (bench.noop)" for each fire, with a millisecond timestamp;
the driver reads those lines. Nothing consumes the queue.
"""

import os
from datetime import timedelta

from celery import Celery

URL = os.environ.get('CELERY_BENCH_URL', 'redis://127.0.0.1:6379/15')

app = Celery('celery_beat', broker=URL, backend=URL)
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_schedule = {
    'bench.tick': {'task': 'bench.noop', 'schedule': timedelta(seconds=1), 'options': {'queue': os.environ.get('BENCH_BEAT_QUEUE', 'bench-beat')}},
}
