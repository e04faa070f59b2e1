// Copies the non-TypeScript files the build needs (the Redis Lua scripts, the gateway's dashboard pages) from src/ to dist/.
import { cpSync } from 'node:fs';
for (const dir of ['transports/redis', 'backends/redis', 'gateway/dashboard']) {
  cpSync(new URL(`../src/${dir}`, import.meta.url), new URL(`../dist/${dir}`, import.meta.url), { recursive: true });
}
