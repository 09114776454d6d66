// The nkcluster dashboard: renders /api/cluster and follows /api/events (server-sent
// events). Every text from the cluster goes into the DOM through textContent.
'use strict';

const REFRESH_MS = 3000;
const FEED_MAX = 200;
let refreshTimer = null;
let refreshSoon = null;
let memberColors = new Map();

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

// Class names only from a known alphabet (statuses are snake_case words).
function token(s) {
  return String(s).toLowerCase().replace(/[^a-z0-9_]/g, '');
}

function fmtRtt(us) {
  if (us === null || us === undefined) return '–';
  return us < 1000 ? us + ' µs' : (us / 1000).toFixed(1) + ' ms';
}

function fmtBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return v.toFixed(i === 0 ? 0 : 1) + ' ' + units[i];
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + m + 'm' : m + 'm';
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString();
}

function colorOf(member) {
  if (!memberColors.has(member)) {
    const hue = (memberColors.size * 137) % 360;
    memberColors.set(member, 'hsl(' + hue + ', 55%, 55%)');
  }
  return memberColors.get(member);
}

function setState(text, ok) {
  const s = document.getElementById('state');
  s.textContent = text;
  s.className = 'state ' + (ok ? 'ok' : 'bad');
}

function renderMembers(view) {
  const body = document.querySelector('#members tbody');
  const rows = view.members.map((m) => {
    const tr = el('tr');
    tr.dataset.member = m.id;
    const name = el('td');
    const swatch = el('span', null, 'swatch');
    swatch.style.background = colorOf(m.id);
    name.append(swatch, el('span', m.id));
    tr.append(name, el('td', m.partitions + ' / ' + view.partitions), el('td', m.workers));
    return tr;
  });
  body.replaceChildren(...rows);
  const ring = document.getElementById('ring');
  const cells = view.members.filter((m) => m.partitions > 0).map((m) => {
    const cell = el('span', null, 'share');
    cell.style.flexGrow = String(m.partitions);
    cell.style.background = colorOf(m.id);
    cell.title = m.id + ': ' + m.partitions + ' of ' + view.partitions + ' partitions';
    return cell;
  });
  ring.replaceChildren(...cells);
  const inc = document.getElementById('incomplete');
  inc.hidden = view.incomplete.length === 0;
  inc.textContent = view.incomplete.length
    ? 'No answer from ' + view.incomplete.join(', ') + ': the nodes they serve may be missing.'
    : '';
}

function renderNodes(view) {
  const body = document.querySelector('#nodes tbody');
  const rows = view.nodes.map((n) => {
    const tr = el('tr');
    tr.dataset.node = n.id;
    const f = n.figures;
    const status = el('td', n.status, 'status status-' + token(n.status));
    if (n.last_seen_ms) status.title = 'last seen ' + fmtTime(n.last_seen_ms);
    tr.append(
      el('td', n.id, 'id'),
      el('td', n.role),
      status,
      el('td', n.owner),
      el('td', n.transport),
      el('td', fmtRtt(n.rtt_us), 'num'),
      el('td', f ? (f.cpu_permille / 10).toFixed(1) + ' %' : '–', 'num'),
      el('td', f ? (f.load_1m_milli / 1000).toFixed(2) : '–', 'num'),
      el('td', f ? fmtBytes(f.mem_used_bytes) + ' / ' + fmtBytes(f.mem_total_bytes) : '–', 'num'),
      el('td', f ? fmtUptime(f.uptime_s) : '–', 'num'),
    );
    return tr;
  });
  body.replaceChildren(...rows);
}

function render(view) {
  document.getElementById('served-by').textContent = 'as ' + view.node + ' sees it';
  document.title = 'nkcluster: ' + view.node;
  const workers = view.nodes.filter((n) => n.role === 'worker').length;
  const ready = view.nodes.filter((n) => n.status === 'ready').length;
  document.getElementById('summary').textContent =
    view.members.length + ' members, ' + workers + ' workers, ' + ready + ' of ' +
    view.nodes.length + ' nodes ready';
  renderMembers(view);
  renderNodes(view);
}

async function refresh() {
  try {
    const r = await fetch('/api/cluster', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    setState('cannot load the cluster view: ' + e.message, false);
  }
}

function refreshLater(ms) {
  if (refreshSoon === null) {
    refreshSoon = setTimeout(() => { refreshSoon = null; refresh(); }, ms);
  }
}

function addFeed(entry) {
  const feed = document.getElementById('feed');
  const li = el('li', null, 'feed-' + token(entry.kind));
  li.dataset.seq = String(entry.seq);
  li.append(el('time', fmtTime(entry.at_ms)), el('span', entry.text));
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

function follow() {
  const source = new EventSource('/api/events');
  source.onopen = () => {
    // The server sends the kept entries again on every (re)connection.
    document.getElementById('feed').replaceChildren();
    setState('live', true);
    refresh();
  };
  source.addEventListener('feed', (e) => {
    try {
      addFeed(JSON.parse(e.data));
    } catch (err) {
      return;
    }
    refreshLater(200);
  });
  source.addEventListener('lagged', () => refreshLater(0));
  source.onerror = () => setState('reconnecting to the live feed…', false);
}

document.addEventListener('DOMContentLoaded', () => {
  refresh();
  follow();
  refreshTimer = setInterval(refresh, REFRESH_MS);
});
