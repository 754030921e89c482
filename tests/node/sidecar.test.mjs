// A Node test suite that uses `fakebroker serve` as a sidecar: real mqtt.js clients over MQTT, and the control
// plane over HTTP for what the Python fixture offers (message log, waits, faults, the clock, reset).
//
// Run: `npm install` here, then `node --test` (`fakebroker` on PATH, or FAKEBROKER=/path/to/fakebroker).
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';

const AUTH = 'Basic ' + Buffer.from('guest:guest').toString('base64');
let sidecar;
let mqttUrl;
let managementUrl;

before(async () => {
  sidecar = spawn(process.env.FAKEBROKER ?? 'fakebroker',
    // Every listener on a free port (RabbitMQ's own ports may be taken here).
    ['serve', '--clock', 'virtual', '--free-ports'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  // The banner names each listener; it ends with the clock line.
  const lines = createInterface({ input: sidecar.stdout });
  for await (const line of lines) {
    const [, name, url] = line.match(/^\s+(\S+)\s+(\S+:\/\/\S+)$/) ?? [];
    if (name === 'mqtt') mqttUrl = url;
    if (name === 'management') managementUrl = url;
    if (line.startsWith('clock:')) break;
  }
  assert.ok(mqttUrl && managementUrl, 'fakebroker serve printed its listeners');
});

after(() => sidecar.kill('SIGTERM'));

async function ctl(method, path, body) {
  const response = await fetch(`${managementUrl}/api/fakebroker${path}`, {
    method,
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function management(method, path, body) {
  const response = await fetch(`${managementUrl}/api${path}`, {
    method,
    headers: { authorization: AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function connect(clientId, options = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(mqttUrl, { clientId, reconnectPeriod: 0, ...options });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

beforeEach(async () => {
  assert.equal((await ctl('POST', '/reset')).status, 204);
});

test('a published message can be waited for and read from the log', async () => {
  const waiting = ctl('POST', '/messages/wait', { topic: 'orders/+', timeout: 5 });
  const shop = await connect('shop');
  await shop.publishAsync('orders/42', 'created', { qos: 1 });
  const waited = await waiting;
  assert.equal(waited.status, 200);
  assert.equal(waited.body[0].payload, 'created');
  assert.equal(waited.body[0].client_id, 'shop');
  const log = await ctl('GET', '/messages?topic=orders%2F%23');
  assert.deepEqual(log.body.map((m) => m.routing_key), ['orders.42']);
  await shop.endAsync();
});

test('a subscriber receives what another client publishes, and the management API shows its queue', async () => {
  const subscriber = await connect('dashboard');
  await subscriber.subscribeAsync('sensors/#', { qos: 1 });
  const received = new Promise((resolve) => subscriber.once('message', (topic, payload) => resolve([topic, `${payload}`])));
  const sensor = await connect('sensor');
  await sensor.publishAsync('sensors/kitchen', '21.5', { qos: 1 });
  assert.deepEqual(await received, ['sensors/kitchen', '21.5']);
  const queue = await management('GET', '/queues/%2F/mqtt-subscription-dashboardqos1');
  assert.equal(queue.status, 200);
  assert.equal(queue.body.consumers, 1);
  await Promise.all([subscriber.endAsync(), sensor.endAsync()]);
});

test('a device that leaves the network publishes its will', async () => {
  const watcher = await connect('watcher');
  await watcher.subscribeAsync('status/#');
  const will = new Promise((resolve) => watcher.once('message', (topic, payload) => resolve([topic, `${payload}`])));
  const device = await connect('device-7', { will: { topic: 'status/device-7', payload: 'offline', qos: 0 } });
  device.on('error', () => {});
  assert.equal((await ctl('POST', '/clients/device-7/disconnect')).status, 204);
  assert.deepEqual(await will, ['status/device-7', 'offline']);
  await watcher.endAsync();
  device.end(true);
});

test('advancing the clock expires a silent client after 1.5 x keepalive', async () => {
  const quiet = await connect('quiet', { keepalive: 10, will: { topic: 'status/quiet', payload: 'lost', qos: 0 } });
  quiet.on('error', () => {});
  assert.equal((await ctl('POST', '/clients/quiet/stall')).status, 204);
  assert.equal((await ctl('POST', '/clock/advance', { seconds: 15 })).status, 200);
  const wills = await ctl('GET', '/messages?topic=status%2Fquiet&protocol=mqtt-will');
  assert.equal(wills.body.length, 1);
  assert.equal(wills.body[0].payload, 'lost');
  quiet.end(true);
});

test('refusing connections, then accepting again', async () => {
  assert.equal((await ctl('POST', '/refuse-connections')).status, 204);
  await assert.rejects(connect('refused', { connectTimeout: 2000 }));
  assert.equal((await ctl('DELETE', '/refuse-connections')).status, 204);
  const client = await connect('accepted');
  await client.endAsync();
});
