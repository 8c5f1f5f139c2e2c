// A real Chromium joins through the call page, whose peer is Mattermost's own (RTCPeer of
// @mattermost/calls-common), with a fake camera and a microphone speaking a WAV; a headless bot
// receives its Opus and VP8 with its identity (the SFU reading Chromium's SRTP, AES-CM with
// HMAC-SHA1, through the addon, src/sfu/srtp-native.c), then its screen share, and a caption the
// bot sends shows under the speaker's tile.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Page } from 'puppeteer-core';
import { HeadlessParticipant, type Publisher } from '../src/sfu/client/participant.js';
import { callPageUrl, mintToken } from '../src/sfu/token.js';
import { Sfu } from '../src/sfu/server/server.js';
import { useNativeSrtp } from '../src/sfu/srtp-native.js';
import { joinTokenPolicy } from '../src/sfu/server/policy.js';
import { createLogger } from '../src/log.js';
import { launchChromium } from './browser.js';
import { isVp8Keyframe, opusSource, speechWav } from './media.js';
import { testConfig, waitFor } from './helpers.js';

describe('call page in Chromium', () => {
  const secret = randomBytes(32).toString('hex');
  const call = randomBytes(13).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'co-browser-'));
  let sfu: Sfu;
  let url: string;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  let bot: HeadlessParticipant;
  const packets = new Map<string, { from: Publisher; count: number; keyframe: boolean }>();

  before(async () => {
    // The SFU and the bot (this process) with SRTP through the addon, as they run: Chromium's
    // SRTP (libsrtp over BoringSSL) is what the SFU's addon then has to read.
    assert.equal(useNativeSrtp(), 'OpenSSL, one context per key');
    sfu = new Sfu({
      host: '127.0.0.1',
      port: 0,
      ice: { bindAddress: '127.0.0.1', portRange: [43000, 43100] },
      policy: joinTokenPolicy(secret),
      log: createLogger(testConfig(), 'sfu'),
    });
    url = await sfu.listen();
    bot = new HeadlessParticipant({
      siteUrl: url,
      callId: call,
      token: mintToken(secret, { call, user: 'recorder', name: 'Recording', role: 'bot', ttlSec: 120 }),
    });
    bot.onRtp((rtp, from) => {
      const key = `${from.displayName}/${from.source}/${from.codec}`;
      const entry = packets.get(key) ?? { from, count: 0, keyframe: false };
      entry.count++;
      if (from.codec === 'video/vp8' && isVp8Keyframe(rtp.payload)) entry.keyframe = true;
      packets.set(key, entry);
    });
    await bot.join();
    browser = await launchChromium(
      speechWav(dir, 'This call is being recorded. Hello from the browser, one two three.'),
    );
    page = await browser.newPage();
  });
  after(async () => {
    bot.leave();
    await browser.cleanup();
    await sfu.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('joins with camera and microphone; the headless participant receives Opus and VP8 with who sent them', async (t) => {
    const token = mintToken(secret, { call, user: 'alice', name: 'Alice Liddell', role: 'participant', ttlSec: 120 });
    const answer = await page.goto(callPageUrl(url, call, token));
    assert.match(answer!.headers()['content-security-policy']!, /frame-ancestors 'none'/);
    assert.equal(answer!.headers()['referrer-policy'], 'no-referrer');
    await page.waitForFunction(() => (window as any).callState?.published?.length === 2, { timeout: 20_000 });
    // the token came in the fragment, which no request carried, and left the address bar
    assert.equal(page.url(), `${url}/call/${call}`);
    await waitFor(
      'media from the browser',
      () =>
        (packets.get('Alice Liddell/mic/audio/opus')?.count ?? 0) > 100 &&
        (packets.get('Alice Liddell/camera/video/vp8')?.count ?? 0) > 50,
      20_000,
    );
    const mic = packets.get('Alice Liddell/mic/audio/opus')!;
    assert.equal(mic.from.userId, 'alice');
    assert.equal(mic.from.kind, 'audio');
    const camera = packets.get('Alice Liddell/camera/video/vp8')!;
    assert.equal(camera.from.kind, 'video');
    assert.ok(camera.keyframe, 'a keyframe arrived (asked for when the subscription started)');
    assert.equal(await page.$eval('#status', (el) => el.textContent), 'in call');
    const cipher = await page.evaluate(async () => {
      const stats = await (window as any).callPeer().pc.getStats();
      return [...stats.values()].find((s: any) => s.type === 'transport')?.srtpCipher;
    });
    // Chromium offers no AES-GCM (werift would choose it), so the addon's AES-CM read this.
    assert.equal(cipher, 'SRTP_AES128_CM_HMAC_SHA1_80', "Chromium's SRTP profile");
    assert.equal(
      await page.evaluate(() => (window as any).callState.connected),
      true,
      "calls-common's RTCPeer connected",
    );
    // Where a new speaker's first moments go (reported, not asserted: README, "A new speaker").
    const times = (await page.evaluate(() => (window as any).callState.times)) as Record<string, number>;
    const since = (k: string) => times[k]! - times.join!;
    t.diagnostic(
      `publisher set-up from the join: offer ${since('offer')} ms, SFU answer ${since('signal')} ms, media connected ${since('connected')} ms`,
    );
    assert.ok(
      ['joined', 'offer', 'signal', 'connected'].every((k) => since(k) >= 0),
      JSON.stringify(times),
    );
  });

  it('a screen share from Chromium reaches the subscriber as its own track', async () => {
    await page.evaluate(() => (window as any).shareScreen(true));
    await waitFor('screen share', () => (packets.get('Alice Liddell/screen/video/vp8')?.count ?? 0) > 20, 20_000);
    assert.equal(packets.get('Alice Liddell/screen/video/vp8')!.from.source, 'screen');
    const sessionId = [...bot.participants.values()].find((p) => p.userId === 'alice')!.sessionId;
    await waitFor('screen in participant state', () => bot.participants.get(sessionId)?.tracks.screen !== undefined);
    await page.evaluate(() => (window as any).shareScreen(false));
    await waitFor('screen off', () => bot.participants.get(sessionId)?.tracks.screen === undefined);
  });

  it('shows a caption a bot sends under the speaker', async () => {
    const alice = [...bot.participants.values()].find((p) => p.userId === 'alice')!;
    bot.sendCaption(alice.sessionId, 'hello from the browser', 1500);
    await page.waitForFunction(
      (s: string) =>
        document.querySelector(`.tile[data-session="${s}"] .caption`)?.textContent === 'hello from the browser',
      { timeout: 5000 },
      alice.sessionId,
    );
  });

  it("sends Chromium sender reports whose NTP time is when their RTP time was sent (RFC 3550's binary fraction)", async (t) => {
    // Bob speaks (a tone, 50 Opus packets a second) through the SFU to Chromium, which lip-syncs
    // a person's voice and camera by the SFU's sender reports: each maps an RTP time to the
    // wall-clock time (NTP) its packet was sent. Chromium gives the last one's NTP time
    // (remoteTimestamp) and when it arrived (timestamp), both on this host's clock.
    const bob = new HeadlessParticipant({
      siteUrl: url,
      callId: call,
      token: mintToken(secret, { call, user: 'bob', name: 'Bob', role: 'participant', ttlSec: 120 }),
    });
    await bob.join();
    const { mic } = await bob.publish('mic');
    const speaking = await opusSource((rtp) => mic.writeRtp(rtp), 60);
    try {
      const reports = new Map<number, number>(); // reportsSent → remoteTimestamp - timestamp (ms)
      await waitFor(
        'six sender reports at Chromium',
        async () => {
          const report = await page.evaluate(async () => {
            const stats = await (window as any).callPeer().pc.getStats();
            return [...stats.values()].find((s: any) => s.type === 'remote-outbound-rtp' && s.kind === 'audio');
          });
          if (report?.remoteTimestamp) reports.set(report.reportsSent, report.remoteTimestamp - report.timestamp);
          return reports.size >= 6;
        },
        30_000,
      );
      // The packet a report maps was sent at most 20 ms before it, plus what a loaded host's
      // stalls add (one report of six may fall in one: the SFU's event loop held, its report's
      // timer can come before the packets that waited). Whole seconds (werift's fraction was the
      // decimal digits) lag by up to 1 s: five of six within 250 ms by chance about 1 in 200.
      const lags = [...reports.values()];
      const shown = `sender report's NTP time minus its arrival: ${lags.map((ms) => ms.toFixed(1)).join(', ')} ms`;
      t.diagnostic(shown);
      assert.ok(lags.filter((ms) => ms > -250 && ms < 50).length >= 5, shown);
    } finally {
      speaking.kill();
      bob.leave();
    }
  });

  it('a reload of the call page joins again with the token its tab kept', async () => {
    const tab = await browser.newPage();
    try {
      const token = mintToken(secret, { call, user: 'carol', name: 'Carol', role: 'participant', ttlSec: 120 });
      await tab.goto(callPageUrl(url, call, token));
      await tab.waitForFunction(() => (window as any).callState?.joined === true, { timeout: 20_000 });
      await tab.reload();
      assert.equal(tab.url(), `${url}/call/${call}`);
      await tab.waitForFunction(() => (window as any).callState?.joined === true, { timeout: 20_000 });
    } finally {
      await tab.close();
    }
  });

  it('refuses a page opened with a token for another call, with the reason', async () => {
    const other = await browser.newPage();
    const token = mintToken(secret, {
      call: randomBytes(13).toString('hex'),
      user: 'mallory',
      name: 'M',
      role: 'participant',
      ttlSec: 60,
    });
    await other.goto(callPageUrl(url, call, token));
    await other.waitForFunction(() => (window as any).callState?.error, { timeout: 10_000 });
    assert.equal(await other.$eval('#status', (el) => el.textContent), 'refused: forbidden');
    await other.close();
  });
});
