// The outpost dashboard: one page over the daemon's HTTP/JSON API.
//
// Everything live arrives by Server-Sent Events, on one stream
// (/api/v1/stream): the instance table and the event feed from the status
// bus, the sync panel from the sync bus, and CPU and memory (which change
// without an event) pushed by the daemon every 5 s; the log panel follows
// the chosen instance's log stream. A hidden page closes its stream and
// costs the daemon nothing; shown again, it resumes. Nothing is polled. The page holds no secret: the session is an HttpOnly
// cookie sent with every request of this origin.
//
// Bodies are the proto3 JSON mapping as `outpostctl --json` prints it
// (docs/http-api.md): .proto field names (`restart_count`), every field
// present (defaults included), enums by full name, 64-bit integers as
// strings.
'use strict';

(() => {
  const SVG = 'http://www.w3.org/2000/svg';
  /** How far back the sparklines reach. */
  const SPARK_WINDOW_MS = 5 * 60 * 1000;
  /** The shortest time a sparkline's width stands for. */
  const SPARK_MIN_SPAN_MS = 60 * 1000;
  /** Seconds between the usage samples the daemon pushes a visible page. */
  const USAGE_EVERY_S = 5;
  /** Lines the log panel keeps; older ones are dropped. */
  const LOG_KEEP = 2000;
  /** Lines the event feed keeps. */
  const FEED_KEEP = 100;
  /** Longest wait before a stream the page reopens itself is tried again. */
  const RETRY_MAX_MS = 10000;
  const LOGIN_HINT = 'Not logged in: run "outpostctl dashboard" and open the link it prints.';
  const ACTIONS = ['start', 'stop', 'restart', 'delete'];

  /** The page's fixed elements by id, camel-cased: `no-instances` → `ui.noInstances`. */
  const ui = Object.fromEntries([
    'daemon', 'connection', 'notice', 'announce', 'instance-rows', 'no-instances',
    'logs-name', 'logs-state', 'logs-close', 'logs', 'sync', 'sync-status', 'conflicts',
    'no-conflicts', 'events', 'delete-dialog', 'delete-name', 'delete-cancel',
  ].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), document.getElementById(id)]));

  // ---- helpers -------------------------------------------------------

  /** An element with attributes (`text` sets its text) and children. */
  function h(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') node.textContent = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    node.append(...children);
    return node;
  }

  /**
   * `INSTANCE_STATE_RUNNING` → `running`: an enum's full name as a word;
   * the unset value (`…_UNSPECIFIED`, present like every default) as ''.
   */
  function word(value, prefix) {
    if (!value) return '';
    const bare = value.startsWith(prefix) ? value.slice(prefix.length) : value;
    return bare === 'UNSPECIFIED' ? '' : bare.toLowerCase().replace(/_/g, ' ');
  }

  /**
   * Milliseconds since the epoch of an RFC 3339 time, or NaN. The fraction
   * is cut to milliseconds: the daemon writes nanoseconds, which
   * Date.parse is not required to accept.
   */
  function parseTime(text) {
    if (!text) return NaN;
    return Date.parse(text.replace(/(\.\d{3})\d+/, '$1'));
  }

  /** A duration in ms as `3d 4h`, `2h 05m`, `4m 09s` or `12s`. */
  function formatDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    if (d > 0) return `${d}d ${hours}h`;
    if (hours > 0) return `${hours}h ${two(m)}m`;
    if (m > 0) return `${m}m ${two(sec)}s`;
    return `${sec}s`;
  }

  function formatBytes(bytes) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    const unit = Math.min(units.length - 1, Math.floor(Math.log2(Math.max(bytes, 1)) / 10));
    return `${(bytes / 1024 ** unit).toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  function clock(ms) {
    return Number.isNaN(ms) ? '' : new Date(ms).toLocaleTimeString();
  }

  /** An error from the API (or from reaching it) shown in the alert region. */
  function showError(text) {
    ui.notice.replaceChildren(
      h('span', { text }),
      h('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss the message', text: '×' }),
    );
  }

  /** A short confirmation for screen readers (the table shows the rest). */
  function announce(text) {
    ui.announce.textContent = text;
  }

  ui.notice.addEventListener('click', (event) => {
    if (event.target.closest('button.dismiss')) ui.notice.replaceChildren();
  });

  /**
   * One JSON request. A failure throws an Error whose message is the API's
   * own `message` (it names the field or the instance), or says why the
   * daemon could not be reached.
   */
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new Error(`cannot reach the daemon (${err.message})`);
    }
    const json = parseJson(await response.text()) ?? {};
    if (!response.ok) {
      const message = json.message || `${response.status} ${response.statusText}`;
      const error = new Error(response.status === 401 ? `${message}. ${LOGIN_HINT}` : message);
      error.status = response.status;
      throw error;
    }
    return json;
  }

  const enc = encodeURIComponent;

  /** `text` parsed, or undefined if it is not JSON (an empty body, a proxy's page). */
  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  /**
   * Whether `event`, given to an EventSource's onerror, is the server's
   * `error` event (its data the API's JSON error) rather than a lost
   * connection; if so, its message is shown.
   */
  function serverError(event, what) {
    if (typeof event.data !== 'string') return false;
    showError(`${what}: ${parseJson(event.data)?.message ?? event.data}`);
    return true;
  }

  // ---- instances -----------------------------------------------------

  /** Whether the status stream is open (the connection indicator says "live"). */
  let live = false;
  /** Where the stream resumes: `STATUS:SYNC`, the id of the last event. */
  let revision = '';

  /** name → { instance, row, cells, samples: [{ t, cpu, rss }] } */
  const rows = new Map();
  /** name → Set of actions whose request is running. */
  const pending = new Map();

  function isPending(name, action) {
    return pending.get(name)?.has(action) ?? false;
  }

  function setPending(name, action, on) {
    const set = pending.get(name) ?? new Set();
    if (on) set.add(action);
    else set.delete(action);
    if (set.size) pending.set(name, set);
    else pending.delete(name);
    const entry = rows.get(name);
    if (entry) entry.cells.buttons[action].disabled = on;
  }

  /** An empty 60×16 sparkline: an SVG with one polyline, hidden from screen readers. */
  function sparkline() {
    const svg = document.createElementNS(SVG, 'svg');
    const attributes = { class: 'spark', viewBox: '0 0 60 16', preserveAspectRatio: 'none', 'aria-hidden': 'true' };
    for (const [name, value] of Object.entries(attributes)) svg.setAttribute(name, value);
    svg.append(document.createElementNS(SVG, 'polyline'));
    return svg;
  }

  /**
   * Draws the samples' `pick` from 0 to their maximum, over the time they
   * cover (at least a minute, at most SPARK_WINDOW_MS): a young instance's
   * line spans the sparkline instead of sitting in its last pixels.
   */
  function drawSpark(svg, samples, pick) {
    const now = Date.now();
    const max = Math.max(...samples.map(pick), 1e-9);
    const covered = samples.length ? now - samples[0].t : 0;
    const span = Math.min(SPARK_WINDOW_MS, Math.max(SPARK_MIN_SPAN_MS, covered));
    const points = samples.map((sample) => {
      const x = 60 - ((now - sample.t) / span) * 60;
      const y = 15 - (pick(sample) / max) * 14;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    svg.firstChild.setAttribute('points', points.length > 1 ? points.join(' ') : '');
  }

  function createRow(name) {
    const row = h('tr', { 'data-instance': name });
    const cell = (cls) => h('td', { class: cls });
    const cells = {
      state: cell('state'),
      pid: cell('num'),
      port: cell('num'),
      uptime: cell('num uptime'),
      restarts: cell('num'),
      health: cell('health'),
      cpu: cell('usage'),
      memory: cell('usage'),
      buttons: {},
    };
    for (const kind of ['cpu', 'memory']) {
      cells[`${kind}Text`] = h('span');
      cells[`${kind}Spark`] = sparkline();
      cells[kind].append(cells[`${kind}Text`], cells[`${kind}Spark`]);
    }
    const actions = h('div', { class: 'buttons' });
    for (const action of ACTIONS) {
      const label = `${action[0].toUpperCase()}${action.slice(1)} ${name}`;
      const danger = action === 'delete' ? 'danger' : undefined;
      const button = h('button', { type: 'button', 'data-action': action, 'aria-label': label, class: danger, text: action });
      button.disabled = isPending(name, action);
      cells.buttons[action] = button;
      actions.append(button);
    }
    const nameButton = h('button', {
      type: 'button', class: 'name', 'data-action': 'logs', 'aria-label': `Follow the logs of ${name}`, title: 'Follow its logs', text: name,
    });
    row.append(
      h('th', { scope: 'row' }, [nameButton]),
      cells.state, cells.pid, cells.port, cells.uptime, cells.restarts,
      cells.health, cells.cpu, cells.memory, h('td', {}, [actions]),
    );
    // Rows stay sorted by name.
    const after = [...rows.keys()].filter((other) => other > name).sort()[0];
    ui.instanceRows.insertBefore(row, after ? rows.get(after).row : null);
    return { instance: null, row, cells, samples: [] };
  }

  /** Adds the usage sample `instance` carries, if it is new. */
  function recordSample(entry, instance) {
    const usage = instance.usage;
    if (!usage || !instance.pid) return;
    const t = parseTime(usage.sampled_at);
    if (Number.isNaN(t)) return;
    const last = entry.samples[entry.samples.length - 1];
    if (last && last.t >= t) return;
    entry.samples.push({ t, cpu: Number(usage.cpu_percent ?? 0), rss: Number(usage.rss_bytes ?? 0) });
    const oldest = Date.now() - SPARK_WINDOW_MS;
    while (entry.samples.length && entry.samples[0].t < oldest) entry.samples.shift();
  }

  function renderUsage(entry) {
    const { cells, instance, samples } = entry;
    const usage = instance.pid ? instance.usage : undefined;
    cells.cpuText.textContent = usage ? `${Number(usage.cpu_percent ?? 0).toFixed(1)} %` : '—';
    cells.memoryText.textContent = usage ? formatBytes(Number(usage.rss_bytes ?? 0)) : '—';
    drawSpark(cells.cpuSpark, samples, (s) => s.cpu);
    drawSpark(cells.memorySpark, samples, (s) => s.rss);
  }

  /** Shows `instance` in its row, making the row if it is new. */
  function upsert(instance) {
    const name = instance.name;
    let entry = rows.get(name);
    if (!entry) {
      entry = createRow(name);
      rows.set(name, entry);
    }
    entry.instance = instance;
    const { row, cells } = entry;
    const state = word(instance.state, 'INSTANCE_STATE_') || 'unknown';
    row.dataset.state = state.replace(/ /g, '-');
    row.dataset.id = instance.id ?? '';
    cells.state.textContent = state;
    cells.state.title = instance.waiting_for ? `waiting for ${instance.waiting_for}` : (instance.last_error ?? '');
    cells.pid.textContent = instance.pid ? String(instance.pid) : '—';
    if (instance.port) {
      const url = `http://${location.hostname}:${instance.port}/`;
      cells.port.replaceChildren(h('a', { href: url, text: String(instance.port), 'aria-label': `Port ${instance.port} of ${name}` }));
    } else {
      cells.port.textContent = '—';
    }
    const since = instance.pid ? parseTime(instance.started_at) : NaN;
    cells.uptime.dataset.since = Number.isNaN(since) ? '' : String(since);
    cells.restarts.textContent = String(instance.restart_count ?? 0);
    // A verdict about a process that no longer runs says nothing.
    const health = instance.pid ? word(instance.health?.state, 'HEALTH_STATE_') : '';
    cells.health.textContent = health || '—';
    cells.health.title = (instance.pid && instance.health?.last_failure) || '';
    recordSample(entry, instance);
    renderUsage(entry);
    tickUptimes();
    ui.noInstances.hidden = true;
  }

  function removeRow(name) {
    const entry = rows.get(name);
    if (!entry) return;
    entry.row.remove();
    rows.delete(name);
    ui.noInstances.hidden = rows.size > 0;
  }

  /** The one timer of the table: every uptime, from its start time. */
  function tickUptimes() {
    const now = Date.now();
    for (const { cells } of rows.values()) {
      const since = Number(cells.uptime.dataset.since || NaN);
      cells.uptime.textContent = Number.isNaN(since) ? '—' : formatDuration(now - since);
    }
  }
  setInterval(tickUptimes, 1000);

  function applySnapshot(snapshot) {
    const listed = snapshot.instances ?? [];
    const names = new Set(listed.map((instance) => instance.name));
    for (const name of [...rows.keys()]) if (!names.has(name)) removeRow(name);
    for (const instance of listed) upsert(instance);
  }

  function applyStatusEvent(event) {
    const time = parseTime(event.time);
    if (event.instance_changed) {
      const change = event.instance_changed;
      const instance = change.instance ?? {};
      upsert(instance);
      const to = word(instance.state, 'INSTANCE_STATE_');
      const from = word(change.previous_state, 'INSTANCE_STATE_');
      const reason = word(change.reason, 'TRANSITION_REASON_');
      const detail = change.detail ? `: ${change.detail}` : '';
      const move = from ? `${from} → ${to}` : to;
      feed(`${instance.name}: ${move}${reason ? ` (${reason}${detail})` : detail}`, time);
    } else if (event.instance_deleted) {
      removeRow(event.instance_deleted.name);
      feed(`${event.instance_deleted.name}: deleted`, time);
    } else if (event.workspace_applied) {
      const { workspace = {}, diff = {} } = event.workspace_applied;
      const parts = ['created', 'deleted', 'changed']
        .filter((key) => diff[key]?.length)
        .map((key) => `${key} ${diff[key].join(', ')}`);
      feed(`workspace ${workspace.name}: applied${parts.length ? ` (${parts.join('; ')})` : ''}`, time);
    } else if (event.workspace_rejected) {
      const { workspace, errors = [] } = event.workspace_rejected;
      feed(`workspace ${workspace}: rejected: ${errors.join('; ')}`, time);
    }
  }

  // Row buttons: one listener for the whole table.
  ui.instanceRows.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const name = button.closest('tr').dataset.instance;
    const action = button.dataset.action;
    if (action === 'logs') followLogs(name);
    else if (action === 'delete') askDelete(name);
    else act(name, action);
  });

  async function act(name, action) {
    if (isPending(name, action)) return;
    setPending(name, action, true);
    try {
      const path = `/api/v1/instances/${enc(name)}`;
      if (action === 'delete') await api('DELETE', path);
      else await api('POST', `${path}/${action}`);
      announce(`${name}: ${action} done`);
    } catch (err) {
      showError(`${action} ${name}: ${err.message}`);
    } finally {
      setPending(name, action, false);
    }
  }

  /** The instance the delete dialog asks about. */
  let deleting = null;

  function askDelete(name) {
    deleting = name;
    ui.deleteName.textContent = name;
    ui.deleteDialog.showModal();
    ui.deleteCancel.focus();
  }

  ui.deleteDialog.addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    const name = deleting;
    ui.deleteDialog.close();
    if (button.dataset.action === 'confirm-delete' && name) act(name, 'delete');
  });
  ui.deleteDialog.addEventListener('close', () => (deleting = null));

  // ---- usage, pushed while the page is visible -----------------------

  /**
   * Takes the usage samples of a pushed instance list: states come from
   * the event stream alone, whose revision order a list sampled in
   * between could contradict.
   */
  function applyUsage(message) {
    const list = JSON.parse(message.data);
    for (const instance of list.instances ?? []) {
      const entry = rows.get(instance.name);
      if (!entry || entry.instance.id !== instance.id) continue;
      entry.instance = { ...entry.instance, usage: instance.usage };
      recordSample(entry, entry.instance);
      renderUsage(entry);
    }
  }

  // ---- the status stream ---------------------------------------------

  function setConnection(state) {
    live = state === 'live';
    ui.connection.dataset.connection = state;
    ui.connection.textContent = { live: 'live', reconnecting: 'reconnecting…', connecting: 'connecting…' }[state];
  }

  async function showDaemon() {
    try {
      const status = await api('GET', '/api/v1/daemon/status');
      ui.daemon.textContent = `outpostd ${status.version ?? ''} · pid ${status.pid ?? '?'}`;
    } catch (err) {
      if (err.status === 401) showError(err.message);
    }
  }

  /** The open stream; none while the page is hidden. */
  let stream = null;

  /**
   * Follows the page's one stream (/api/v1/stream): the status bus, the
   * sync bus and usage, on one connection, so that several tabs leave the
   * browser connections for their requests. The browser reconnects by
   * itself and resumes with Last-Event-ID; when it gives up (an answer
   * that is not an event stream, such as a 401) the page opens a new one
   * with ?since= the last id, as it does when a hidden page is shown again.
   */
  function openStream(attempt = 0) {
    const since = revision ? `&since=${enc(revision)}` : '';
    const source = new EventSource(`/api/v1/stream?usage=${USAGE_EVERY_S}${since}`);
    stream = source;
    source.onopen = () => {
      attempt = 0;
      setConnection('live');
      showDaemon();
    };
    source.onerror = (event) => {
      if (stream !== source || serverError(event, 'events')) return;
      setConnection('reconnecting');
      if (source.readyState !== EventSource.CLOSED) return;
      const delay = Math.min(1000 * 2 ** attempt, RETRY_MAX_MS);
      showDaemon();
      setTimeout(() => {
        if (stream === source) openStream(attempt + 1);
      }, delay);
    };
    const track = (message) => (revision = message.lastEventId || revision);
    source.addEventListener('snapshot', (message) => {
      track(message);
      applySnapshot(JSON.parse(message.data));
      // When the table was first filled, for tests and benchmarks.
      if (!performance.getEntriesByName('outpost-first-snapshot').length) {
        performance.mark('outpost-first-snapshot');
      }
    });
    source.addEventListener('status', (message) => {
      track(message);
      applyStatusEvent(JSON.parse(message.data));
    });
    source.addEventListener('sync-snapshot', (message) => {
      track(message);
      renderSyncStatus(JSON.parse(message.data).status ?? {});
      refreshSync();
    });
    source.addEventListener('sync', (message) => {
      track(message);
      const event = JSON.parse(message.data);
      feed(syncLine(event), parseTime(event.time));
      refreshSync();
    });
    source.addEventListener('usage', applyUsage);
  }

  /**
   * A hidden page closes its stream and costs the daemon nothing; shown
   * again, it resumes where it was (or gets a fresh snapshot).
   */
  function followVisibility() {
    const visible = document.visibilityState === 'visible';
    if (visible && stream === null) {
      setConnection('connecting');
      openStream();
    } else if (!visible && stream !== null) {
      stream.close();
      stream = null;
    }
  }
  document.addEventListener('visibilitychange', followVisibility);

  // ---- event feed ----------------------------------------------------

  function feed(text, time) {
    const at = Number.isNaN(time) ? Date.now() : time;
    const item = h('li', {}, [
      h('time', { datetime: new Date(at).toISOString(), text: clock(at) }),
      ' ',
      text,
    ]);
    ui.events.prepend(item);
    while (ui.events.children.length > FEED_KEEP) ui.events.lastElementChild.remove();
  }

  // ---- log panel -----------------------------------------------------

  const logs = { name: null, source: null, attempt: 0, timer: null };

  function stopLogs() {
    delete ui.logs.dataset.stream;
    logs.source?.close();
    logs.source = null;
    clearTimeout(logs.timer);
    logs.timer = null;
  }

  function followLogs(name) {
    stopLogs();
    logs.name = name;
    logs.attempt = 0;
    ui.logsName.textContent = `— ${name}`;
    ui.logsClose.hidden = false;
    ui.logsClose.setAttribute('aria-label', `Stop following the logs of ${name}`);
    openLogs();
    ui.logs.focus();
  }

  /**
   * A fresh stream of the last 200 lines and what follows: after an
   * interruption the panel is filled again from the tail, so that no line
   * shows twice.
   */
  function openLogs() {
    const name = logs.name;
    ui.logs.replaceChildren();
    ui.logsState.textContent = `Following ${name}.`;
    const source = new EventSource(`/api/v1/instances/${enc(name)}/logs?follow=true&tail=200`);
    logs.source = source;
    source.onopen = () => (ui.logs.dataset.stream = 'open');
    source.addEventListener('lines', (message) => {
      logs.attempt = 0;
      appendLines(JSON.parse(message.data).lines ?? []);
    });
    source.onerror = (event) => {
      if (logs.source !== source || serverError(event, `logs of ${name}`)) return;
      stopLogs();
      logsInterrupted(name);
    };
  }

  async function logsInterrupted(name) {
    try {
      await api('GET', `/api/v1/instances/${enc(name)}`);
    } catch (err) {
      if (logs.name !== name) return;
      if (err.status === 404) {
        ui.logsState.textContent = `${name} no longer exists.`;
        return;
      }
    }
    if (logs.name !== name) return;
    const delay = Math.min(1000 * 2 ** logs.attempt, RETRY_MAX_MS);
    logs.attempt += 1;
    ui.logsState.textContent = `The log stream of ${name} was interrupted; reconnecting…`;
    logs.timer = setTimeout(openLogs, delay);
  }

  function appendLines(lines) {
    const box = ui.logs;
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    for (const line of lines) {
      const stream = line.stream === 'LOG_STREAM_STDERR' ? 'stderr' : 'stdout';
      const last = box.lastElementChild;
      // A long line comes in pieces: the next piece continues it.
      if (last && last.dataset.partial === stream) {
        last.textContent += line.text ?? '';
      } else {
        box.append(h('div', { class: `log-line ${stream}`, text: line.text ?? '' }));
      }
      box.lastElementChild.dataset.partial = line.partial ? stream : '';
    }
    while (box.children.length > LOG_KEEP) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  ui.logsClose.addEventListener('click', () => {
    stopLogs();
    logs.name = null;
    ui.logsName.textContent = '';
    ui.logsClose.hidden = true;
    ui.logsState.textContent = 'Choose an instance by its name to follow its output.';
    ui.logs.replaceChildren();
  });

  // ---- sync panel ----------------------------------------------------

  /** What a ContentKey names, or '' when it names nothing. */
  function keyText(key) {
    if (key?.template) return `template ${key.template.set}/${key.template.title}`;
    if (key?.stylesheet) return `stylesheet ${key.stylesheet.theme}/${key.stylesheet.name}`;
    return '';
  }

  function renderSyncStatus(status) {
    const counters = status.counters ?? {};
    const facts = [
      ['watcher', word(status.state, 'WATCHER_STATE_') || 'unknown'],
      ['store', status.backend?.kind ?? ''],
      ['root', status.root ?? ''],
      ['synced', counters.synced ?? '0'],
      ['conflicts seen', counters.conflicts ?? '0'],
      ['rejected', counters.rejected ?? '0'],
      ['skipped empty', counters.skipped_empty ?? '0'],
      ['open conflicts', String(status.open_conflicts ?? 0)],
      ['waiting', String(status.dirty_count ?? 0)],
      ['failing', String(status.failing_count ?? 0)],
    ];
    if (status.last_error) facts.push(['last error', status.last_error]);
    if (status.backend?.error) facts.push(['store error', status.backend.error]);
    ui.syncStatus.replaceChildren(
      ...facts.flatMap(([term, value]) => [
        h('dt', { text: term }),
        h('dd', { 'data-fact': term.replace(/ /g, '-'), text: value }),
      ]),
    );
    ui.sync.dataset.watcher = word(status.state, 'WATCHER_STATE_');
  }

  function conflictItem(conflict) {
    const what = keyText(conflict.key) || conflict.path;
    const compareId = `compare-${conflict.id}`;
    const button = (action, text, label, extra = {}) =>
      h('button', { type: 'button', 'data-action': action, 'aria-label': `${label} ${what}`, text, ...extra });
    return h('li', { 'data-conflict': conflict.id }, [
      h('p', {}, [h('strong', { text: what }), ' ', h('code', { text: conflict.path ?? '' })]),
      h('div', { class: 'buttons' }, [
        button('compare', 'compare', 'Compare both sides of', { 'aria-expanded': 'false', 'aria-controls': compareId }),
        button('keep-disk', 'keep disk', 'Keep the disk version of'),
        button('keep-database', 'keep database', 'Keep the database version of'),
      ]),
      h('div', { class: 'compare', id: compareId, hidden: true }),
    ]);
  }

  function renderConflicts(conflicts) {
    const ids = new Set(conflicts.map((conflict) => conflict.id));
    for (const item of [...ui.conflicts.children]) {
      if (!ids.has(item.dataset.conflict)) item.remove();
    }
    const shown = new Set([...ui.conflicts.children].map((item) => item.dataset.conflict));
    for (const conflict of conflicts) {
      if (!shown.has(conflict.id)) ui.conflicts.append(conflictItem(conflict));
    }
    ui.noConflicts.hidden = conflicts.length > 0;
  }

  /** Refreshes of the sync panel, one at a time; events meanwhile ask for one more. */
  const syncRefresh = { running: false, again: false };

  async function refreshSync() {
    if (syncRefresh.running) {
      syncRefresh.again = true;
      return;
    }
    syncRefresh.running = true;
    try {
      do {
        syncRefresh.again = false;
        const [status, list] = await Promise.all([
          api('GET', '/api/v1/sync/status'),
          api('GET', '/api/v1/sync/conflicts'),
        ]);
        renderSyncStatus(status);
        renderConflicts(list.conflicts ?? []);
      } while (syncRefresh.again);
    } catch (err) {
      if (err.status !== undefined) showError(`sync: ${err.message}`);
    } finally {
      syncRefresh.running = false;
    }
  }

  async function compare(item, button) {
    const panel = item.querySelector('.compare');
    if (button.getAttribute('aria-expanded') === 'true') {
      button.setAttribute('aria-expanded', 'false');
      panel.hidden = true;
      return;
    }
    button.disabled = true;
    try {
      const answer = await api('GET', `/api/v1/sync/conflicts/${enc(item.dataset.conflict)}`);
      const version = answer.conflict?.database_version;
      const side = (cls, title, text) =>
        h('figure', { class: cls }, [h('figcaption', { text: title }), h('pre', { tabindex: 0, text: text ?? '' })]);
      panel.replaceChildren(
        side('disk', 'On disk (the conflict copy)', answer.disk_content),
        side('database', `In the database${version ? ` (version ${version})` : ''}`, answer.database_content),
      );
      panel.hidden = false;
      button.setAttribute('aria-expanded', 'true');
    } catch (err) {
      showError(`compare: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async function resolve(item, button, resolution) {
    const buttons = item.querySelectorAll('button[data-action^="keep-"]');
    for (const b of buttons) b.disabled = true;
    try {
      await api('POST', `/api/v1/sync/conflicts/${enc(item.dataset.conflict)}/resolve`, { resolution });
      announce(`${button.getAttribute('aria-label')}: resolved`);
      refreshSync();
    } catch (err) {
      showError(`resolve: ${err.message}`);
      for (const b of buttons) b.disabled = false;
    }
  }

  async function syncCommand(button, command) {
    button.disabled = true;
    try {
      await api('POST', `/api/v1/sync/${command}`);
      announce(`sync ${command}: done`);
      refreshSync();
    } catch (err) {
      showError(`sync ${command}: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  ui.sync.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const action = button.dataset.action;
    const item = button.closest('li[data-conflict]');
    if (action === 'compare') compare(item, button);
    else if (action === 'keep-disk') resolve(item, button, 'RESOLUTION_KEEP_DISK');
    else if (action === 'keep-database') resolve(item, button, 'RESOLUTION_KEEP_DATABASE');
    else if (action.startsWith('sync-')) syncCommand(button, action.slice('sync-'.length));
  });

  function syncLine(event) {
    const kind = word(event.kind, 'SYNC_EVENT_KIND_');
    const about = keyText(event.key) || event.path;
    return `sync: ${kind}${about ? ` ${about}` : ''}${event.message ? `: ${event.message}` : ''}`;
  }

  // ---- start ---------------------------------------------------------

  ui.noInstances.hidden = false;
  ui.noConflicts.hidden = false;
  followVisibility();
})();
