#!/usr/bin/env node
// The browser test of clients/js: drives demo.html in Debian's chromium through playwright-core.
//
//   node run.mjs <http-url-of-demo-page> <ws-url>
//   node run.mjs http://127.0.0.1:7001/ ws://127.0.0.1:7001/gate
//
// Loads the page, calls window.gatekitDemo.connect(wsUrl), requests echo/echo with
// "hello from chromium" and checks the answer is the same text, waits for at least one push (the
// gate runs with --push-rate), closes with a reason, and prints one JSON line:
//   {"ok":true,"response":"hello from chromium","pushes":N,...}   exit 0
// On any failure it prints {"ok":false,"error":"..."} (and the page's log) and exits 1. The whole
// run is bounded by 150 s. CHROMIUM overrides the browser (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Generous: a cold Chromium start on a loaded 2-core CI machine (the test suite runs beside it)
// took over 20 s once. The steps after the launch have their own, shorter bounds.
const TOTAL_TIMEOUT_MS = 150_000;
const MESSAGE = 'hello from chromium';
const started = Date.now();

const [pageUrl, wsUrl] = process.argv.slice(2);
if (!pageUrl || !wsUrl) {
  console.error('usage: node run.mjs <http-url-of-demo-page> <ws-url>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let context = null;
let userDataDir = null;
const pageLog = [];

function cleanup() {
  if (userDataDir) {
    try {
      rmSync(userDataDir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}

async function fail(error) {
  console.log(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error), ms: Date.now() - started, pageLog: pageLog.slice(-30) }));
  try {
    if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 3000))]);
  } catch {
    /* closing anyway */
  }
  cleanup();
  process.exit(1);
}

const deadline = setTimeout(() => fail(new Error(`timed out after ${TOTAL_TIMEOUT_MS} ms`)), TOTAL_TIMEOUT_MS);

async function main() {
  if (!existsSync(executablePath)) {
    throw new Error(`no chromium at ${executablePath} (apt-get install -y chromium, or set CHROMIUM)`);
  }
  userDataDir = mkdtempSync(join(tmpdir(), 'gatekit-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 120_000,
  });
  const browserVersion = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => pageLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.setDefaultTimeout(15_000);

  const response = await page.goto(pageUrl, { waitUntil: 'load' });
  if (!response || !response.ok()) throw new Error(`GET ${pageUrl}: ${response ? response.status() : 'no response'}`);
  await page.waitForFunction(() => typeof window.gatekitDemo === 'object' && window.gatekitDemo !== null);

  const session = await page.evaluate((url) => window.gatekitDemo.connect(url), wsUrl);
  if (!session || typeof session.sessionId !== 'string' || session.sessionId.length === 0) {
    throw new Error(`connect gave no session id: ${JSON.stringify(session)}`);
  }
  const answer = await page.evaluate((body) => window.gatekitDemo.request('echo/echo', body), MESSAGE);
  if (answer !== MESSAGE) throw new Error(`echo/echo answered ${JSON.stringify(answer)}, expected ${JSON.stringify(MESSAGE)}`);

  const pushes = await page.evaluate(() => window.gatekitDemo.waitForPushes(1, 10_000));
  const topics = await page.evaluate(() => [...new Set(window.gatekitDemo.pushes.map((p) => p.topic))]);
  const close = await page.evaluate(() => window.gatekitDemo.close('chromium test done'));
  if (!close || close.by !== 'client') throw new Error(`close gave ${JSON.stringify(close)}`);
  const status = await page.textContent('#status');

  clearTimeout(deadline);
  console.log(
    JSON.stringify({
      ok: true,
      response: answer,
      pushes,
      pushTopics: topics,
      sessionId: session.sessionId,
      heartbeatMs: session.heartbeatMs,
      maxFrameLength: session.maxFrameLength,
      close,
      status,
      browser: browserVersion,
      ms: Date.now() - started,
    }),
  );
  await context.close();
  cleanup();
  process.exit(0);
}

main().catch(fail);
