/**
 * The dashboard: one HTML page and its script, served as they are (no build step). The page holds no data: the
 * script asks for a token, keeps it in sessionStorage (gone with the tab), and polls `/v1/dashboard` with it.
 * Everything shown is inserted as text, never as HTML, since scenes and error messages come from outside.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wxacode console</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; padding: .75rem 1rem; background: #24292f; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
  header a, header button { color: #fff; }
  main { max-width: 1100px; margin: 0 auto; padding: 1rem; }
  h2 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; margin-bottom: .75rem; }
  .row { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline; }
  .id { font-weight: 600; word-break: break-all; }
  .muted { color: var(--muted); font-size: .9rem; }
  .state { font-size: .8rem; padding: 0 .5rem; border-radius: 1rem; border: 1px solid currentColor; }
  .state.completed { color: var(--ok); } .state.stopped { color: var(--bad); } .state.active, .state.enqueuing { color: #0969da; }
  .bar { display: flex; height: 12px; background: #eaeef2; border-radius: 6px; overflow: hidden; margin: .5rem 0; }
  .bar .done { background: var(--ok); } .bar .failed { background: var(--bad); }
  .nums { display: grid; grid-template-columns: repeat(auto-fit, minmax(7rem, 1fr)); gap: .25rem 1rem; }
  .nums b { font-variant-numeric: tabular-nums; }
  .alert { border-left: 4px solid var(--bad); padding: .25rem .75rem; margin: .5rem 0; background: #ffebe9; }
  .alert.warn { border-color: var(--warn); background: #fff8c5; }
  table { width: 100%; border-collapse: collapse; font-size: .9rem; }
  td, th { text-align: left; padding: .25rem .5rem .25rem 0; vertical-align: top; border-top: 1px solid var(--line); }
  form { display: flex; flex-wrap: wrap; gap: .5rem; }
  input { flex: 1; min-width: 12rem; padding: .5rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; }
  button { padding: .4rem .8rem; font: inherit; border-radius: 6px; border: 1px solid var(--line); background: #f6f8fa; cursor: pointer; }
  header button { background: transparent; border-color: #57606a; }
  .actions { display: flex; gap: .5rem; flex-wrap: wrap; margin-top: .5rem; }
  svg.spark { width: 100%; height: 40px; display: block; }
  #error { color: var(--bad); }
  @media (max-width: 600px) { main { padding: .5rem; } .card { padding: .6rem; } }
</style>
</head>
<body>
<header>
  <h1>wxacode console</h1>
  <a id="queues-link" href="/queues" hidden>Queues</a>
  <span id="who" class="muted"></span>
  <button id="logout" type="button" hidden>Forget token</button>
</header>
<main>
  <section id="login" class="card" hidden>
    <p>This console needs an API token (<code>WXACODE_API_TOKENS</code>). It is kept in this tab only.</p>
    <form id="login-form">
      <input id="token" type="password" autocomplete="off" placeholder="API token" aria-label="API token" required>
      <button type="submit">Open</button>
    </form>
  </section>
  <p id="error" role="alert"></p>
  <section id="content" hidden>
    <h2>Campaigns <span id="updated" class="muted"></span></h2>
    <div id="campaigns"></div>
    <h2>Apps</h2>
    <div id="apps"></div>
  </section>
</main>
<script src="/app.js"></script>
</body>
</html>
`;

export const DASHBOARD_JS = `'use strict';
(function () {
  var KEY = 'wxacode-token';
  var token = sessionStorage.getItem(KEY) || '';
  var scope = null;
  var timer = null;
  var failureCache = {};
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'class') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function fmt(n) { return Number(n).toLocaleString('en-US'); }
  function duration(s) {
    if (s === null || s === undefined) return '—';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function api(method, path, body) {
    var headers = { Authorization: 'Bearer ' + token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        if (res.status === 401) { forget('That token was refused.'); throw new Error('unauthorized'); }
        return res.json().then(function (data) {
          if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
          return data;
        });
      });
  }

  function forget(message) {
    token = '';
    sessionStorage.removeItem(KEY);
    if (timer) clearTimeout(timer);
    fetch('/v1/session', { method: 'DELETE' });
    showLogin(message || '');
  }

  function showLogin(message) {
    $('login').hidden = false;
    $('content').hidden = true;
    $('logout').hidden = true;
    $('queues-link').hidden = true;
    $('who').textContent = '';
    $('error').textContent = message;
  }

  function start() {
    api('POST', '/v1/session').then(function (me) {
      scope = me.scope;
      $('who').textContent = me.name + ' (' + me.scope + ')';
      $('login').hidden = true;
      $('content').hidden = false;
      $('logout').hidden = false;
      $('queues-link').hidden = false;
      $('error').textContent = '';
      if (new URLSearchParams(location.search).get('next') === 'queues') { location.href = '/queues'; return; }
      refresh();
    }).catch(function (err) { if (err.message !== 'unauthorized') $('error').textContent = err.message; });
  }

  function refresh() {
    if (timer) clearTimeout(timer);
    api('GET', '/v1/dashboard').then(render).then(function () {
      $('error').textContent = '';
    }).catch(function (err) {
      if (err.message !== 'unauthorized') $('error').textContent = 'Update failed: ' + err.message;
    }).then(function () {
      if (token) timer = setTimeout(refresh, 2000);
    });
  }

  function act(what, id) {
    api('POST', '/v1/campaigns/' + encodeURIComponent(id) + '/' + what, what === 'stop' ? {} : undefined)
      .then(refresh)
      .catch(function (err) { $('error').textContent = what + ' failed: ' + err.message; });
  }

  function stopBox(label, stop, advice) {
    return el('div', { class: 'alert' }, [
      el('div', { text: label + ': errcode ' + stop.errcode + ' — ' + stop.errmsg }),
      advice ? el('div', { class: 'muted', text: advice }) : null,
    ]);
  }

  function failuresBox(c) {
    var box = el('div', { 'data-testid': 'failures' });
    var cached = failureCache[c.campaign];
    var draw = function (data) {
      box.textContent = '';
      if (!data.groups.length) return;
      var rows = data.groups.map(function (g) {
        return el('tr', {}, [
          el('td', { text: String(g.errcode) }),
          el('td', { text: fmt(g.count) }),
          el('td', {}, [el('div', { text: g.errmsg }), el('div', { class: 'muted', text: g.advice })]),
        ]);
      });
      box.appendChild(el('table', {}, [
        el('tr', {}, [el('th', { text: 'errcode' }), el('th', { text: 'rows' }), el('th', { text: 'what to do' })]),
      ].concat(rows)));
    };
    if (cached && cached.failed === c.failed) draw(cached);
    else {
      api('GET', '/v1/campaigns/' + encodeURIComponent(c.campaign) + '/failures').then(function (data) {
        failureCache[c.campaign] = data;
        draw(data);
      }).catch(function () {});
    }
    return box;
  }

  function campaignCard(item) {
    var c = item.status;
    var total = c.total || 0;
    var pct = function (n) { return total === 0 ? 0 : (n / total) * 100; };
    var settled = total === 0 ? 100 : Math.floor(((c.done + c.failed) / total) * 100);
    var card = el('div', { class: 'card', 'data-testid': 'campaign', 'data-campaign': c.campaign }, [
      el('div', { class: 'row' }, [
        el('span', { class: 'id', text: c.campaign }),
        el('span', { class: 'state ' + c.state, 'data-testid': 'state', text: c.state }),
        el('span', { class: 'muted', text: c.kind + ' · app ' + c.appid }),
      ]),
      el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(settled) }, [
        el('div', { class: 'done', style: 'width:' + pct(c.done) + '%' }),
        el('div', { class: 'failed', style: 'width:' + pct(c.failed) + '%' }),
      ]),
      el('div', { class: 'nums' }, [
        el('span', {}, [el('b', { 'data-testid': 'percent', text: settled + '%' }), document.createTextNode(' settled')]),
        el('span', {}, [el('b', { 'data-testid': 'done', text: fmt(c.done) }), document.createTextNode(' done')]),
        el('span', {}, [el('b', { 'data-testid': 'failed', text: fmt(c.failed) }), document.createTextNode(' failed')]),
        el('span', {}, [el('b', { 'data-testid': 'pending', text: fmt(c.pending) }), document.createTextNode(' pending')]),
        el('span', {}, [el('b', { 'data-testid': 'total', text: fmt(total) }), document.createTextNode(' total')]),
        el('span', {}, [el('b', { 'data-testid': 'rate', text: fmt(item.codesPerMinute) }), document.createTextNode(' codes/min')]),
        el('span', {}, [document.createTextNode('ETA '), el('b', { 'data-testid': 'eta', text: duration(item.etaSeconds) })]),
      ]),
    ]);
    if (c.stopped) card.appendChild(stopBox('Stopped', c.stopped, c.stopped.errcode === -2 ? 'Resume when ready.' : null));
    if (c.appStopped) card.appendChild(stopBox('Workers stopped working for app ' + c.appid, c.appStopped, 'Fix the credentials on the workers, then retry.'));
    if (c.waitingOnStorage) {
      card.appendChild(el('div', { class: 'alert warn', text: 'Waiting on storage since ' + c.waitingOnStorage.since + ': ' + c.waitingOnStorage.error }));
    }
    if (c.failed > 0 || (c.stopped && c.stopped.errcode > 0)) card.appendChild(failuresBox(c));
    if (c.manifest) card.appendChild(el('div', { class: 'muted', text: 'manifest: ' + c.manifest }));
    var actions = el('div', { class: 'actions' }, [
      el('a', { href: '#', 'data-export': c.campaign, text: 'Export CSV' }),
    ]);
    if (scope === 'admin') {
      if (c.state === 'active' || c.state === 'enqueuing') actions.appendChild(button('Stop', 'stop', c.campaign));
      if (c.state === 'stopped') actions.appendChild(button('Resume', 'resume', c.campaign));
      if (c.failed > 0 || c.state === 'stopped') actions.appendChild(button('Retry failed', 'retry', c.campaign));
    }
    card.appendChild(actions);
    return card;
  }

  function button(label, what, id) {
    var b = el('button', { type: 'button', text: label });
    b.addEventListener('click', function () { act(what, id); });
    return b;
  }

  function spark(history, cap) {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 100 40');
    svg.setAttribute('preserveAspectRatio', 'none');
    var limit = document.createElementNS(ns, 'line');
    limit.setAttribute('x1', '0'); limit.setAttribute('x2', '100'); limit.setAttribute('y1', '2'); limit.setAttribute('y2', '2');
    limit.setAttribute('stroke', '#cf222e'); limit.setAttribute('stroke-width', '0.5');
    svg.appendChild(limit);
    if (history.length > 1) {
      var pts = history.map(function (h, i) {
        return (i / (history.length - 1)) * 100 + ',' + (40 - Math.min(1, h.calls / cap) * 38);
      }).join(' ');
      var line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', pts);
      line.setAttribute('fill', 'none');
      line.setAttribute('stroke', '#1a7f37');
      line.setAttribute('stroke-width', '1');
      svg.appendChild(line);
    }
    return svg;
  }

  function historySpan(history) {
    if (history.length < 2) return 'moments';
    var seconds = Math.round((Date.parse(history[history.length - 1].at) - Date.parse(history[0].at)) / 1000);
    return seconds < 120 ? seconds + ' s' : Math.round(seconds / 60) + ' min';
  }

  function appCard(a) {
    var cap = a.rate.count;
    var use = cap === 0 ? 0 : Math.min(100, (a.window.calls / cap) * 100);
    var card = el('div', { class: 'card', 'data-testid': 'app', 'data-appid': a.appid }, [
      el('div', { class: 'row' }, [
        el('span', { class: 'id', text: a.appid }),
        el('span', { class: 'muted', text: 'cap ' + fmt(cap) + ' per ' + a.rate.durationMs / 1000 + ' s' }),
      ]),
      el('div', { class: 'bar' }, [el('div', { class: 'done', style: 'width:' + use + '%' })]),
      el('div', { class: 'nums' }, [
        el('span', {}, [el('b', { 'data-testid': 'window-calls', text: fmt(a.window.calls) }), document.createTextNode(' calls in the window (' + Math.round(use) + '%)')]),
        el('span', {}, [el('b', { text: fmt(a.queue.waiting) }), document.createTextNode(' waiting')]),
        el('span', {}, [el('b', { text: fmt(a.queue.active) }), document.createTextNode(' active')]),
        el('span', {}, [el('b', { text: fmt(a.queue.delayed) }), document.createTextNode(' delayed')]),
      ]),
      el('div', { class: 'muted', text: 'calls in the window over the last ' + historySpan(a.window.history) }),
      spark(a.window.history, cap),
    ]);
    if (a.backedOffMs > 0) {
      card.appendChild(el('div', { class: 'alert warn', text: 'Backed off after 45009/45011 for ' + Math.ceil(a.backedOffMs / 1000) + ' s more' }));
    }
    if (a.stops.credentials) card.appendChild(stopBox('Credentials refused', a.stops.credentials, 'Fix the AppSecret or whitelist, then retry the campaigns.'));
    if (a.stops.acQuota) card.appendChild(stopBox('A + C quota spent', a.stops.acQuota, 'Only unlimited (B) codes can still be made.'));
    return card;
  }

  function render(data) {
    var campaigns = $('campaigns');
    campaigns.textContent = '';
    if (!data.campaigns.length) campaigns.appendChild(el('p', { class: 'muted', text: 'No campaigns yet.' }));
    data.campaigns.slice().reverse().forEach(function (c) { campaigns.appendChild(campaignCard(c)); });
    var apps = $('apps');
    apps.textContent = '';
    if (!data.apps.length) apps.appendChild(el('p', { class: 'muted', text: 'No apps yet.' }));
    data.apps.forEach(function (a) { apps.appendChild(appCard(a)); });
    $('updated').textContent = 'updated ' + new Date(data.generatedAt).toLocaleTimeString();
  }

  document.addEventListener('click', function (e) {
    var id = e.target && e.target.getAttribute && e.target.getAttribute('data-export');
    if (!id) return;
    e.preventDefault();
    fetch('/v1/campaigns/' + encodeURIComponent(id) + '/export', { headers: { Authorization: 'Bearer ' + token } })
      .then(function (res) { return res.blob(); })
      .then(function (blob) {
        var a = el('a', { href: URL.createObjectURL(blob), download: id + '.csv' });
        document.body.appendChild(a); a.click(); a.remove();
      });
  });

  $('login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    token = $('token').value.trim();
    $('token').value = '';
    sessionStorage.setItem(KEY, token);
    start();
  });
  $('logout').addEventListener('click', function () { forget('Token forgotten.'); });

  if (token) start(); else {
    // Without auth configured the API answers anyway: try once before asking.
    fetch('/v1/session', { method: 'POST' }).then(function (res) {
      if (res.ok) start(); else showLogin('');
    }).catch(function () { showLogin(''); });
  }
})();
`;
