// The Fennel dashboard: a live view of the cluster from the gateway's WebSocket feed ({"op":"subscribe","all":true}):
// a snapshot first, then task changes in batches and workers/queues/throughput every second. Plain DOM, no build
// step. Every value from the cluster is shown with textContent (task arguments are user input: never HTML).
// The schedules (app.schedule) are not in events: they are read from GET /api/schedules every few seconds, the
// actors and their hosts from GET /api/actors (names and metadata are user input too: text only), and the tasks
// each worker runs from POST /api/control/active. The Cache panel shows the feed's cache rows (the gateway's own
// caches and each online worker's, as /metrics counts them; URLs are user input: text only). A token, if the
// gateway wants one, comes from the URL: /dashboard/#token=…; with one, the page also controls the workers
// (shutdown, pool size, revoke), which the gateway allows only when it has a token itself.

const token = new URLSearchParams(location.hash.slice(1)).get('token');
const MAX_ROWS = 300;

const SCHEDULES_POLL_MS = 5000;
/** Actor hosts announce themselves (and their calls) every 3 s: reading more often would show nothing new. */
const ACTORS_POLL_MS = 3000;
const ACTIVE_POLL_MS = 2000;
/** How long the gateway gathers replies to a control request; addressed workers usually answer at once. */
const CONTROL_TIMEOUT_MS = 5000;
/** Control buttons only with a token: a gateway without one refuses the commands that change workers. */
const controls = Boolean(token);

const state = { workers: [], queues: [], throughput: [], cache: [], tasks: new Map(), selected: null, schedules: null, actors: null, active: null };

const authHeaders = () => (token ? { authorization: `Bearer ${token}` } : {});

const $ = (id) => document.getElementById(id);

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  if (className) td.className = className;
  return td;
}

function badge(text, stateName = text) {
  const span = document.createElement('span');
  span.className = 'badge';
  span.dataset.state = stateName;
  span.textContent = text;
  return span;
}

const short = (value, max = 80) => {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/**
 * A cell of control buttons, kept from one render to the next (rows are rebuilt every second): a button replaced
 * between a press and its release would lose the click.
 */
const controlCells = new Map();
function controlCell(key, make) {
  let td = controlCells.get(key);
  if (!td) {
    td = document.createElement('td');
    td.className = 'control';
    td.append(...make());
    controlCells.set(key, td);
  }
  return td;
}
/** Forgets the cells of rows no longer shown. */
function pruneControlCells(prefix, shown) {
  for (const key of controlCells.keys()) if (key.startsWith(prefix) && !shown.has(key)) controlCells.delete(key);
}

function button(text, action, onClick, className) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.action = action;
  if (className) b.className = className;
  b.addEventListener('click', onClick);
  return b;
}

function workerButtons(node) {
  return [
    button('shutdown', 'shutdown', () => shutdownWorker(node), 'danger'),
    button('+1 slot', 'pool-grow', () => controlWorker(node, 'pool-grow', { n: 1 }, '+1 slot')),
    button('−1 slot', 'pool-shrink', () => controlWorker(node, 'pool-shrink', { n: 1 }, '−1 slot')),
  ];
}

function renderWorkers() {
  const shown = new Set();
  const rows = state.workers
    .slice()
    .sort((a, b) => Number(b.online) - Number(a.online) || a.id.localeCompare(b.id))
    .map((w) => {
      const tr = document.createElement('tr');
      tr.dataset.worker = w.id;
      tr.dataset.node = w.hostname;
      tr.dataset.pid = String(w.pid);
      tr.dataset.status = w.online ? 'online' : 'offline';
      tr.append(cell(w.hostname), cell(w.pid), cell(w.pool), cell(w.concurrency), cell(w.active), cell(w.processed), cell(w.loadavg.join(' / ')), cell(ago(w.lastSeen)));
      const status = document.createElement('td');
      status.append(badge(w.online ? 'online' : 'offline'));
      tr.append(status);
      if (controls) {
        // An offline worker listens to nothing: it gets no buttons.
        const key = `worker:${w.id}`;
        if (w.online) shown.add(key);
        tr.append(w.online ? controlCell(key, () => workerButtons(w.hostname)) : cell('', 'control'));
      }
      return tr;
    });
  if (controls) pruneControlCells('worker:', shown);
  $('workers').tBodies[0].replaceChildren(...rows);
  $('workers-count').textContent = `${state.workers.filter((w) => w.online).length} online`;
}

/** The status line under the workers: what the last control request got, `outcome` ok, error, no-reply or pending. */
function setControlStatus(text, outcome) {
  const line = $('control-status');
  line.hidden = false;
  line.textContent = text;
  line.dataset.outcome = outcome;
}

/** One line for a control answer ({replies, missing, ok}): each node's result, then who did not answer. */
function describeControl(label, answer) {
  const parts = Object.entries(answer.replies).map(([node, result]) => {
    if (result && typeof result === 'object' && 'error' in result) return `${node}: error: ${result.error}`;
    return `${node}: ${result && typeof result === 'object' && typeof result.ok === 'string' ? result.ok : 'ok'}`;
  });
  for (const node of answer.missing) parts.push(`no reply from ${node}`);
  if (parts.length === 0) parts.push('no reply');
  return `${label}: ${parts.join('; ')}`;
}

/** POST /api/control/<command>: the answer ({replies, missing, ok}); a refusal (401, 400, …) throws its reason. */
async function sendControl(command, body) {
  const response = await fetch(`/api/control/${command}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body: JSON.stringify({ timeoutMs: CONTROL_TIMEOUT_MS, ...body }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${answer.error ?? response.statusText}`);
  return answer;
}

/** Runs a command on one worker and says on the status line how it went: `<label>: <node>: <its answer>`. */
async function controlWorker(node, command, args, label) {
  setControlStatus(`${label}: …`, 'pending');
  try {
    const answer = await sendControl(command, { arguments: args, destination: [node] });
    const noReply = answer.missing.length > 0 || Object.keys(answer.replies).length === 0;
    setControlStatus(describeControl(label, answer), answer.ok ? 'ok' : noReply ? 'no-reply' : 'error');
  } catch (error) {
    setControlStatus(`${label}: ${error.message}`, 'error');
  }
  void refreshActive();
}

function shutdownWorker(node) {
  if (!window.confirm(`Shut down ${node}? It stops taking tasks, finishes the ones it runs, and exits.`)) return;
  void controlWorker(node, 'shutdown', {}, 'shutdown');
}

function renderActive() {
  const active = state.active;
  if (!active) return;
  const reason = $('active-reason');
  reason.hidden = !active.error && !active.note;
  reason.textContent = active.error ? `could not ask the workers: ${active.error}` : (active.note ?? '');
  reason.classList.toggle('error', Boolean(active.error));
  const shown = new Set();
  const rows = active.tasks.map(({ node, task }) => {
    const tr = document.createElement('tr');
    tr.dataset.task = task.id;
    tr.dataset.node = node;
    const started = cell(task.time_start ? ago(task.time_start * 1000) : '');
    if (task.time_start) started.title = new Date(task.time_start * 1000).toISOString();
    tr.append(cell(node), cell(task.name), cell(short(task.args), 'wrap'), started, cell(task.id.slice(0, 8)));
    if (controls) {
      const key = `task:${node}|${task.id}`;
      shown.add(key);
      tr.append(controlCell(key, () => [button('revoke', 'revoke', () => controlWorker(node, 'revoke', { task_id: task.id, terminate: true }, `revoke ${task.id}`), 'danger')]));
    }
    return tr;
  });
  if (controls) pruneControlCells('task:', shown);
  $('active').tBodies[0].replaceChildren(...rows);
  $('active-count').textContent = active.error ? '' : `${rows.length} on ${active.asked} ${active.asked === 1 ? 'worker' : 'workers'}`;
}

let activeTimer;
let activeBusy = false;
/** Asks the online workers what they run (POST /api/control/active), then again in ACTIVE_POLL_MS while visible. */
async function refreshActive() {
  if (activeBusy) return;
  activeBusy = true;
  clearTimeout(activeTimer);
  const nodes = [...new Set(state.workers.filter((w) => w.online).map((w) => w.hostname))];
  try {
    if (nodes.length === 0) state.active = { tasks: [], asked: 0, note: 'no worker online' };
    else {
      const answer = await sendControl('active', { destination: nodes });
      const tasks = Object.entries(answer.replies).flatMap(([node, list]) => (Array.isArray(list) ? list.map((task) => ({ node, task })) : []));
      const note = answer.missing.length ? `no reply from ${answer.missing.join(', ')}` : undefined;
      state.active = { tasks, asked: nodes.length, ...(note ? { note } : {}) };
    }
  } catch (error) {
    state.active = { ...(state.active ?? { tasks: [], asked: 0 }), error: error.message };
  } finally {
    activeBusy = false;
    renderActive();
    activeTimer = setTimeout(() => {
      if (!document.hidden) void refreshActive();
    }, ACTIVE_POLL_MS);
  }
}

/** "in 4 s", "12 min ago", "in 5 h": a time relative to now, rounded to one unit. */
function relative(ms) {
  const diff = ms - Date.now();
  const s = Math.round(Math.abs(diff) / 1000);
  const amount = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : s < 48 * 3600 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return diff >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** A fire time: relative, then the local clock time (with the date when it is not today); the ISO time on hover. */
function fireCell(iso, dueLabel) {
  if (!iso) return cell('never', 'muted');
  const date = new Date(iso);
  const ms = date.getTime();
  const today = date.toDateString() === new Date().toDateString();
  const clock = today ? date.toLocaleTimeString() : date.toLocaleString();
  const td = cell(dueLabel && ms <= Date.now() ? `due now · ${clock}` : `${relative(ms)} · ${clock}`);
  td.title = iso;
  return td;
}

function renderSchedules() {
  const status = state.schedules;
  const section = $('schedules-section');
  if (!status) return;
  // An app without schedules has nothing to show here (no beat can lead for it either).
  const shown = status.schedules.length > 0 || status.leader !== null || Boolean(status.reason) || Boolean(status.error);
  section.hidden = !shown;
  section.dataset.loaded = 'true';
  if (!shown) return;
  const leader = $('schedules-leader');
  leader.dataset.leader = status.leader ? status.leader.beat : '';
  leader.textContent = status.leader ? `led by ${status.leader.beat}` : 'no beat running';
  leader.title = status.leader ? `its lease runs until ${status.leader.leaseUntil} unless renewed` : 'no beat holds the lease: nothing fires until one starts';
  const reason = $('schedules-reason');
  reason.hidden = !(status.reason || status.error);
  reason.textContent = status.error ? `could not read the schedules: ${status.error}` : (status.reason ?? '');
  reason.classList.toggle('error', Boolean(status.error));
  const rows = status.schedules.map((s) => {
    const tr = document.createElement('tr');
    tr.dataset.schedule = s.name;
    tr.dataset.lastDue = s.lastDue ?? '';
    const last = fireCell(s.lastDue, false);
    if (s.lastDue) last.title = `due ${s.lastDue}, sent ${s.lastSentAt} by ${s.lastBeat} as task ${s.lastTaskId}`;
    tr.append(cell(s.name), cell(s.when), cell(s.task), cell(s.catchUp), last, fireCell(s.next, true));
    return tr;
  });
  // The reason (an rpc:// backend) says why the list is empty; a table saying so too would add nothing.
  $('schedules').hidden = rows.length === 0 && Boolean(status.reason);
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('no schedules', 'muted');
    td.colSpan = 6;
    tr.append(td);
    rows.push(tr);
  }
  $('schedules').tBodies[0].replaceChildren(...rows);
}

let schedulesTimer;
let schedulesBusy = false;
/** Reads GET /api/schedules, then again in SCHEDULES_POLL_MS while the page is visible. */
async function refreshSchedules() {
  if (schedulesBusy) return;
  schedulesBusy = true;
  clearTimeout(schedulesTimer);
  try {
    const response = await fetch('/api/schedules', { headers: authHeaders() });
    const body = await response.json();
    if (response.ok) state.schedules = body;
    else state.schedules = { ...(state.schedules ?? { leader: null, schedules: [] }), error: `${response.status}: ${body.error ?? response.statusText}` };
  } catch (error) {
    state.schedules = { ...(state.schedules ?? { leader: null, schedules: [] }), error: error.message };
  } finally {
    schedulesBusy = false;
    renderSchedules();
    schedulesTimer = setTimeout(() => {
      if (!document.hidden) void refreshSchedules();
    }, SCHEDULES_POLL_MS);
  }
}

/** An actor's state as `fennel names list` words it: dead, or whether a live host runs it now. */
const actorState = (a) => (a.state === 'dead' ? 'dead' : a.available ? 'available' : 'unavailable');

function renderActors() {
  const view = state.actors;
  const section = $('actors-section');
  if (!view) return;
  // A cluster without actors (and a gateway whose app declares none) has nothing to show here.
  const shown = view.actors.length > 0 || view.hosts.length > 0 || Boolean(view.reason) || Boolean(view.error);
  section.hidden = !shown;
  section.dataset.loaded = 'true';
  if (!shown) return;
  const reason = $('actors-reason');
  reason.hidden = !(view.reason || view.error);
  reason.textContent = view.error ? `could not read the actors: ${view.error}` : (view.reason ?? '');
  reason.classList.toggle('error', Boolean(view.error));
  const live = new Set(view.hosts.map((h) => h.node));
  const rows = view.actors.map((a) => {
    const tr = document.createElement('tr');
    tr.dataset.actor = a.name;
    tr.dataset.id = a.id;
    tr.dataset.state = actorState(a);
    const name = cell(a.name);
    if (a.name !== a.id) name.title = `id ${a.id}`;
    const stateCell = document.createElement('td');
    stateCell.append(badge(actorState(a)));
    const calls = cell(a.calls ?? '–', a.calls === null ? 'muted' : undefined);
    if (a.calls === null) calls.title = live.has(a.host) ? `${a.host} does not count this actor's calls` : `${a.host} is not a live actor host: the calls run there are not known`;
    const meta = Object.entries(a.meta ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');
    tr.append(name, cell(a.className), cell(a.mode), cell(a.host), stateCell, cell(a.restarts), calls, cell(meta, 'wrap'));
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('no actors', 'muted');
    td.colSpan = 8;
    tr.append(td);
    rows.push(tr);
  }
  $('actors').hidden = view.actors.length === 0 && Boolean(view.reason);
  $('actors').tBodies[0].replaceChildren(...rows);
  $('actors-count').textContent = view.error || view.reason ? '' : `${view.actors.filter((a) => a.available).length} of ${view.actors.length} available`;

  const hostRows = view.hosts.map((h) => {
    const tr = document.createElement('tr');
    tr.dataset.host = h.node;
    const heard = cell(ago(h.at));
    heard.title = new Date(h.at).toISOString();
    tr.append(cell(h.node), cell(h.classes.join(', '), 'wrap'), cell(h.actors), cell(h.calls), heard);
    return tr;
  });
  if (hostRows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('no live actor host (start a worker with --actors)', 'muted');
    td.colSpan = 5;
    tr.append(td);
    hostRows.push(tr);
  }
  // The reason (an rpc:// backend) says why both lists are empty; tables saying so too would add nothing.
  $('actor-hosts').hidden = view.hosts.length === 0 && Boolean(view.reason);
  $('actor-hosts-heading').hidden = $('actor-hosts').hidden;
  $('actor-hosts').tBodies[0].replaceChildren(...hostRows);
  $('actor-hosts-count').textContent = `${view.hosts.length} live`;
}

let actorsTimer;
let actorsBusy = false;
/** Reads GET /api/actors, then again in ACTORS_POLL_MS while the page is visible. */
async function refreshActors() {
  if (actorsBusy) return;
  actorsBusy = true;
  clearTimeout(actorsTimer);
  try {
    const response = await fetch('/api/actors', { headers: authHeaders() });
    const body = await response.json();
    if (response.ok) state.actors = body;
    else state.actors = { ...(state.actors ?? { actors: [], hosts: [] }), error: `${response.status}: ${body.error ?? response.statusText}` };
  } catch (error) {
    state.actors = { ...(state.actors ?? { actors: [], hosts: [] }), error: error.message };
  } finally {
    actorsBusy = false;
    renderActors();
    actorsTimer = setTimeout(() => {
      if (!document.hidden) void refreshActors();
    }, ACTORS_POLL_MS);
  }
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) {
    void refreshSchedules();
    void refreshActors();
    void refreshActive();
  }
});

/** Hits over lookups (errors are misses too): '–' before the first lookup. */
function hitRatio(row) {
  const lookups = row.hits + row.misses;
  return lookups > 0 ? `${((row.hits / lookups) * 100).toFixed(1)} %` : '–';
}

function renderCache() {
  const rows = state.cache.map((c) => {
    const tr = document.createElement('tr');
    tr.dataset.source = c.source;
    tr.dataset.engine = c.engine;
    const url = cell(c.url, 'wrap');
    url.title = c.url;
    const errors = cell(c.errors, 'num');
    if (c.refused > 0) errors.title = `and ${c.refused} values refused (too large, or not encodable)`;
    const mean = cell(c.operations > 0 ? `${c.meanMs.toFixed(c.meanMs < 1 ? 3 : 1)} ms` : '–', 'num');
    mean.title = `${c.operations} operations timed`;
    tr.append(cell(c.source), cell(c.engine), url, cell(c.hits, 'num'), cell(c.misses, 'num'), errors, cell(hitRatio(c), 'num'), mean);
    return tr;
  });
  // Nothing caches in this cluster (no memoized task, no open cache): nothing to show.
  $('cache-section').hidden = rows.length === 0;
  $('cache').tBodies[0].replaceChildren(...rows);
  $('cache-count').textContent = `${new Set(state.cache.map((c) => c.source)).size} reporting`;
}

function renderQueues() {
  const rows = state.queues.map((q) => {
    const tr = document.createElement('tr');
    tr.dataset.queue = q.queue;
    tr.append(cell(q.queue), cell(q.depth), cell(q.rateIn), cell(q.rateOut));
    return tr;
  });
  $('queues').tBodies[0].replaceChildren(...rows);
}

function renderThroughput() {
  const canvas = $('throughput');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const points = state.throughput;
  const peak = Math.max(1, ...points.map((p) => p.succeeded + p.failed));
  const barWidth = width / Math.max(points.length, 1);
  points.forEach((p, i) => {
    const ok = (p.succeeded / peak) * (height - 14);
    const bad = (p.failed / peak) * (height - 14);
    ctx.fillStyle = '#2e7d32';
    ctx.fillRect(i * barWidth, height - ok, barWidth - 1, ok);
    ctx.fillStyle = '#c62828';
    ctx.fillRect(i * barWidth, height - ok - bad, barWidth - 1, bad);
  });
  ctx.fillStyle = '#666';
  ctx.font = '11px system-ui';
  ctx.fillText(`peak ${peak}/s`, 4, 11);
  const last = points.at(-2);
  $('throughput-now').textContent = last ? `· last second: ${last.succeeded + last.failed}` : '';
}

function matches(task) {
  const text = $('filter').value.trim().toLowerCase();
  const wanted = $('state-filter').value;
  if (wanted && task.state !== wanted) return false;
  if (!text) return true;
  return [task.name, task.id, task.worker, task.state].some((v) => v && String(v).toLowerCase().includes(text));
}

let tasksDirty = false;
function renderTasks() {
  tasksDirty = false;
  const all = [...state.tasks.values()].reverse();
  const shown = all.filter(matches).slice(0, MAX_ROWS);
  const rows = shown.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.task = t.id;
    tr.dataset.state = t.state;
    const stateCell = document.createElement('td');
    stateCell.append(badge(t.state));
    const outcome = t.state === 'FAILURE' ? t.exception : t.result;
    tr.append(cell(t.name), stateCell, cell(short(t.args), 'wrap'), cell(short(outcome), 'wrap'), cell(t.runtime !== undefined ? `${(t.runtime * 1000).toFixed(1)} ms` : ''), cell(t.worker), cell(t.id.slice(0, 8)));
    tr.addEventListener('click', () => showDetail(t.id));
    return tr;
  });
  $('tasks').tBodies[0].replaceChildren(...rows);
  $('tasks-count').textContent = `${shown.length} of ${all.length}`;
  if (state.selected) renderDetailEvents();
}

function scheduleTasks() {
  if (!tasksDirty) {
    tasksDirty = true;
    requestAnimationFrame(renderTasks);
  }
}

function renderDetailEvents() {
  const task = state.tasks.get(state.selected);
  $('detail-events').textContent = task ? JSON.stringify(task, null, 2) : '(no events seen for this task)';
}

async function showDetail(id) {
  state.selected = id;
  $('detail').hidden = false;
  $('detail-id').textContent = id;
  renderDetailEvents();
  $('detail-stored').textContent = '…';
  try {
    const response = await fetch(`/api/tasks/${encodeURIComponent(id)}`, { headers: authHeaders() });
    const body = await response.json();
    if (state.selected === id) $('detail-stored').textContent = JSON.stringify(body, null, 2);
  } catch (error) {
    $('detail-stored').textContent = `could not read: ${error.message}`;
  }
}
$('detail-close').addEventListener('click', () => {
  state.selected = null;
  $('detail').hidden = true;
});
$('filter').addEventListener('input', scheduleTasks);
$('state-filter').addEventListener('change', scheduleTasks);

function setConnection(text) {
  const el = $('connection');
  el.textContent = text;
  el.dataset.state = text;
}

function onMessage(message) {
  switch (message.type) {
    case 'snapshot':
      state.tasks = new Map(message.tasks.map((t) => [t.id, t]));
      scheduleTasks();
    // falls through: a snapshot carries the stats too
    case 'stats':
      state.workers = message.workers;
      state.queues = message.queues;
      state.throughput = message.throughput;
      state.cache = Array.isArray(message.cache) ? message.cache : [];
      renderWorkers();
      renderCache();
      renderQueues();
      renderThroughput();
      // The workers are known now: ask them what they run without waiting for the next poll.
      if (message.type === 'snapshot') void refreshActive();
      break;
    case 'tasks':
      for (const t of message.tasks) {
        state.tasks.delete(t.id); // re-insert: newest last
        state.tasks.set(t.id, t);
      }
      while (state.tasks.size > 2000) state.tasks.delete(state.tasks.keys().next().value);
      scheduleTasks();
      break;
    default:
      break;
  }
}

function connect() {
  const url = new URL('/api/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) url.searchParams.set('token', token);
  const socket = new WebSocket(url);
  socket.addEventListener('open', () => {
    setConnection('connected');
    socket.send(JSON.stringify({ op: 'subscribe', all: true }));
  });
  socket.addEventListener('message', (e) => onMessage(JSON.parse(e.data)));
  socket.addEventListener('close', () => {
    setConnection('disconnected');
    setTimeout(connect, 1000);
  });
}

for (const th of document.querySelectorAll('th.control')) th.hidden = !controls;
$('control-hint').hidden = controls;

// "last heartbeat … ago", the schedules' "in … s" and the actor hosts' "… ago" move on between updates.
setInterval(() => {
  renderWorkers();
  renderSchedules();
  renderActors();
}, 1000);
connect();
void refreshSchedules();
void refreshActors();
// The running tasks are first read once the feed's snapshot has said which workers are online (onMessage).
