// distzero view: a run drawn as a space-time diagram on one <canvas>.
// Time runs left to right, one lane per node. Only what is in the visible
// time window is drawn (messages are sorted by send time and culled by a
// binary search), so a run of 100,000 messages stays interactive.
(function () {
  'use strict';
  const errors = [];
  window.addEventListener('error', (e) => errors.push(String(e.message)));
  const consoleError = console.error.bind(console);
  console.error = (...a) => { errors.push(a.map(String).join(' ')); consoleError(...a); };

  const tStart = performance.now();
  const D = JSON.parse(document.getElementById('data').textContent);
  const tParsed = performance.now();

  // ---- the model, as typed arrays ----
  const M = D.m;
  const N = M.id.length;
  const t0 = Float64Array.from(M.t0), t1 = Float64Array.from(M.t1);
  const from = Uint32Array.from(M.from), to = Uint32Array.from(M.to);
  const st = Uint8Array.from(M.st), ty = Uint32Array.from(M.ty), reason = Uint32Array.from(M.reason);
  const DELIVERED = 0, DROPPED = 1, IN_FLIGHT = 2;
  const AT_SENDER = new Set(['loss', 'cut', 'queue-full']);
  const lanes = D.lanes, L = lanes.length;
  const tmax = Math.max(D.tmax, 1e-6);
  // Messages with an end, by send time; their longest flight bounds the cull.
  let maxDur = 0;
  const flying = [];
  for (let i = 0; i < N; i++) {
    if (st[i] === IN_FLIGHT) flying.push(i);
    else maxDur = Math.max(maxDur, t1[i] - t0[i]);
  }
  const ops = D.ops, faults = D.faults, marks = D.marks;
  const PALETTE = ['#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22',
    '#7f7f7f', '#ff7f0e', '#393b79', '#637939', '#8c6d31', '#843c39', '#7b4173'];
  const typeColor = D.types.map((_, i) => PALETTE[i % PALETTE.length]);
  const typeOn = D.types.map(() => true);
  const tPrepared = performance.now();

  // ---- page text ----
  document.getElementById('title').textContent = D.meta.title;
  const nDrop = M.st.reduce((a, s) => a + (s === DROPPED ? 1 : 0), 0);
  document.getElementById('summary').textContent =
    `${N} messages (${nDrop} dropped, ${flying.length} never arrived), ${faults.length} fault spans, ` +
    `${ops.length} operations, ${L} lanes, ${D.meta.lines} log lines, ${tmax.toFixed(6)} s` +
    (D.meta.exact ? ' · merged by seq (exact)' : ' · merged by time, machine, seq') + ` · ${D.meta.dir}`;
  if (D.failure) {
    const f = document.getElementById('failure');
    f.hidden = false;
    f.textContent = D.failure;
  }
  const legend = document.getElementById('legend');
  D.types.forEach((name, i) => {
    const l = document.createElement('label');
    const c = document.createElement('input');
    c.type = 'checkbox'; c.checked = true;
    c.addEventListener('change', () => { typeOn[i] = c.checked; redraw(); });
    const sw = document.createElement('span');
    sw.className = 'sw'; sw.style.background = typeColor[i];
    l.append(c, sw, name);
    legend.append(l);
  });
  const key = document.createElement('span');
  key.textContent = '✕ dropped (red, where it died) · dashed: never arrived · shaded: crash (grey), pause (blue), cut (orange), hold (yellow) · bars: operations (magenta: the counterexample)';
  key.style.color = '#666';
  legend.append(key);

  // ---- layout and view ----
  const canvas = document.getElementById('canvas');
  const ctx = canvas.getContext('2d');
  const GUTTER = 96, TOP = 58, RIGHT = 12;
  const laneH = L > 40 ? 18 : L > 16 ? 28 : 44;
  let W = 800, H = TOP + L * laneH + 8;
  const view = { a: 0, b: tmax * 1.01 };
  let selected = null;
  const stats = {};
  const x = (t) => GUTTER + (t - view.a) / (view.b - view.a) * (W - GUTTER - RIGHT);
  const tAt = (px) => view.a + (px - GUTTER) / (W - GUTTER - RIGHT) * (view.b - view.a);
  const yLane = (l) => TOP + l * laneH + laneH / 2;

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    W = Math.max(400, canvas.parentElement.clientWidth);
    H = TOP + L * laneH + 8;
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    canvas.style.height = H + 'px';
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  // First message index whose send time is >= t.
  function lowerBound(t) {
    let lo = 0, hi = N;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (t0[mid] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }

  // Indices of the messages with a part in the visible window.
  function visibleMessages() {
    const out = [];
    const end = view.b;
    for (let i = lowerBound(view.a - maxDur); i < N && t0[i] <= end; i++) {
      if (st[i] !== IN_FLIGHT && t1[i] >= view.a && typeOn[ty[i]]) out.push(i);
    }
    for (const i of flying) if (t0[i] <= end && typeOn[ty[i]]) out.push(i);
    return out;
  }

  // Where message i ends on screen: its delivery, or where it died.
  function endPoint(i) {
    const ya = yLane(from[i]), yb = yLane(to[i]);
    if (st[i] === DROPPED && AT_SENDER.has(D.reasons[reason[i]])) {
      return [x(t1[i]) + 10, ya + (yb - ya) * 0.35];
    }
    return [x(t1[i]), yb];
  }

  function drawAxis() {
    ctx.fillStyle = '#f3f3f3';
    ctx.fillRect(0, 0, W, TOP - 14);
    const span = view.b - view.a;
    const raw = span / 10;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw) || raw;
    ctx.fillStyle = '#555'; ctx.strokeStyle = '#eee'; ctx.font = '11px sans-serif'; ctx.textAlign = 'center';
    ctx.beginPath();
    for (let t = Math.ceil(view.a / step) * step; t <= view.b; t += step) {
      const px = x(t);
      if (px < GUTTER) continue;
      ctx.moveTo(px, TOP - 14); ctx.lineTo(px, H);
      const digits = Math.max(0, Math.min(9, -Math.floor(Math.log10(step))));
      ctx.fillText(t.toFixed(digits) + ' s', px, 11);
    }
    ctx.stroke();
    ctx.textAlign = 'left';
  }

  function drawLanes() {
    ctx.font = '12px sans-serif';
    for (let l = 0; l < L; l++) {
      const y = TOP + l * laneH;
      if (l % 2) { ctx.fillStyle = '#fbfbfb'; ctx.fillRect(GUTTER, y, W - GUTTER, laneH); }
      ctx.strokeStyle = '#ccc';
      ctx.beginPath(); ctx.moveTo(GUTTER, yLane(l)); ctx.lineTo(W, yLane(l)); ctx.stroke();
    }
  }

  const FAULT_FILL = { crash: 'rgba(60,60,60,0.28)', pause: 'rgba(52,120,220,0.20)', cut: 'rgba(255,140,0,0.22)' };
  function faultFill(kind) { return FAULT_FILL[kind] || 'rgba(230,200,0,0.25)'; }

  function drawFaults() {
    let n = 0;
    ctx.font = '11px sans-serif';
    for (const f of faults) {
      if (f.t1 < view.a || f.t0 > view.b) continue;
      const xa = Math.max(GUTTER, x(f.t0)), xb = Math.min(W, Math.max(x(f.t1), x(f.t0) + 2));
      for (const l of f.lanes) {
        ctx.fillStyle = faultFill(f.kind);
        ctx.fillRect(xa, TOP + l * laneH + 1, xb - xa, laneH - 2);
        if (xb - xa > 40) {
          ctx.fillStyle = '#553';
          ctx.fillText(f.label, xa + 3, TOP + l * laneH + 11);
        }
        n++;
      }
    }
    stats.faults = n;
  }

  function drawMarks() {
    let n = 0;
    const rowEnd = [-1e9, -1e9];
    ctx.font = '11px sans-serif';
    for (const m of marks) {
      if (m.t < view.a || m.t > view.b) continue;
      const px = x(m.t);
      ctx.strokeStyle = m.error ? 'rgba(192,57,43,0.8)' : 'rgba(120,60,160,0.35)';
      ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(px, TOP - 14); ctx.lineTo(px, H); ctx.stroke();
      ctx.setLineDash([]);
      // A label where it does not overlap another (two rows); else a tick only.
      const w = ctx.measureText(m.label).width;
      const row = rowEnd.findIndex((end) => px > end + 4);
      if (row >= 0) {
        ctx.fillStyle = m.error ? '#c0392b' : '#6a3d9a';
        ctx.fillText(m.label, px + 2, 25 + row * 12);
        rowEnd[row] = px + 2 + w;
      }
      n++;
    }
    stats.marks = n;
  }

  const OP_FILL = { ok: '#27ae60', fail: '#c0392b', info: '#e67e22', pending: '#e67e22' };
  function opRect(o) {
    const y = TOP + o.lane * laneH + laneH * 0.62;
    const xa = x(o.t0), xb = Math.max(x(o.t1), xa + 2);
    return [xa, y, xb - xa, Math.max(4, laneH * 0.2)];
  }

  function drawOps() {
    let n = 0, hl = 0;
    ctx.font = '10px sans-serif';
    for (const pass of [false, true]) {
      for (const o of ops) {
        if (o.hl !== pass || o.t1 < view.a || o.t0 > view.b) continue;
        const [xa, y, w, h] = opRect(o);
        ctx.fillStyle = OP_FILL[o.kind] || '#999';
        ctx.fillRect(xa, y, w, h);
        if (o.hl) {
          ctx.strokeStyle = '#d0006f'; ctx.lineWidth = 3;
          ctx.strokeRect(xa - 2, y - 2, w + 4, h + 4);
          ctx.lineWidth = 1;
          ctx.fillStyle = '#d0006f';
          ctx.font = 'bold 11px sans-serif';
          // Counterexample labels stacked, so that close ones stay readable.
          ctx.fillText(o.label, xa, y + h + 11 + (hl % 3) * 11);
          ctx.font = '10px sans-serif';
          hl++;
        } else if (w > ctx.measureText(o.label).width + 4) {
          ctx.fillStyle = '#234';
          ctx.fillText(o.label, xa + 2, y - 2);
        }
        n++;
      }
    }
    stats.ops = n; stats.highlighted = hl;
  }

  function drawMessages() {
    const vis = visibleMessages();
    const dense = vis.length > 4000;
    const byType = D.types.map(() => []);
    const dropped = [], flyingVis = [];
    for (const i of vis) {
      if (st[i] === DROPPED) dropped.push(i);
      else if (st[i] === IN_FLIGHT) flyingVis.push(i);
      else byType[ty[i]].push(i);
    }
    ctx.lineWidth = dense ? 0.6 : 1.2;
    byType.forEach((list, k) => {
      if (!list.length) return;
      ctx.strokeStyle = typeColor[k];
      ctx.fillStyle = typeColor[k];
      ctx.beginPath();
      for (const i of list) {
        ctx.moveTo(x(t0[i]), yLane(from[i]));
        ctx.lineTo(x(t1[i]), yLane(to[i]));
      }
      ctx.stroke();
      if (!dense) {
        ctx.beginPath();
        for (const i of list) arrowHead(x(t0[i]), yLane(from[i]), x(t1[i]), yLane(to[i]));
        ctx.fill();
      }
    });
    // Dropped: red, an X where the message died.
    ctx.strokeStyle = '#d62728';
    ctx.beginPath();
    for (const i of dropped) {
      const [ex, ey] = endPoint(i);
      ctx.moveTo(x(t0[i]), yLane(from[i])); ctx.lineTo(ex, ey);
      const s = dense ? 2.5 : 4;
      ctx.moveTo(ex - s, ey - s); ctx.lineTo(ex + s, ey + s);
      ctx.moveTo(ex - s, ey + s); ctx.lineTo(ex + s, ey - s);
    }
    ctx.stroke();
    // Never arrived by the end of the logs: dashed grey.
    ctx.strokeStyle = '#999';
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    for (const i of flyingVis) { ctx.moveTo(x(t0[i]), yLane(from[i])); ctx.lineTo(x(t1[i]), yLane(to[i])); }
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
    stats.arrows = vis.length; stats.dropped = dropped.length; stats.inFlight = flyingVis.length;
    return vis;
  }

  function arrowHead(xa, ya, xb, yb) {
    const a = Math.atan2(yb - ya, xb - xa), s = 6;
    ctx.moveTo(xb, yb);
    ctx.lineTo(xb - s * Math.cos(a - 0.4), yb - s * Math.sin(a - 0.4));
    ctx.lineTo(xb - s * Math.cos(a + 0.4), yb - s * Math.sin(a + 0.4));
    ctx.closePath();
  }

  function drawSelected() {
    if (!selected) return;
    ctx.strokeStyle = '#ffbf00'; ctx.lineWidth = 4; ctx.globalAlpha = 0.8;
    ctx.beginPath();
    if (selected.kind === 'message') {
      const i = selected.i;
      const [ex, ey] = st[i] === DROPPED ? endPoint(i) : [x(t1[i]), yLane(to[i])];
      ctx.moveTo(x(t0[i]), yLane(from[i])); ctx.lineTo(ex, ey);
    } else if (selected.kind === 'op') {
      const [xa, y, w, h] = opRect(selected.o);
      ctx.rect(xa - 3, y - 3, w + 6, h + 6);
    }
    ctx.stroke();
    ctx.globalAlpha = 1; ctx.lineWidth = 1;
  }

  function drawGutter() {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, TOP - 14, GUTTER, H);
    ctx.fillStyle = '#222'; ctx.font = '12px monospace';
    for (let l = 0; l < L; l++) ctx.fillText(lanes[l], 6, yLane(l) + 4);
    ctx.strokeStyle = '#bbb';
    ctx.beginPath(); ctx.moveTo(GUTTER, 0); ctx.lineTo(GUTTER, H); ctx.stroke();
  }

  function draw() {
    const t = performance.now();
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, W, H);
    drawAxis();
    drawLanes();
    drawFaults();
    drawMarks();
    drawOps();
    drawMessages();
    drawSelected();
    drawGutter();
    stats.lanes = L;
    stats.drawMs = performance.now() - t;
    document.getElementById('range').textContent =
      `${view.a.toFixed(6)} s – ${view.b.toFixed(6)} s · ${stats.arrows} arrows drawn in ${stats.drawMs.toFixed(1)} ms`;
  }

  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  // ---- picking ----
  function segDist(px, py, xa, ya, xb, yb) {
    const dx = xb - xa, dy = yb - ya, len = dx * dx + dy * dy;
    let u = len ? ((px - xa) * dx + (py - ya) * dy) / len : 0;
    u = Math.max(0, Math.min(1, u));
    const ex = xa + u * dx - px, ey = ya + u * dy - py;
    return Math.sqrt(ex * ex + ey * ey);
  }

  function pick(px, py) {
    for (const pass of [true, false]) {
      for (const o of ops) {
        if (o.hl !== pass || o.t1 < view.a || o.t0 > view.b) continue;
        const [xa, y, w, h] = opRect(o);
        if (px >= xa - 2 && px <= xa + w + 2 && py >= y - 3 && py <= y + h + 3) return { kind: 'op', o };
      }
    }
    let best = -1, bestD = 6;
    for (const i of visibleMessages()) {
      const [ex, ey] = st[i] === DROPPED ? endPoint(i) : [x(t1[i]), yLane(to[i])];
      const d = segDist(px, py, x(t0[i]), yLane(from[i]), ex, ey);
      if (d < bestD) { bestD = d; best = i; }
    }
    if (best >= 0) return { kind: 'message', i: best };
    if (py < TOP) {
      for (const m of marks) if (Math.abs(x(m.t) - px) < 5) return { kind: 'mark', m };
    }
    const lane = Math.floor((py - TOP) / laneH), t = tAt(px);
    for (const f of faults) if (f.lanes.includes(lane) && t >= f.t0 && t <= f.t1) return { kind: 'fault', f };
    for (const m of marks) if (Math.abs(x(m.t) - px) < 3) return { kind: 'mark', m };
    return null;
  }

  function describe(s) {
    if (!s) return 'Nothing here.';
    if (s.kind === 'message') {
      const i = s.i;
      const status = ['delivered', 'dropped', 'never arrived (in flight when the logs end)'][st[i]];
      const v = {
        event: 'message', msg: M.id[i], type: D.types[ty[i]], from: lanes[from[i]], to: lanes[to[i]],
        size: M.size[i], sent: t0[i], status,
      };
      if (st[i] === DELIVERED) v.delivered = t1[i];
      if (st[i] === DROPPED) { v.dropped = t1[i]; v.reason = D.reasons[reason[i]]; }
      v.seq_send = M.seq0[i];
      if (M.seq1[i] !== null) v.seq_end = M.seq1[i];
      return JSON.stringify(v, null, 2);
    }
    if (s.kind === 'op') return JSON.stringify(Object.assign({ event: 'operation', lane: lanes[s.o.lane], label: s.o.label, counterexample: s.o.hl, invoked: s.o.t0, completed: s.o.t1 }, s.o.fields), null, 2);
    if (s.kind === 'fault') return JSON.stringify({ event: 'fault', kind: s.f.kind, machine: s.f.machine, label: s.f.label, from: s.f.t0, to: s.f.t1, fields: s.f.fields }, null, 2);
    return JSON.stringify(Object.assign({ event: 'mark', label: s.m.label, time: s.m.t }, { fields: s.m.fields }), null, 2);
  }

  function select(px, py) {
    selected = pick(px, py);
    document.getElementById('details').textContent = describe(selected);
    draw();
    return selected;
  }

  // ---- zoom and pan ----
  function zoom(factor, px) {
    const t = tAt(px === undefined ? (GUTTER + W) / 2 : px);
    const a = t - (t - view.a) * factor, b = t + (view.b - t) * factor;
    if (b - a < 1e-9) return;
    view.a = a; view.b = b;
    redraw();
  }
  function fit() { view.a = 0; view.b = tmax * 1.01; redraw(); }
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoom(Math.pow(1.0015, e.deltaY), e.clientX - r.left);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener('mousedown', (e) => { drag = { x: e.clientX, y: e.clientY, a: view.a, b: view.b, moved: false }; });
  window.addEventListener('mousemove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    if (!drag.moved) return;
    const dt = dx / (W - GUTTER - RIGHT) * (drag.b - drag.a);
    view.a = drag.a - dt; view.b = drag.b - dt;
    redraw();
  });
  window.addEventListener('mouseup', (e) => {
    if (drag && !drag.moved) {
      const r = canvas.getBoundingClientRect();
      select(e.clientX - r.left, e.clientY - r.top);
    }
    drag = null;
  });
  window.addEventListener('keydown', (e) => {
    if (e.key === '+' || e.key === '=') zoom(0.7);
    else if (e.key === '-') zoom(1 / 0.7);
    else if (e.key === '0') fit();
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      const d = (view.b - view.a) * 0.2 * (e.key === 'ArrowLeft' ? -1 : 1);
      view.a += d; view.b += d; redraw();
    }
  });
  document.getElementById('fit').onclick = fit;
  document.getElementById('zoomin').onclick = () => zoom(0.7);
  document.getElementById('zoomout').onclick = () => zoom(1 / 0.7);
  const cx = ops.filter((o) => o.hl);
  function toCounterexample() {
    const a = Math.min(...cx.map((o) => o.t0)), b = Math.max(...cx.map((o) => o.t1));
    const pad = Math.max((b - a) * 0.15, 0.002);
    view.a = a - pad; view.b = b + pad; redraw();
  }
  if (cx.length) {
    const b = document.getElementById('tocx');
    b.hidden = false;
    b.onclick = toCounterexample;
  }
  window.addEventListener('resize', () => { resize(); redraw(); });

  resize();
  draw();
  const tFirstDraw = performance.now();

  // ---- self-check, for the browser test: #selftest ----
  function canvasInk() {
    // Pixels of the diagram area that are not background: proof of drawing.
    const dpr = window.devicePixelRatio || 1;
    const img = ctx.getImageData(Math.round(GUTTER * dpr) + 1, Math.round(TOP * dpr), Math.round((W - GUTTER - RIGHT) * dpr) - 2, Math.max(1, Math.round(L * laneH * dpr)));
    let ink = 0, red = 0;
    for (let p = 0; p < img.data.length; p += 4) {
      const r = img.data[p], g = img.data[p + 1], b = img.data[p + 2];
      if (r < 235 || g < 235 || b < 235) ink++;
      if (r > 180 && g < 80 && b < 80) red++;
    }
    return { ink, red };
  }

  function clickAt(px, py) {
    const r = canvas.getBoundingClientRect();
    const opts = { clientX: r.left + px, clientY: r.top + py, bubbles: true };
    canvas.dispatchEvent(new MouseEvent('mousedown', opts));
    window.dispatchEvent(new MouseEvent('mouseup', opts));
    return document.getElementById('details').textContent;
  }

  if (location.hash.includes('selftest')) {
    const out = { stats: Object.assign({}, stats), ink: canvasInk() };
    // Click the middle of the first delivered message between two lanes.
    let target = -1;
    for (let i = 0; i < N; i++) if (st[i] === DELIVERED && from[i] !== to[i] && x(t1[i]) - x(t0[i]) > 1) { target = i; break; }
    if (target < 0) for (let i = 0; i < N; i++) if (st[i] === DELIVERED && from[i] !== to[i]) { target = i; break; }
    if (target >= 0) {
      view.a = Math.max(0, t0[target] - (t1[target] - t0[target]) * 2 - 1e-4);
      view.b = t1[target] + (t1[target] - t0[target]) * 2 + 1e-4;
      draw();
      const px = (x(t0[target]) + x(t1[target])) / 2, py = (yLane(from[target]) + yLane(to[target])) / 2;
      out.clickedMessage = M.id[target];
      out.messageDetails = clickAt(px, py);
    }
    if (cx.length) {
      toCounterexample(); draw();
      const o = cx[0];
      const [xa, y, w, h] = opRect(o);
      out.opDetails = clickAt(xa + w / 2, y + h / 2);
      out.counterexampleStats = Object.assign({}, stats);
    }
    // Zoomed far in, culling draws fewer arrows than the whole run has.
    fit(); draw();
    out.fitStats = Object.assign({}, stats);
    // The arrows' own pixels: the canvas with every message type shown,
    // less the canvas with none.
    const withArrows = canvasInk();
    typeOn.fill(false); draw();
    const without = canvasInk();
    typeOn.fill(true); draw();
    out.arrowInk = withArrows.ink - without.ink;
    out.droppedInk = withArrows.red - without.red;
    view.a = tmax * 0.5; view.b = tmax * 0.5 + tmax * 0.001; draw();
    out.zoomedArrows = stats.arrows;
    fit(); draw();
    out.model = { messages: N, dropped: nDrop, inFlight: flying.length, faults: faults.length, ops: ops.length,
      counterexample: cx.length, lanes: L, faultKinds: [...new Set(faults.map((f) => f.kind))].sort(),
      marks: marks.map((m) => m.label) };
    out.errors = errors;
    const pre = document.getElementById('selftest');
    pre.textContent = JSON.stringify(out);
    pre.hidden = false;
  }

  // ---- timings, for the bench: #bench ----
  if (location.hash.includes('bench')) {
    const time = (f, n) => { const s = performance.now(); for (let k = 0; k < n; k++) f(k); return (performance.now() - s) / n; };
    const out = {
      messages: N, lanes: L,
      parseMs: tParsed - tStart, prepareMs: tPrepared - tParsed, firstDrawMs: tFirstDraw - tPrepared,
      // From navigation start: reading the page (its inline data) included.
      loadMs: tFirstDraw,
    };
    fit();
    out.drawAllMs = time(() => draw(), 10);
    out.arrowsAll = stats.arrows;
    out.drawZoom1pctMs = time((k) => { view.a = tmax * (0.3 + k * 0.01); view.b = view.a + tmax * 0.01; draw(); }, 10);
    out.arrowsZoom1pct = stats.arrows;
    out.panFrame10pctMs = time((k) => { view.a = tmax * (0.1 + k * 0.005); view.b = view.a + tmax * 0.1; draw(); }, 20);
    fit(); draw();
    out.clickAllMs = time((k) => { pick(GUTTER + 50 + k * 7, TOP + laneH / 2 + (k % L) * laneH); }, 20);
    out.errors = errors;
    const pre = document.getElementById('bench');
    pre.textContent = JSON.stringify(out);
    pre.hidden = false;
  }
})();
