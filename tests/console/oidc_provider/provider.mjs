// A real OpenID provider (the `oidc-provider` package) on loopback, for tests/console/test_oidc.py.
//
// It starts two providers in one process, each on its own 127.0.0.1 port chosen by the system:
// "main", the organisation's identity provider the console is configured with, and "rogue", a
// second issuer that signs with the SAME keys (so a test can show that the console refuses an ID
// token whose only fault is its issuer). Both allow dynamic client registration (RFC 7591), so
// each test registers a client with its own redirect URI. When both listen, one JSON line goes
// to stdout: {"main": "<issuer>", "rogue": "<issuer>", "jwks": {public keys}, "hs_secret": ...}.
// The process stops when its stdin closes (the test's fixture ends it) or on SIGTERM.
//
// Users log in through a plain HTML form at /interaction/<uid> (account name + password);
// consent is given with the login. The accounts and their claims are the table below.

import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const PASSWORD = 'correct horse battery staple';

// The provider's "second factor" is a flag per account: it says which authentication context
// (acr) a login of that account reached, as an organisation's provider does after password + OTP.
const ACR_MFA = 'urn:zvg:test:mfa';
const ACR_PASSWORD = 'urn:zvg:test:password';

const ACCOUNTS = {
  sanne: { name: 'Sanne de Vries', groups: ['zvh-ciso', 'zvh-medewerkers'], mfa: true },
  fatima: { name: 'Fatima El Amrani', groups: ['zvh-fg'], mfa: true },
  jeroen: { name: 'Jeroen Bakker', groups: ['zvh-audit'], mfa: true },
  bram: { name: 'Bram Visser', groups: ['zvh-ciso'], mfa: false },
  kees: { name: 'Kees Jansen', groups: ['zvh-medewerkers'], mfa: true },
  mila: { name: 'Mila <script>alert(1)</script>', mfa: true },
};

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: 'rs-1', alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: 'es-1', alg: 'ES256', use: 'sig' },
  ];
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10_000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, message) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in</h1>${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Account <input name="login" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>`;
}

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginPage(uid, prompt.name === 'login' ? '' : 'Sign in again'));
    return;
  }
  const form = await readForm(req);
  const accountId = form.get('login') ?? '';
  if (!Object.hasOwn(ACCOUNTS, accountId) || form.get('password') !== PASSWORD) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginPage(uid, 'Unknown account or wrong password'));
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope ?? 'openid'));
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    {
      login: {
        accountId,
        acr: ACCOUNTS[accountId].mfa ? ACR_MFA : ACR_PASSWORD,
        amr: ACCOUNTS[accountId].mfa ? ['pwd', 'otp'] : ['pwd'],
      },
      consent: { grantId },
    },
    { mergeWithLastSubmission: false },
  );
}

async function startProvider(name, jwks) {
  const server = http.createServer();
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: jwks },
    cookies: { keys: [`zvg-test-${name}-${port}`] },
    findAccount: async (ctx, id) =>
      Object.hasOwn(ACCOUNTS, id)
        ? {
            accountId: id,
            async claims() {
              const { name, groups } = ACCOUNTS[id];
              return { sub: id, preferred_username: id, name, ...(groups ? { groups } : {}) };
            },
          }
        : undefined,
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Put the scopes' claims in the ID token itself (an organisation's provider is set up to do
    // so for its groups claim); the console reads its role from the ID token.
    conformIdTokenClaims: false,
    acrValues: [ACR_PASSWORD, ACR_MFA],
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
    },
    pkce: { required: () => true },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'ES256'],
    },
    ttl: { AuthorizationCode: 120, IdToken: 600, AccessToken: 600, Interaction: 600, Session: 600, Grant: 600 },
    renderError: async (ctx, out) => {
      ctx.type = 'text/plain';
      ctx.body = `${out.error}: ${out.error_description ?? ''}`;
    },
  });
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((err) => {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`interaction failed: ${err.name}`);
      });
      return;
    }
    callback(req, res);
  });
  return { issuer, server };
}

const keys = signingKeys();
const main = await startProvider('main', keys);
const rogue = await startProvider('rogue', keys);
const publicKeys = keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub);
process.stdout.write(
  `${JSON.stringify({ main: main.issuer, rogue: rogue.issuer, password: PASSWORD, jwks: { keys: publicKeys } })}\n`,
);

const stop = () => {
  main.server.close();
  rogue.server.close();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
