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

// Each form shows the answer to its latest submission only. A submission first clears what the one before
// showed, so a refused input never leaves an older answer on screen, and an answer that arrives after a newer
// submission (a slow task) is dropped instead of being shown under the newer input.
function latestOnly() {
  let turn = 0;
  return () => {
    const mine = ++turn;
    return () => mine === turn;
  };
}

// Wyndor form
const wyndorStatus = document.getElementById('wyndor-status');
const wyndorResult = document.getElementById('wyndor-result');
const wyndorTurn = latestOnly();

function clearWyndorAnswer() {
  wyndorResult.hidden = true;
  for (const id of ['objective', 'doors', 'windows']) document.getElementById(id).textContent = '';
  document.querySelector('#usage tbody').replaceChildren();
}

/**
 * p as typed, or undefined if there is no number to send. The input's required and min attributes are the
 * browser's checks, which a script or an old browser can bypass; Number('') would be 0, a valid p, so an empty
 * field must be refused here. The range (0 to 1e9) is the task's schema's to check: the gateway answers 400.
 */
function readP() {
  const text = document.getElementById('p').value.trim();
  const p = Number(text);
  return text !== '' && Number.isFinite(p) ? p : undefined;
}

document.getElementById('wyndor-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const current = wyndorTurn();
  clearWyndorAnswer();
  const p = readP();
  if (p === undefined) return setStatus(wyndorStatus, 'p: enter the profit per window, a number of 0 or more', true);
  try {
    const task = await run('wyndor.solve', [p], (t) => current() && setStatus(wyndorStatus, `task ${t.id.slice(0, 8)}… ${t.state.toLowerCase()}`));
    if (!current()) return;
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
    wyndorResult.hidden = false;
  } catch (error) {
    if (current()) setStatus(wyndorStatus, error.message, true);
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
const lpTurn = latestOnly();
document.getElementById('lp-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const current = lpTurn();
  lpResult.hidden = true;
  lpResult.textContent = '';
  let model;
  try {
    model = JSON.parse(document.getElementById('lp').value);
  } catch (error) {
    return setStatus(lpStatus, `not JSON: ${error.message}`, true);
  }
  try {
    const task = await run('lp.solve', [model], (t) => current() && setStatus(lpStatus, `task ${t.id.slice(0, 8)}… ${t.state.toLowerCase()}`));
    if (!current()) return;
    if (task.state !== 'SUCCESS') return setStatus(lpStatus, `${task.state}: ${task.error?.type}: ${task.error?.message}`, true);
    setStatus(lpStatus, `${task.result.status}: ${task.result.message}`, task.result.status !== 'optimal');
    lpResult.textContent = JSON.stringify(task.result, null, 2);
    lpResult.hidden = false;
  } catch (error) {
    if (current()) setStatus(lpStatus, error.message, true);
  }
});

openSocket();
