// client.mjs URL [EVENT-TYPE...]
//
// Reads URL with the npm eventsource package and prints one JSON line per
// thing the EventSource reports: {"k":"open"}, {"k":"error"}, or
// {"k":"event","type":..,"data":..,"id":..} for a "message" event and for
// each extra event type named on the command line. It runs until killed
// or until its standard input closes. internal/clients drives it.
//
// With TINYSSE_TOKEN_FILE set, a custom fetch reads the token from that
// file for every request (the first and each reconnection) and sends it
// as Authorization: Bearer: the way a Node program renews an expiring
// token.
import { readFileSync } from 'node:fs';
import { EventSource } from 'eventsource';

const [url, ...types] = process.argv.slice(2);
const tokenFile = process.env.TINYSSE_TOKEN_FILE;
const withToken = (input, init) => fetch(input, {
  ...init,
  headers: { ...init.headers, Authorization: 'Bearer ' + readFileSync(tokenFile, 'utf8').trim() },
});
const es = new EventSource(url, tokenFile ? { fetch: withToken } : undefined);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

es.addEventListener('open', () => out({ k: 'open' }));
es.addEventListener('error', () => out({ k: 'error' }));
for (const type of ['message', ...types]) {
  es.addEventListener(type, (e) => out({ k: 'event', type: e.type, data: e.data, id: e.lastEventId }));
}
process.stdin.on('end', () => { es.close(); process.exit(0); });
process.stdin.resume();
