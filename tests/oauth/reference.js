// The reference: sign each case of a JSON file with the npm package
// oauth-1.0a (not our code), the HMAC by node's crypto. One JSON line per
// case on stdout: {"id", "base", "header"}.
//   node reference.js CASES.json
// A case: {"id", "method": "HMAC-SHA256"|"HMAC-SHA1", "http_method", "url",
// "key", "secret", "token"?, "token_secret"?, "nonce", "timestamp",
// "body": [[name, value], ...]}.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const OAuth = require('oauth-1.0a');

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
for (const c of cases) {
    const algo = c.method === 'HMAC-SHA1' ? 'sha1' : 'sha256';
    const oauth = OAuth({
        consumer: {key: c.key, secret: c.secret},
        signature_method: c.method,
        hash_function(base, key) {
            return crypto.createHmac(algo, key).update(base).digest('base64');
        },
    });
    oauth.getNonce = () => c.nonce;
    oauth.getTimeStamp = () => c.timestamp;
    const data = {};
    for (const [name, value] of c.body) data[name] = value;
    const request = {url: c.url, method: c.http_method, data};
    const token = c.token !== undefined ? {key: c.token, secret: c.token_secret} : undefined;
    // The base string as signed: the oauth_ parameters without the signature.
    const fields = {
        oauth_consumer_key: c.key,
        oauth_nonce: c.nonce,
        oauth_signature_method: c.method,
        oauth_timestamp: c.timestamp,
        oauth_version: '1.0',
    };
    if (token) fields.oauth_token = token.key;
    const base = oauth.getBaseString({url: c.url, method: c.http_method, data: Object.assign({}, data)}, fields);
    const header = oauth.toHeader(oauth.authorize(request, token)).Authorization;
    process.stdout.write(JSON.stringify({id: c.id, base, header}) + '\n');
}
