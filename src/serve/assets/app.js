// sg2im studio: edits a scene graph, asks /api/generate for its image after each edit
// (debounced), draws the predicted layout over the image and lets boxes be pinned by hand.
'use strict';

const $ = (id) => document.getElementById(id);
const COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6',
  '#9a6324', '#469990', '#800000', '#808000', '#000075', '#e6a000', '#5a5a5a'];
const DEBOUNCE_MS = 250;
const MIN_BOX = 0.02;

const state = {
  vocab: null,
  // {id, name, pinned: [x0,y0,x1,y1] | null, pred: box | null, mask: M×M | null}
  objects: [],
  // {s, p, o}: indices into objects, predicate name
  rels: [],
  seed: 0,
  // "masks" of a loaded file: sent while the objects are those of the file.
  fileMasks: null,
  nextId: 1,
  lastBody: null,
  lastPng: null,
  timer: null,
  scheduled: false,
  inFlight: false,
  pending: false,
  followUps: 0,
};

// Read by tests (tests/serve_browser.rs) and handy in the console.
window.sg2im = { lastRequest: null, requests: 0, responses: 0, state };

function colorOf(i) { return COLORS[i % COLORS.length]; }

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function status(text) { $('status').textContent = text; }

function newObject(name, pinned = null) {
  return { id: state.nextId++, name, pinned, pred: null, mask: null };
}

// ---- requests -------------------------------------------------------------------------------

function requestBody() {
  const body = {
    objects: state.objects.map((o) => o.name),
    relationships: state.rels.map((r) => [r.s, r.p, r.o]),
  };
  // `sg2im run` takes boxes for all objects or none: pinned boxes plus the latest predicted
  // boxes of the others (predictions do not depend on the boxes sent, so a follow-up request
  // fixes any that were stale).
  if (state.objects.some((o) => o.pinned)) {
    body.boxes = state.objects.map((o) => o.pinned || properBox(o.pred) || [0.25, 0.25, 0.75, 0.75]);
  }
  if (state.fileMasks && state.fileMasks.length === state.objects.length) body.masks = state.fileMasks;
  body.seed = state.seed;
  return body;
}

// The box net's output is unconstrained; `run` refuses a box with x1 <= x0 or y1 <= y0.
function properBox(b) {
  if (!b) return null;
  if (b[2] > b[0] && b[3] > b[1]) return b;
  const [x0, x1] = [Math.min(b[0], b[2]), Math.max(b[0], b[2])];
  const [y0, y1] = [Math.min(b[1], b[3]), Math.max(b[1], b[3])];
  return [x0, y0, Math.max(x1, x0 + MIN_BOX), Math.max(y1, y0 + MIN_BOX)];
}

function schedule(delay = DEBOUNCE_MS) {
  state.followUps = 0;
  scheduleRaw(delay);
}

function scheduleRaw(delay) {
  clearTimeout(state.timer);
  state.scheduled = true;
  state.timer = setTimeout(generate, delay);
}

function clearErrors() {
  for (const e of document.querySelectorAll('.error')) e.textContent = '';
  for (const e of document.querySelectorAll('.invalid')) e.classList.remove('invalid');
}

// Puts a server message next to the field it names ("object 2", "relationship 0", "box 1").
function showError(message) {
  clearErrors();
  let m = /relationship (\d+)/.exec(message);
  if (m && $(`rel-err-${m[1]}`)) {
    $(`rel-err-${m[1]}`).textContent = message;
    const role = /: (subject|predicate|object)/.exec(message.slice(m.index));
    const field = $(`rel-${role ? role[1] : 'predicate'}-${m[1]}`);
    if (field) field.classList.add('invalid');
    return;
  }
  m = /(?:object|box|mask) (\d+)/.exec(message);
  if (m && $(`obj-err-${m[1]}`)) {
    $(`obj-err-${m[1]}`).textContent = message;
    $(`obj-name-${m[1]}`).classList.add('invalid');
    return;
  }
  $('general-error').textContent = message;
}

async function generate() {
  state.scheduled = false;
  if (!state.vocab) return;
  if (state.objects.length === 0) {
    clearErrors();
    $('general-error').textContent = 'Add an object to generate an image.';
    return;
  }
  if (state.inFlight) { state.pending = true; return; }
  state.inFlight = true;
  state.pending = false;
  const body = requestBody();
  const ids = state.objects.map((o) => o.id);
  window.sg2im.lastRequest = body;
  window.sg2im.requests += 1;
  status('generating…');
  const t0 = performance.now();
  let retryAfter = 0;
  try {
    const res = await fetch('/api/generate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    let answer = null;
    try { answer = await res.json(); } catch (_) { answer = { error: `HTTP ${res.status}` }; }
    if (res.ok) {
      accept(answer, body, ids);
      status(`${answer.width}×${answer.height}, seed ${answer.seed}, ${Math.round(performance.now() - t0)} ms`);
    } else if (res.status === 503) {
      retryAfter = 1000 * (parseInt(res.headers.get('Retry-After') || '1', 10) || 1);
      status('server busy, retrying…');
    } else {
      showError(answer.error || `HTTP ${res.status}`);
      status('error');
    }
  } catch (e) {
    $('general-error').textContent = `cannot reach the server: ${e.message}`;
    status('offline');
  } finally {
    state.inFlight = false;
    window.sg2im.responses += 1;
  }
  if (retryAfter) scheduleRaw(retryAfter);
  else if (state.pending) scheduleRaw(0);
}

function accept(answer, body, ids) {
  clearErrors();
  state.lastBody = body;
  state.lastPng = answer.image_png;
  $('image').src = `data:image/png;base64,${answer.image_png}`;
  let stale = false;
  ids.forEach((id, i) => {
    const o = state.objects.find((x) => x.id === id);
    if (!o) return;
    o.pred = answer.boxes[i];
    o.mask = answer.masks ? answer.masks[i] : null;
    if (body.boxes && !o.pinned && !sameBox(body.boxes[i], properBox(o.pred))) stale = true;
  });
  renderBoxes();
  updateRunCommand();
  // The image used an out-of-date guess for an unpinned box: ask again, once, with the prediction.
  if (stale && state.followUps < 1) {
    state.followUps += 1;
    scheduleRaw(0);
  }
}

function sameBox(a, b) { return a && b && a.every((v, k) => v === b[k]); }

// ---- editor ---------------------------------------------------------------------------------

function renderObjects() {
  const list = $('objects');
  list.replaceChildren();
  state.objects.forEach((o, i) => {
    const input = el('input', { id: `obj-name-${i}`, list: 'object-names', value: o.name, autocomplete: 'off', 'aria-label': `object ${i}` });
    input.addEventListener('input', () => { o.name = input.value.trim(); renderRelationships(); renderGraph(); renderBoxes(); schedule(); });
    const row = el('li', { id: `obj-${i}` }, [
      el('span', { class: 'idx', text: String(i) }),
      el('span', { class: 'swatch', style: `background:${colorOf(i)}` }),
      input,
    ]);
    if (o.pinned) {
      row.append(el('button', { type: 'button', class: 'icon pin', id: `unpin-${i}`, title: 'unpin: use the predicted box', text: 'unpin', onclick: () => { o.pinned = null; render(); schedule(0); } }));
    }
    row.append(el('button', { type: 'button', class: 'icon', id: `remove-obj-${i}`, title: 'remove object', text: '×', onclick: () => removeObject(i) }));
    row.append(el('div', { class: 'error', id: `obj-err-${i}` }));
    list.append(row);
  });
}

function removeObject(i) {
  state.objects.splice(i, 1);
  state.fileMasks = null;
  state.rels = state.rels
    .filter((r) => r.s !== i && r.o !== i)
    .map((r) => ({ s: r.s > i ? r.s - 1 : r.s, p: r.p, o: r.o > i ? r.o - 1 : r.o }));
  render();
  schedule();
}

function objectSelect(id, value) {
  const s = el('select', { id });
  state.objects.forEach((o, i) => s.append(el('option', { value: String(i), text: `${i}: ${o.name}` })));
  // An index from a loaded file that does not exist: keep it, the server names the problem.
  if (!(value >= 0 && value < state.objects.length)) s.append(el('option', { value: String(value), text: `${value}: ?` }));
  s.value = String(value);
  return s;
}

function renderRelationships() {
  const list = $('relationships');
  list.replaceChildren();
  state.rels.forEach((r, k) => {
    const subj = objectSelect(`rel-subject-${k}`, r.s);
    subj.addEventListener('change', () => { r.s = parseInt(subj.value, 10); renderGraph(); schedule(); });
    const pred = el('select', { id: `rel-predicate-${k}` });
    const names = state.vocab.predicates.includes(r.p) ? state.vocab.predicates : [r.p, ...state.vocab.predicates];
    for (const p of names) pred.append(el('option', { value: p, text: p }));
    pred.value = r.p;
    pred.addEventListener('change', () => { r.p = pred.value; renderGraph(); schedule(); });
    const obj = objectSelect(`rel-object-${k}`, r.o);
    obj.addEventListener('change', () => { r.o = parseInt(obj.value, 10); renderGraph(); schedule(); });
    list.append(el('li', { id: `rel-${k}` }, [
      el('span', { class: 'idx', text: String(k) }), subj, pred, obj,
      el('button', { type: 'button', class: 'icon', id: `remove-rel-${k}`, title: 'remove relationship', text: '×', onclick: () => { state.rels.splice(k, 1); render(); schedule(); } }),
      el('div', { class: 'error', id: `rel-err-${k}` }),
    ]));
  });
}

function addObject(name) {
  name = name.trim();
  if (!name) { $('new-object-error').textContent = 'type an object name first'; return; }
  if (state.vocab && state.objects.length >= state.vocab.max_objects) {
    $('new-object-error').textContent = `this server accepts at most ${state.vocab.max_objects} objects`;
    return;
  }
  state.objects.push(newObject(name));
  state.fileMasks = null;
  $('new-object').value = '';
  $('new-object-error').textContent = '';
  render();
  schedule();
}

function addRelationship() {
  const n = state.objects.length;
  if (n === 0) { $('relationship-error').textContent = 'add an object first'; return; }
  const preds = state.vocab.predicates;
  const p = preds.includes('above') ? 'above' : preds[0];
  state.rels.push({ s: Math.max(0, n - 1), p, o: n > 1 ? 0 : n - 1 });
  $('relationship-error').textContent = '';
  render();
  schedule();
}

// ---- layout overlay -------------------------------------------------------------------------

function renderBoxes() {
  const overlay = $('overlay');
  overlay.replaceChildren();
  state.objects.forEach((o, i) => {
    const b = o.pinned || properBox(o.pred);
    if (!b) return;
    const box = el('div', { class: `box${o.pinned ? ' pinned' : ''}`, id: `box-${i}` });
    box.style.borderColor = colorOf(i);
    placeBox(box, b);
    if (b[1] < 0.06) box.classList.add('label-inside');
    const label = el('span', { class: 'label', text: `${i}: ${o.name}${o.pinned ? ' (pinned)' : ''}` });
    label.style.background = colorOf(i);
    box.append(label);
    if (o.mask && !o.pinned) box.append(maskCanvas(o.mask, colorOf(i)));
    const handle = el('div', { class: 'handle' });
    handle.style.borderColor = colorOf(i);
    box.append(handle);
    box.addEventListener('pointerdown', (ev) => startDrag(ev, i, box, ev.target === handle ? 'resize' : 'move'));
    overlay.append(box);
  });
}

function placeBox(div, b) {
  div.style.left = `${100 * b[0]}%`;
  div.style.top = `${100 * b[1]}%`;
  div.style.width = `${100 * (b[2] - b[0])}%`;
  div.style.height = `${100 * (b[3] - b[1])}%`;
}

function maskCanvas(mask, color) {
  const m = mask.length;
  const c = el('canvas', { width: String(m), height: String(m) });
  const ctx = c.getContext('2d');
  ctx.fillStyle = color;
  for (let y = 0; y < m; y++) {
    for (let x = 0; x < m; x++) {
      ctx.globalAlpha = Math.max(0, Math.min(1, mask[y][x]));
      ctx.fillRect(x, y, 1, 1);
    }
  }
  return c;
}

function startDrag(ev, i, div, mode) {
  if (ev.button !== 0) return;
  ev.preventDefault();
  const o = state.objects[i];
  const start = (o.pinned || properBox(o.pred)).slice();
  const rect = $('stage').getBoundingClientRect();
  const x0 = ev.clientX;
  const y0 = ev.clientY;
  let box = start;
  let moved = false;
  div.setPointerCapture(ev.pointerId);
  div.classList.add('dragging');
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const onMove = (e) => {
    const dx = (e.clientX - x0) / rect.width;
    const dy = (e.clientY - y0) / rect.height;
    if (Math.abs(e.clientX - x0) + Math.abs(e.clientY - y0) > 2) moved = true;
    if (mode === 'move') {
      const w = start[2] - start[0];
      const h = start[3] - start[1];
      const nx = clamp(start[0] + dx, 0, 1 - w);
      const ny = clamp(start[1] + dy, 0, 1 - h);
      box = [nx, ny, nx + w, ny + h];
    } else {
      box = [start[0], start[1], clamp(start[2] + dx, start[0] + MIN_BOX, 1), clamp(start[3] + dy, start[1] + MIN_BOX, 1)];
    }
    placeBox(div, box);
  };
  const onUp = () => {
    div.removeEventListener('pointermove', onMove);
    div.removeEventListener('pointerup', onUp);
    div.removeEventListener('pointercancel', onUp);
    div.classList.remove('dragging');
    if (!moved) return;
    // Rounded so the downloaded JSON stays readable; the request carries exactly these values.
    o.pinned = box.map((v) => Math.round(v * 1e4) / 1e4);
    render();
    schedule(0);
  };
  div.addEventListener('pointermove', onMove);
  div.addEventListener('pointerup', onUp);
  div.addEventListener('pointercancel', onUp);
}

// ---- scene graph drawing --------------------------------------------------------------------

function svg(tag, attrs = {}, text = null) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

function textWidth(s, px) { return s.length * px * 0.6 + 12; }

// Objects on a circle, each predicate as a node halfway along its edge (the original's drawing
// has the same two kinds of nodes), parallel edges fanned out.
function renderGraph() {
  const g = $('graph');
  g.replaceChildren();
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#98a2b3' }));
  defs.append(marker);
  g.append(defs);
  const n = state.objects.length;
  const cx = 180; const cy = 180; const radius = n > 1 ? 125 : 0;
  const pos = state.objects.map((_, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
    return [cx + radius * Math.cos(a), cy + radius * Math.sin(a)];
  });
  const seen = new Map();
  const preds = [];
  state.rels.forEach((r) => {
    if (!pos[r.s] || !pos[r.o]) return;
    const key = [Math.min(r.s, r.o), Math.max(r.s, r.o)].join('-');
    const k = seen.get(key) || 0;
    seen.set(key, k + 1);
    const [x1, y1] = pos[r.s];
    const [x2, y2] = pos[r.o];
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const off = (k % 2 ? 1 : -1) * Math.ceil(k / 2) * 22;
    let mx = (x1 + x2) / 2 + (-(y2 - y1) / len) * off;
    let my = (y1 + y2) / 2 + ((x2 - x1) / len) * off;
    if (r.s === r.o) { mx += 40; my -= 30 + k * 22; }
    g.append(svg('line', { x1, y1, x2: mx, y2: my }));
    g.append(svg('line', { x1: mx, y1: my, x2: x2 + (mx - x2) * 0.18, y2: y2 + (my - y2) * 0.18, 'marker-end': 'url(#arrow)' }));
    preds.push([mx, my, r.p]);
  });
  for (const [mx, my, p] of preds) {
    const w = textWidth(p, 11);
    const node = svg('g', { class: 'pred' });
    node.append(svg('rect', { x: mx - w / 2, y: my - 9, width: w, height: 18, rx: 9 }));
    node.append(svg('text', { x: mx, y: my + 4, 'text-anchor': 'middle' }, p));
    g.append(node);
  }
  state.objects.forEach((o, i) => {
    const [x, y] = pos[i];
    const label = o.name || '?';
    const w = textWidth(label, 12);
    const node = svg('g', { class: 'obj' });
    node.append(svg('rect', { x: x - w / 2, y: y - 11, width: w, height: 22, rx: 4, fill: colorOf(i), stroke: colorOf(i) }));
    node.append(svg('text', { x, y: y + 4, 'text-anchor': 'middle' }, label));
    g.append(node);
  });
}

function render() {
  renderObjects();
  renderRelationships();
  renderGraph();
  renderBoxes();
}

// ---- files ----------------------------------------------------------------------------------

function loadGraph(g, name, which) {
  if (!g || typeof g !== 'object' || !Array.isArray(g.objects)) {
    throw new Error('expected a scene graph: an object with "objects" (a list of names) and "relationships"');
  }
  const boxes = Array.isArray(g.boxes) && g.boxes.length === g.objects.length ? g.boxes : null;
  state.objects = g.objects.map((o, i) => newObject(String(o), boxes ? boxes[i] : null));
  state.rels = (Array.isArray(g.relationships) ? g.relationships : []).map((r) => {
    if (!Array.isArray(r) || r.length !== 3) throw new Error(`relationship ${JSON.stringify(r)}: expected [subject, "predicate", object]`);
    return { s: Number(r[0]), p: String(r[1]), o: Number(r[2]) };
  });
  state.fileMasks = Array.isArray(g.masks) ? g.masks : null;
  if (Number.isInteger(g.seed) && g.seed >= 0) { state.seed = g.seed; $('seed').value = String(g.seed); }
  $('file-message').textContent = `Loaded ${which} from ${name}${boxes ? ' (its boxes are pinned)' : ''}${state.fileMasks ? ' (with its masks)' : ''}.`;
  render();
  schedule(0);
}

async function onLoadFile() {
  const file = $('load-json').files[0];
  if (!file) return;
  $('file-error').textContent = '';
  $('file-message').textContent = '';
  try {
    let data;
    try { data = JSON.parse(await file.text()); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
    if (Array.isArray(data)) {
      if (data.length === 0) throw new Error('the file lists no scene graphs');
      loadGraph(data[0], file.name, data.length > 1 ? `scene graph 1 of ${data.length} (the first)` : 'its scene graph');
    } else {
      loadGraph(data, file.name, 'its scene graph');
    }
  } catch (e) {
    $('file-error').textContent = `${file.name}: ${e.message}`;
  }
  $('load-json').value = '';
}

function download(href, filename) {
  const a = el('a', { href, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
}

function updateRunCommand() {
  const seed = state.lastBody ? state.lastBody.seed : state.seed;
  $('run-command').textContent = `sg2im run --checkpoint MODEL --scene_graphs_json scene_graph.json --seed ${seed}`;
}

function downloadJson() {
  if (!state.lastBody) { $('file-error').textContent = 'nothing generated yet'; return; }
  // A list of one graph, as `sg2im run` reads; exactly the body that produced the image shown
  // ("seed" is ignored by `run`: pass it as --seed).
  const text = `${JSON.stringify([state.lastBody], null, 1)}\n`;
  download(URL.createObjectURL(new Blob([text], { type: 'application/json' })), 'scene_graph.json');
}

function downloadPng() {
  if (!state.lastPng) { $('file-error').textContent = 'nothing generated yet'; return; }
  download(`data:image/png;base64,${state.lastPng}`, `sg2im_seed${state.lastBody.seed}.png`);
}

// ---- start ----------------------------------------------------------------------------------

async function start() {
  $('add-object-form').addEventListener('submit', (e) => { e.preventDefault(); addObject($('new-object').value); });
  $('add-relationship').addEventListener('click', addRelationship);
  $('seed').addEventListener('change', () => {
    const v = parseInt($('seed').value, 10);
    state.seed = Number.isInteger(v) && v >= 0 ? v : 0;
    $('seed').value = String(state.seed);
    schedule(0);
  });
  $('new-sample').addEventListener('click', () => {
    state.seed = Math.floor(Math.random() * 2147483647);
    $('seed').value = String(state.seed);
    schedule(0);
  });
  $('load-json').addEventListener('change', onLoadFile);
  $('download-json').addEventListener('click', downloadJson);
  $('download-png').addEventListener('click', downloadPng);
  try {
    const res = await fetch('/api/vocab');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state.vocab = await res.json();
  } catch (e) {
    $('general-error').textContent = `cannot load the model's vocabulary: ${e.message}`;
    return;
  }
  const v = state.vocab;
  const names = $('object-names');
  for (const o of [...v.objects].sort()) names.append(el('option', { value: o }));
  const [h, w] = v.image_size;
  $('stage').style.aspectRatio = `${w} / ${h}`;
  $('model-info').textContent = `${w}×${h} model · ${v.objects.length} objects · ${v.predicates.length} predicates${v.has_masks ? ' · masks' : ''}`;
  // A first graph from the paper's figure 6, with whatever of it the vocabulary has.
  const start = ['sky', 'grass', 'sheep'].filter((o) => v.objects.includes(o));
  if (start.length === 3) {
    state.objects = start.map((o) => newObject(o));
    if (v.predicates.includes('above')) state.rels.push({ s: 0, p: 'above', o: 1 });
    if (v.predicates.includes('standing on')) state.rels.push({ s: 2, p: 'standing on', o: 1 });
  } else if (v.objects.length > 0) {
    state.objects = [newObject(v.objects[0])];
  }
  updateRunCommand();
  render();
  schedule(0);
}

start();
