// Listening: join the call audio-only and keep each speaker's voice apart, decoded to 16 kHz PCM
// and appended to its own file as it arrives (a killed job loses only the last write), with when
// it started on the call clock and who spoke, in tracks.jsonl. Live captions tap the same samples.
import { appendFileSync, createWriteStream, mkdirSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { HeadlessParticipant, type HeadlessOptions, type Publisher } from '../../src/sfu/client/participant.js';
import type { RtpPacket } from 'werift';
import { AUDIO_HOLD_TICKS, Reorder } from '../../src/media/reorder.js';
import { PausedClock } from '../../src/media/paused-clock.js';
import { SpeakerAudio } from './audio.js';
import { WriteFailure } from '../shared/job.js';

/** One line of tracks.jsonl; a later line for the same file supersedes an earlier one. */
export interface VoiceTrack {
  file: string;
  sessionId: string;
  displayName: string;
  /** ms after the job joined: where sample 0 of the file is on the call clock */
  startMs: number;
  endMs?: number;
}

interface Live {
  audio: SpeakerAudio;
  /** packets in sequence order for the decoder (a jittery path reorders them) */
  reorder: Reorder;
  /** then with the pauses a sender's clock left out (see paused-clock.ts) */
  paused: PausedClock<RtpPacket>;
  /** the voice's file; none where nothing reads it (live captions alone) */
  out?: WriteStream;
  entry: VoiceTrack;
  ssrc: number;
}

export type SamplesHandler = (sessionId: string, samples: Int16Array) => void;

/** Where the call's recording started on the job's clock: `{"offsetMs": …}`, ms after the job joined. */
const RECORDING_CLOCK_FILE = 'recording-clock.json';
/** A recording that says it started further from our join than this (clocks set apart) is not believed. */
const MAX_CLOCK_OFFSET_MS = 24 * 3600_000;

/**
 * Segments on the recording's clock where the call's recording said when it started (upstream's
 * transcriber counts from there too): the transcript is played over the recording. Speech before
 * it is placed at its start.
 */
export function onRecordingClock<T extends { startMs: number; endMs: number }>(dir: string, segments: T[]): T[] {
  let offsetMs = 0;
  try {
    offsetMs =
      Number((JSON.parse(readFileSync(join(dir, RECORDING_CLOCK_FILE), 'utf8')) as { offsetMs?: unknown }).offsetMs) ||
      0;
  } catch {
    return segments; // no recording said so: the job's own clock
  }
  return segments.map((s) => {
    const startMs = Math.max(0, s.startMs - offsetMs);
    return { ...s, startMs, endMs: Math.max(startMs, s.endMs - offsetMs) };
  });
}

export class Listener {
  /** The job's time 0 (Date.now()): the join, as the recorder's; before it, what comes is at 0. */
  private startedAt?: number;
  private readonly participant: HeadlessParticipant;
  private readonly live = new Map<string, Live>();
  private count = 0;
  private readonly handlers: SamplesHandler[] = [];
  private readonly endHandlers: ((sessionId: string) => void)[] = [];
  private readonly writes = new WriteFailure();
  /** when the call's recording started (ms since the epoch), once it said so */
  private recordingAt?: number;
  /** files of ended tracks still being written out */
  private readonly closing = new Set<Promise<void>>();
  private readonly log: (message: string) => void;

  /**
   * `call`: where and as whom to join (the job's site, token and job id). `keepAudio`: false when
   * nothing will read the voices' files (live captions alone): a speaker-hour is 115 MB of them.
   */
  constructor(
    private readonly dir: string,
    call: Omit<HeadlessOptions, 'subscribe'>,
    private readonly keepAudio = true,
  ) {
    this.log = call.log ?? (() => {});
    if (keepAudio) mkdirSync(join(dir, 'tracks'), { recursive: true });
    this.participant = new HeadlessParticipant({ ...call, subscribe: 'audio' });
    this.participant.onRtp((rtp, from) => {
      if (from.kind === 'audio') this.receive(rtp, from);
    });
    const p = this.participant;
    p.on('recordingStarted', (at) => this.recordingStarted(at));
    p.on('left', (who) => this.finish(who.sessionId));
    p.on('update', (who) => {
      if (!who.tracks.mic) this.finish(who.sessionId);
    });
  }

  /** Resolves when the last person (bots aside) has left. */
  get ended(): Promise<void> {
    return this.participant.everyoneLeft;
  }

  /** Why the job must stop: the plugin's job_stop, the call's end, a connection lost for good, a write that failed. */
  get stopped(): Promise<string> {
    return Promise.race([this.participant.stopped, this.writes.stopped]);
  }

  get caption(): HeadlessParticipant['sendCaption'] {
    return this.participant.sendCaption.bind(this.participant);
  }

  onSamples(handler: SamplesHandler): void {
    this.handlers.push(handler);
  }

  /** A speaker's track ended (left, muted off, restarted): no more samples follow on it. */
  onTrackEnd(handler: (sessionId: string) => void): void {
    this.endHandlers.push(handler);
  }

  async start(): Promise<void> {
    await this.participant.join();
    this.startedAt = Date.now();
    this.keepRecordingClock(); // the plugin tells a bot the recording's state as it joins
  }

  get elapsedMs(): number {
    return this.startedAt === undefined ? 0 : Date.now() - this.startedAt;
  }

  private receive(rtp: RtpPacket, from: Publisher): void {
    const { ssrc } = rtp.header;
    let t = this.live.get(from.sessionId);
    if (t && t.ssrc !== ssrc) {
      this.finish(from.sessionId); // the sender restarted its track: a new clock
      t = undefined;
    }
    if (!t) {
      const file = join('tracks', `${String(++this.count).padStart(3, '0')}-${from.sessionId}.pcm`);
      const entry: VoiceTrack = {
        file,
        sessionId: from.sessionId,
        displayName: from.displayName,
        startMs: this.elapsedMs,
      };
      const out = this.keepAudio ? createWriteStream(join(this.dir, file)) : undefined;
      out?.on('error', (err) => this.writes.fail(file, err));
      const audio = new SpeakerAudio(
        (samples) => {
          out?.write(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
          for (const h of this.handlers) h(from.sessionId, samples);
        },
        (error) => this.log(`${file}: a packet is not Opus (${error}); such packets are counted and skipped`),
      );
      const paused = new PausedClock(48_000, (p: RtpPacket, at) => audio.push(p.payload, p.header.timestamp, at));
      const reorder = new Reorder(AUDIO_HOLD_TICKS, (p, at) => paused.push(p, at));
      t = { audio, reorder, paused, out, entry, ssrc };
      this.live.set(from.sessionId, t);
      if (out) this.append(entry);
    }
    t.reorder.push(rtp);
  }

  private finish(sessionId: string): void {
    const t = this.live.get(sessionId);
    if (!t) return;
    this.live.delete(sessionId);
    t.reorder.flush();
    t.paused.flush();
    const ended = { ...t.entry, endMs: this.elapsedMs };
    const { out } = t;
    if (out) {
      // Said once the file holds all it will: the transcript reads an ended track to its end once.
      // A file whose write failed has closed already (the job is stopping for it): no 'close' follows.
      const closed = out.closed ? Promise.resolve() : new Promise<void>((r) => out.once('close', r));
      const told = closed.then(() => this.append(ended));
      this.closing.add(told);
      void told.then(() => this.closing.delete(told));
      out.end();
    }
    t.audio.free();
    if (t.audio.undecodable) this.log(`${t.entry.file}: ${t.audio.undecodable} packets were not Opus`);
    for (const h of this.endHandlers) h(sessionId);
  }

  /** The first the call's recording told of (upstream's too), kept once we have joined. */
  private recordingStarted(at: number): void {
    if (this.recordingAt !== undefined) return;
    this.recordingAt = at;
    this.keepRecordingClock();
  }

  /** Where the recording started on our clock, kept for the delivery and a recovery. */
  private keepRecordingClock(): void {
    if (this.recordingAt === undefined || this.startedAt === undefined) return;
    const offsetMs = this.recordingAt - this.startedAt;
    if (Math.abs(offsetMs) > MAX_CLOCK_OFFSET_MS)
      return this.log(`the call's recording says it started ${offsetMs} ms from our join: not believed`);
    this.log(`the call's recording started ${offsetMs} ms after our join: the transcript's times count from it`);
    this.writes.guard(RECORDING_CLOCK_FILE, () =>
      writeFileSync(join(this.dir, RECORDING_CLOCK_FILE), JSON.stringify({ offsetMs })),
    );
  }

  private append(entry: VoiceTrack): void {
    this.writes.guard('tracks.jsonl', () =>
      appendFileSync(join(this.dir, 'tracks.jsonl'), `${JSON.stringify(entry)}\n`),
    );
  }

  /** Closes every file, those of tracks that ended before included, and leaves. Returns how long the job listened, in ms. */
  async stop(): Promise<number> {
    const duration = this.elapsedMs;
    for (const sessionId of [...this.live.keys()]) this.finish(sessionId);
    this.participant.leave();
    await Promise.all(this.closing);
    return duration;
  }
}
