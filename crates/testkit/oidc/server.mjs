// A real OAuth 2.0 / OpenID Connect authorization server for the tests (oidc-provider),
// on a free loopback port. Started by testkit::oidc::AuthServer; never for production.
//
// Arguments (all optional): --access-ttl SECONDS (default 3600), --rotate (a new refresh
// token on every refresh, RFC 6749 6), --device-flow (the device authorization
// grant, RFC 8628, for the `tidings` client, with oidc-provider's development login and
// consent pages for the user side, and a polling interval of 1 s), --device-ttl SECONDS
// (how long a device code lives, default 600), --dev-interactions (oidc-provider's
// development login and consent pages, for a browser sign-in: any name, any password),
// --redirect-uri URI (repeatable: a sign-in callback the tidings clients accept).
//
// Prints one JSON line on stdout once listening: {"port": N, "issuer": "http://..."}.
//
// Besides the standard endpoints (discovery, /token, /token/introspection,
// /token/revocation) it answers, for the test harness only:
//   POST /test/mint?user=NAME&client=ID  -> {"refresh_token": "..."}
// which records a grant for NAME as if the user had consented in a browser, so a test can
// start from a refresh token without driving a login page, and
//   POST /test/revoke-access-tokens?user=NAME  -> {"revoked": N}
// which ends every access token issued to NAME while their grants (and refresh tokens)
// stay valid, as a provider does when it cuts sessions short.
import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const accessTtl = Number(args[args.indexOf('--access-ttl') + 1]) || 3600;
const rotate = args.includes('--rotate');
const deviceFlow = args.includes('--device-flow');
const deviceTtl = Number(args[args.indexOf('--device-ttl') + 1]) || 600;
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const devInteractions = args.includes('--dev-interactions');
const extraRedirects = args.flatMap((a, i) => (a === '--redirect-uri' && args[i + 1] ? [args[i + 1]] : []));
const SCOPE = 'openid email offline_access';

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        // Tidings as a confidential client.
        client_id: 'tidings',
        client_secret: 'tidings-secret',
        grant_types: ['authorization_code', 'refresh_token', ...(deviceFlow ? [DEVICE_GRANT] : [])],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...extraRedirects],
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        // Tidings as a public client (no secret, RFC 8252 native app).
        client_id: 'tidings-public',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...extraRedirects],
        token_endpoint_auth_method: 'none',
        application_type: 'native',
      },
      {
        // Dovecot, the resource server: only introspects (RFC 7662).
        client_id: 'dovecot',
        client_secret: 'dovecot-secret',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    scopes: ['openid', 'email', 'offline_access'],
    claims: { openid: ['sub'], email: ['email'] },
    features: {
      // The development login (any name, no password) and consent pages: the user side
      // of the device flow and of a browser sign-in, which the tests drive.
      devInteractions: { enabled: deviceFlow || devInteractions },
      deviceFlow: { enabled: deviceFlow },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    ttl: {
      AccessToken: accessTtl,
      RefreshToken: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Session: 3600,
      Interaction: 3600,
      DeviceCode: deviceTtl,
    },
    rotateRefreshToken: () => rotate,
    async findAccount(_ctx, sub) {
      return { accountId: sub, claims: async () => ({ sub, email: sub }) };
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  // RFC 8628 3.2: `interval` defaults to 5 s; 1 s keeps the tests short.
  provider.on('device_authorization.success', (_ctx, body) => {
    body.interval = 1;
  });
  const accessTokens = new Map();
  // 'saved' for opaque tokens, 'issued' for structured ones.
  const remember = (token) => {
    const list = accessTokens.get(token.accountId) || [];
    list.push(token);
    accessTokens.set(token.accountId, list);
  };
  provider.on('access_token.saved', remember);
  provider.on('access_token.issued', remember);
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    if (req.method === 'POST' && url.pathname === '/test/mint') {
      try {
        const user = url.searchParams.get('user');
        const clientId = url.searchParams.get('client') || 'tidings';
        const client = await provider.Client.find(clientId);
        if (!user || !client) throw new Error('user and a known client are required');
        const grant = new provider.Grant({ accountId: user, clientId });
        grant.addOIDCScope(SCOPE);
        const grantId = await grant.save();
        const now = Math.floor(Date.now() / 1000);
        const rt = new provider.RefreshToken({
          client,
          accountId: user,
          grantId,
          scope: SCOPE,
          gty: 'authorization_code',
          authTime: now,
          iiat: now,
          rotations: 0,
        });
        const value = await rt.save();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ refresh_token: value }));
      } catch (e) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: String(e) }));
      }
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/revoke-access-tokens') {
      const user = url.searchParams.get('user');
      const list = accessTokens.get(user) || [];
      accessTokens.delete(user);
      for (const t of list) await t.destroy();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ revoked: list.length }));
      return;
    }
    callback(req, res);
  });
  process.stdout.write(JSON.stringify({ port, issuer }) + '\n');
});
// The harness closes our stdin when it goes away (even when killed): do not outlive it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
