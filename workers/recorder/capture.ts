// Capture: join the call as a bot, write every track as it arrives to its own WebM file (no
// decoding, no encoding: the cheap part runs live) and log who was there, when, and who spoke.
// Everything is appended as it happens (the tracks' frames within half a second), so if the
// recorder dies the files are still there for the compose step to assemble.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { MediaStreamTrack, RtpPacket } from 'werift';
import {
  HeadlessParticipant,
  type HeadlessOptions,
  type ParticipantInfo,
  type Source,
  sources,
} from '../../src/sfu/client/participant.js';
import { opusPacketMs } from '../../src/media/opus.js';
import { AUDIO_HOLD_TICKS, Reorder, VIDEO_HOLD_TICKS } from '../../src/media/reorder.js';
import { PausedClock } from '../../src/media/paused-clock.js';
import { Placement } from './placement.js';
import { TrackFile, trackCodec } from './track-file.js';
import { WriteFailure } from '../shared/job.js';

/** One line of tracks.jsonl: a recorded track, or the end of one. */
export interface TrackEntry {
  file: string;
  sessionId: string;
  userId: string;
  displayName: string;
  source: Source;
  /** ms after the recording started: when the track appeared */
  startMs: number;
  /** where the file's first frame (video waits for a keyframe) is on the clock: when it began, by the packets of its first seconds that took least to come (Placement); a later line may move it earlier */
  mediaMs?: number;
  endMs?: number;
}

/** One line of events.jsonl: voice activity and presence, for the layout. */
export interface CallEvent {
  t: number;
  sessionId: string;
  displayName: string;
  event: 'joined' | 'left' | 'speaking' | 'silent';
}

export class Capture {
  /**
   * The recording's time 0 (Date.now()): when the call is joined, as `started` is reported, whose
   * time the plugin tells the transcriber as the recording's start (call_job_state), and
   * upstream's recorder starts its ffmpeg. Counted from before the join, the recording opened on
   * the join's seconds of nothing and a transcript played over it came that much early.
   */
  private startedAt?: number;
  private readonly participant: HeadlessParticipant;
  private readonly recorders = new Map<
    string,
    {
      entry: TrackEntry;
      mid: string;
      /** stops listening, writes what the reorder holds and closes the file */
      finish: () => void;
      /** writes the frames the file holds */
      flush: () => void;
    }
  >();
  private trackCount = 0;
  private readonly writes = new WriteFailure();
  private readonly log: (message: string) => void;
  /** Every half second the files get their frames: compose reads a part 3 s after it ends. */
  private readonly flushing = setInterval(() => {
    for (const r of this.recorders.values()) r.flush();
  }, 500).unref();

  /** `call`: where and as whom to join (the job's site, token and job id). */
  constructor(
    private readonly dir: string,
    call: Omit<HeadlessOptions, 'subscribe'>,
  ) {
    mkdirSync(join(dir, 'tracks'), { recursive: true });
    this.log = call.log ?? (() => undefined);
    this.participant = new HeadlessParticipant({ ...call, subscribe: 'all' });
    const p = this.participant;
    p.on('track', ({ track, participant, source, mid }) =>
      this.record(track as MediaStreamTrack, participant, source, mid),
    );
    p.on('joined', (who) => this.event(who, 'joined'));
    p.on('left', (who) => {
      this.event(who, 'left');
      for (const source of sources) this.finishTrack(who.sessionId, source);
    });
    p.on('update', (who) => {
      for (const source of sources) if (!who.tracks[source]) this.finishTrack(who.sessionId, source);
    });
    p.on('voice', (who) => this.event(who, who.speaking ? 'speaking' : 'silent'));
  }

  /** Why the job must stop: the plugin's job_stop, the call's end, a connection lost for good, a write that failed. */
  get stopped(): Promise<string> {
    return Promise.race([this.participant.stopped, this.writes.stopped]);
  }

  /** Joins; resolves once the recording has started (media connected). */
  async start(): Promise<void> {
    await this.participant.join();
    this.startedAt = Date.now(); // what came during the join (the first tracks, people) is at 0
    for (const p of this.participant.participants.values()) {
      this.event(p, 'joined');
      if (p.speaking) this.event(p, 'speaking');
    }
  }

  /** Resolves when the last person (not counting bots) has left. */
  get ended(): Promise<void> {
    return this.participant.everyoneLeft;
  }

  get elapsedMs(): number {
    return this.startedAt === undefined ? 0 : Date.now() - this.startedAt;
  }

  private record(track: MediaStreamTrack, p: ParticipantInfo, source: Source, mid: string): void {
    this.finishTrack(p.sessionId, source);
    const codec = trackCodec(track.codec?.mimeType);
    if (!codec) return; // the bot's answer offers only what a track file holds
    const file = join('tracks', `${String(++this.trackCount).padStart(3, '0')}-${source}-${p.sessionId}.webm`);
    const entry: TrackEntry = {
      file,
      sessionId: p.sessionId,
      userId: p.userId,
      displayName: p.displayName,
      source,
      startMs: this.elapsedMs,
    };
    this.append('tracks.jsonl', entry);
    let writer: TrackFile;
    try {
      writer = new TrackFile(
        join(this.dir, file),
        codec,
        (why) => this.log(`${file}: ${why}; its frames are not recorded until a keyframe of an allowed size`),
        (err) => this.writes.fail(file, err),
      );
    } catch (err) {
      return this.writes.fail(file, err);
    }
    // Packets in sequence order; the file starts at the first packet (audio) or the first whole
    // keyframe (video), and from there the file's times are the sender's RTP clock. Placement
    // says where that start is on the recording's clock, for compose.
    // An audio packet leaves the sender once its frame is full: its first sample was heard that
    // long before (20 ms from a browser). A video frame leaves as soon as it is encoded, paced
    // over a few packets (a keyframe's last may come 100 ms after its first).
    const placement = new Placement(source === 'mic' ? 48_000 : 90_000, (payload) =>
      source === 'mic' ? opusPacketMs(payload) : 0,
    );
    const place = (mediaMs: number) => {
      entry.mediaMs = mediaMs;
      this.append('tracks.jsonl', entry);
    };
    const paused = new PausedClock(source === 'mic' ? 48_000 : 90_000, (rtp: RtpPacket, arrivedAt) => {
      writer.push(rtp, arrivedAt);
      if (entry.mediaMs === undefined && writer.started) place(placement.started(rtp.header.timestamp, this.elapsedMs));
    });
    const reorder = new Reorder(source === 'mic' ? AUDIO_HOLD_TICKS : VIDEO_HOLD_TICKS, (rtp, at) =>
      paused.push(rtp, at),
    );
    const { unSubscribe } = track.onReceiveRtp.subscribe((rtp) => {
      const better = placement.arrived(rtp.header.timestamp, rtp.payload, this.elapsedMs);
      if (better !== undefined) place(better);
      reorder.push(rtp);
    });
    this.recorders.set(`${p.sessionId}/${source}`, {
      entry,
      mid,
      finish: () => {
        unSubscribe();
        reorder.flush();
        paused.flush();
        writer.close();
      },
      flush: () => writer.flush(),
    });
  }

  /** Asks every video publisher for a keyframe: a part begins soon, and its compose seeks to one. */
  requestKeyframes(): void {
    for (const { entry, mid } of this.recorders.values())
      if (entry.source !== 'mic') this.participant.requestKeyframe(mid);
  }

  private finishTrack(sessionId: string, source: Source): void {
    const key = `${sessionId}/${source}`;
    const rec = this.recorders.get(key);
    if (!rec) return;
    this.recorders.delete(key);
    this.writes.guard(rec.entry.file, rec.finish); // closing writes what the file still holds
    this.append('tracks.jsonl', { ...rec.entry, endMs: this.elapsedMs });
  }

  private event(p: ParticipantInfo, event: CallEvent['event']): void {
    this.append('events.jsonl', {
      t: this.elapsedMs,
      sessionId: p.sessionId,
      displayName: p.displayName,
      event,
    } satisfies CallEvent);
  }

  private append(name: string, line: object): void {
    this.writes.guard(name, () => appendFileSync(join(this.dir, name), `${JSON.stringify(line)}\n`));
  }

  /** Finishes every file and leaves the call. Returns the recorded duration in ms. */
  async stop(): Promise<number> {
    clearInterval(this.flushing);
    const duration = this.elapsedMs;
    for (const key of [...this.recorders.keys()]) {
      const [sessionId, source] = key.split('/') as [string, Source];
      this.finishTrack(sessionId, source);
    }
    this.participant.leave();
    return duration;
  }
}
