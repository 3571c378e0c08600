// Node peers for the cloakroom load benchmark (see ../README.md).
//   node server.js --setup express-session|cookie-session --port N
// Same four endpoints as the Rust servers: POST /login, GET /read,
// POST /write, GET /plain. One process (Node's usual single-threaded model).
'use strict';
const express = require('express');

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const setup = opt('--setup');
const port = Number(opt('--port'));
if (!setup || !port) {
  console.error('usage: node server.js --setup express-session|cookie-session --port N');
  process.exit(2);
}

const PAYLOAD = 'x'.repeat(200);
const app = express();
app.disable('x-powered-by');
app.disable('etag');

if (setup === 'express-session') {
  const session = require('express-session');
  app.use(session({
    secret: 'bench-secret-not-for-production',
    resave: false,
    saveUninitialized: false,
    store: new session.MemoryStore(),
    cookie: { secure: false, httpOnly: true, sameSite: 'lax' },
  }));
} else if (setup === 'cookie-session') {
  const cookieSession = require('cookie-session');
  app.use(cookieSession({
    name: 'session',
    keys: ['bench-key-not-for-production'],
    secure: false,
    httpOnly: true,
    sameSite: 'lax',
  }));
} else {
  console.error(`unknown setup ${setup}`);
  process.exit(2);
}

app.post('/login', (req, res) => {
  req.session.user_id = 42;
  req.session.data = PAYLOAD;
  res.send('ok');
});
app.get('/read', (req, res) => {
  const id = req.session && req.session.user_id;
  if (id === undefined) return res.sendStatus(401);
  res.send(String(id));
});
app.post('/write', (req, res) => {
  const n = (req.session.counter || 0) + 1;
  req.session.counter = n;
  res.send(String(n));
});
app.get('/plain', (req, res) => res.send('ok'));

app.listen(port, '127.0.0.1', () => console.error(`${setup} listening on http://127.0.0.1:${port}/`));
