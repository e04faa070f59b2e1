// Static files for the dashboard and an application's own pages (`--site dir`): read asynchronously, served
// only from inside their folder, with a fixed table of content types. No build step and no template engine:
// the pages are plain HTML, JS and CSS.

import { readFile, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** The file under `root` that `urlPath` names, or undefined if it would leave `root` or has no known type. */
export function resolveInside(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return undefined;
  const base = resolve(root);
  const full = resolve(join(base, decoded === '' || decoded.endsWith('/') ? `${decoded}index.html` : decoded));
  if (full !== base && !full.startsWith(base + sep)) return undefined;
  return TYPES[extname(full)] ? full : undefined;
}

async function sendFile(reply: FastifyReply, file: string | undefined): Promise<FastifyReply> {
  if (file) {
    try {
      if ((await stat(file)).isFile()) {
        // no-cache: pages change with the gateway version; they are small.
        return reply.type(TYPES[extname(file)]!).header('cache-control', 'no-cache').send(await readFile(file));
      }
    } catch {
      // not there: 404 below
    }
  }
  return reply.code(404).send({ error: 'not found', code: 'NOT_FOUND' });
}

/** Serves the files of `root` under the URL `prefix` (which ends with '/'); `prefix` without the slash redirects. */
export function serveFolder(server: FastifyInstance, prefix: string, root: string): void {
  const bare = prefix.replace(/\/$/, '');
  if (bare !== '') server.get(bare, (_request, reply) => reply.redirect(prefix));
  server.get<{ Params: { '*': string } }>(`${prefix}*`, (request, reply) => sendFile(reply, resolveInside(root, request.params['*'])));
}
