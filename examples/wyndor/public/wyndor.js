// The Wyndor page: submits to the Fennel gateway (POST /api/tasks/:name) and waits for the result to be
// pushed over the gateway's WebSocket. A token, if the gateway wants one, comes from the URL: #token=…

const token = new URLSearchParams(location.hash.slice(1)).get('token');
const authHeaders = token ? { authorization: `Bearer ${token}` } : {};

/** One WebSocket for the page; each submitted task id waits here for its final state. */
const waiting = new Map();
let socket;
function openSocket() {
  if (socket && socket.readyState <= 1) return socket;
  const url = new URL('/api/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) url.searchParams.set('token', token);
  socket = new WebSocket(url);
  socket.addEventListener('open', () => {
    // After a reconnect, ask again for every task still waiting.
    if (waiting.size) socket.send(JSON.stringify({ op: 'subscribe', ids: [...waiting.keys()] }));
  });
  socket.addEventListener('message', (e) => {
    const message = JSON.parse(e.data);
    if (message.type !== 'task') return;
    const entry = waiting.get(message.task.id);
    if (!entry) return;
    entry.onState(message.task);
    if (['SUCCESS', 'FAILURE', 'REVOKED'].includes(message.task.state)) {
      waiting.delete(message.task.id);
      entry.resolve(message.task);
    }
  });
  socket.addEventListener('close', () => setTimeout(openSocket, 1000));
  return socket;
}

/** Submits a task; resolves with its final state as the gateway pushes it. Throws with the gateway's reason. */
async function run(name, args, onState) {
  const response = await fetch(`/api/tasks/${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders },
    body: JSON.stringify({ args }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status !== 202) throw new Error(`${response.status}: ${body.error ?? response.statusText}`);
  onState({ id: body.id, state: 'PENDING' });
  return new Promise((resolve) => {
    waiting.set(body.id, { resolve, onState });
    const ws = openSocket();
    const subscribe = () => ws.send(JSON.stringify({ op: 'subscribe', ids: [body.id] }));
    if (ws.readyState === WebSocket.OPEN) subscribe();
    else ws.addEventListener('open', subscribe, { once: true });
  });
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle('error', isError);
}

const fmt = (n) => (typeof n === 'number' ? String(Math.round(n * 1e6) / 1e6) : '—');

// Wyndor form
const wyndorStatus = document.getElementById('wyndor-status');
document.getElementById('wyndor-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const p = Number(document.getElementById('p').value);
  document.getElementById('wyndor-result').hidden = true;
  try {
    const task = await run('wyndor.solve', [p], (t) => setStatus(wyndorStatus, `task ${t.id.slice(0, 8)}… ${t.state.toLowerCase()}`));
    if (task.state !== 'SUCCESS') return setStatus(wyndorStatus, `${task.state}: ${task.error?.type}: ${task.error?.message}`, true);
    const solution = task.result;
    setStatus(wyndorStatus, `p = ${p}: ${solution.message} (GLPK ${solution.solveMs} ms)`);
    document.getElementById('objective').textContent = fmt(solution.objective);
    document.getElementById('doors').textContent = fmt(solution.variables.doors);
    document.getElementById('windows').textContent = fmt(solution.variables.windows);
    const rows = solution.constraints.map((c) => {
      const tr = document.createElement('tr');
      for (const text of [c.name, fmt(c.usage), fmt(c.max ?? c.min), fmt(c.slack)]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    document.querySelector('#usage tbody').replaceChildren(...rows);
    document.getElementById('wyndor-result').hidden = false;
  } catch (error) {
    setStatus(wyndorStatus, error.message, true);
  }
});

// Whole-model form
const example = {
  sense: 'max',
  objective: { doors: 300, windows: 500 },
  constraints: [
    { name: 'door_fab', coefs: { doors: 1 }, max: 4 },
    { name: 'window_fab', coefs: { windows: 2 }, max: 12 },
    { name: 'assembly', coefs: { doors: 3, windows: 2 }, max: 18 },
  ],
  bounds: { doors: { min: 0 } },
  integer: ['doors', 'windows'],
};
document.getElementById('lp').value = JSON.stringify(example, null, 2);
const lpStatus = document.getElementById('lp-status');
const lpResult = document.getElementById('lp-result');
document.getElementById('lp-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  lpResult.hidden = true;
  let model;
  try {
    model = JSON.parse(document.getElementById('lp').value);
  } catch (error) {
    return setStatus(lpStatus, `not JSON: ${error.message}`, true);
  }
  try {
    const task = await run('lp.solve', [model], (t) => setStatus(lpStatus, `task ${t.id.slice(0, 8)}… ${t.state.toLowerCase()}`));
    if (task.state !== 'SUCCESS') return setStatus(lpStatus, `${task.state}: ${task.error?.type}: ${task.error?.message}`, true);
    setStatus(lpStatus, `${task.result.status}: ${task.result.message}`, task.result.status !== 'optimal');
    lpResult.textContent = JSON.stringify(task.result, null, 2);
    lpResult.hidden = false;
  } catch (error) {
    setStatus(lpStatus, error.message, true);
  }
});

openSocket();
