// Preloaded (node --import) into every process an example starts (see processes.ts): the process stops when the
// one that started it is gone, however that one ended. A parent killed with SIGKILL cannot stop its children,
// but the kernel closes the IPC channel the child was given, and 'disconnect' fires here. The channel carries
// nothing else. The process then sends itself SIGTERM: the fennel CLI's own warm shutdown, so a worker finishes
// or hands back what it holds, as when it is stopped on purpose.
// The worker's pool slots inherit this preload with its command line, but not the variable below, which is
// removed here: they have an IPC channel of their own, to the worker, and already exit when it closes.

const PARENT = 'FENNEL_EXAMPLE_PARENT_PID';
const parent = process.env[PARENT];
delete process.env[PARENT];

if (parent && process.channel) {
  // The channel is only a tripwire: it must not keep this process alive once its work is done.
  process.channel.unref();
  process.once('disconnect', () => {
    // Whoever read this process's output may be gone with the parent: a write must not fail the shutdown.
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
    process.stderr.write(`pid ${process.pid}: the process that started it (pid ${parent}) is gone; stopping (SIGTERM)\n`);
    process.kill(process.pid, 'SIGTERM');
  });
}
