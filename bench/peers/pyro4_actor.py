"""Pyro4's side of the actor benchmark (bench/actors.bench.ts): the same Counter as bench/actors-tasks.ts, served by
one Pyro4 daemon, and a client making the same calls.

As the daemon (run by the driver, cwd bench/peers):
    /usr/bin/python3 pyro4_actor.py serve <port> <thread|multiplex>
serves one Counter under the object id ``bench.counter`` on 127.0.0.1:<port> (no name server: the client is given
the URI). ``thread`` is Pyro4's default server (a thread pool, one thread per client connection for the
connection's life); its pool is raised from 40 threads to THREADPOOL_SIZE so that the 100 connections of the
in-flight measurement are all served (with 40, the 41st connection is refused: "no free workers"). ``multiplex``
serves every connection from one thread with select(). Everything else is Pyro4's default: the serpent serializer,
oneway calls run each in a thread of their own (ONEWAY_THREADED). It prints one JSON "worker ready" line on stdout.

As the client:
    /usr/bin/python3 pyro4_actor.py client <uri> <round_trips> <warmup> <inflight_calls> <concurrency> <oneway_calls>
prints one JSON line: {"rtt_ms": [...], "inflight_sec": s, "oneway_sec": s, "oneway_polls": n}. Clocks are
time.perf_counter(); every measurement is preceded by <warmup> untimed calls of the same kind. See the driver's
docstring for what each clock includes.
"""

import itertools
import json
import os
import sys
import threading
import time

import Pyro4

OBJECT_ID = 'bench.counter'
THREADPOOL_SIZE = 200


@Pyro4.expose
@Pyro4.behavior(instance_mode='single')  # one instance for every proxy, as a Fennel `single` actor (Pyro4's default is 'session')
class Counter(object):
    def __init__(self):
        self.n = 0
        # One call at a time, as a Fennel actor with maxConcurrency 1: the threaded server (and oneway calls, each in a
        # thread of its own) would otherwise run calls of one instance at once.
        self.lock = threading.Lock()

    def incr(self, k):
        with self.lock:
            self.n += k
            return self.n

    @Pyro4.oneway
    def incr_oneway(self, k):
        with self.lock:
            self.n += k

    def get(self):
        with self.lock:
            return self.n

    def echo(self, x):
        with self.lock:
            return x


def serve(port, servertype):
    Pyro4.config.SERVERTYPE = servertype
    Pyro4.config.THREADPOOL_SIZE = THREADPOOL_SIZE
    daemon = Pyro4.Daemon(host='127.0.0.1', port=int(port))
    uri = daemon.register(Counter, OBJECT_ID)
    print(json.dumps({'level': 30, 'msg': f'worker ready: {uri}', 'pid': os.getpid(), 'servertype': servertype}), flush=True)
    daemon.requestLoop()


def round_trips(proxy, count, warmup):
    for i in range(warmup):
        proxy.echo(i)
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        value = proxy.echo(i)
        samples.append((time.perf_counter() - t0) * 1000)
        if value != i:
            raise RuntimeError(f'echo({i}) returned {value!r}')
    return samples


def in_flight(uri, calls, concurrency):
    """`calls` incr(1), from `concurrency` threads with a proxy (a connection) each, each thread calling one after
    another: `concurrency` calls in flight until the last ones. Connections are made before the clock starts."""
    ticket = itertools.count()  # next() is atomic under the GIL
    start = threading.Barrier(concurrency + 1)
    errors = []

    def lane():
        try:
            with Pyro4.Proxy(uri) as proxy:
                proxy._pyroBind()
                start.wait()
                while next(ticket) < calls:
                    proxy.incr(1)
        except Exception as error:  # reported below
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=lane) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def oneway(proxy, calls):
    """`calls` oneway incr(1), then get() until it returns them all applied. Returns (seconds, get() calls)."""
    base = proxy.get()
    t0 = time.perf_counter()
    for _ in range(calls):
        proxy.incr_oneway(1)
    polls = 0
    while True:
        polls += 1
        if proxy.get() == base + calls:
            break
    return time.perf_counter() - t0, polls


def client(uri, count, warmup, inflight_calls, concurrency, oneway_calls):
    count, warmup, inflight_calls, concurrency, oneway_calls = map(int, (count, warmup, inflight_calls, concurrency, oneway_calls))
    with Pyro4.Proxy(uri) as proxy:
        rtt = round_trips(proxy, count, warmup)
        in_flight(uri, warmup, concurrency)
        before = proxy.get()
        inflight_sec = in_flight(uri, inflight_calls, concurrency)
        if proxy.get() != before + inflight_calls:
            raise RuntimeError(f'after {inflight_calls} incr(1) the count is {proxy.get() - before}')
        oneway(proxy, warmup)
        oneway_sec, polls = oneway(proxy, oneway_calls)
    print(json.dumps({'rtt_ms': rtt, 'inflight_sec': inflight_sec, 'oneway_sec': oneway_sec, 'oneway_polls': polls, 'pyro4': Pyro4.__version__}), flush=True)


def main(argv):
    if argv[:1] == ['serve'] and len(argv) == 3:
        serve(argv[1], argv[2])
    elif argv[:1] == ['client'] and len(argv) == 7:
        client(*argv[1:])
    else:
        sys.exit('usage: pyro4_actor.py serve <port> <thread|multiplex> | client <uri> <round_trips> <warmup> <inflight_calls> <concurrency> <oneway_calls>')


if __name__ == '__main__':
    main(sys.argv[1:])
