// Capture: join the call as a bot, write every track as it arrives to its own WebM file (no
// decoding, no encoding: the cheap part runs live) and log who was there, when, and who spoke.
// Everything is appended as it happens, so if the recorder dies the files are still there for
// the compose step to assemble.
import { appendFileSync, closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DurationPosition, Event, MediaRecorder, type WebmOutput } from 'werift/nonstandard';
import type { MediaStreamTrack, RtpPacket } from 'werift';
import {
  HeadlessParticipant,
  type HeadlessOptions,
  type ParticipantInfo,
  type Source,
  sources,
} from '../../src/sfu/client/participant.js';
import { isH264Keyframe } from '../../src/media/h264.js';
import { isVp8Keyframe } from '../../src/media/vp8.js';
import { opusPacketMs } from '../../src/media/opus.js';
import { AUDIO_HOLD_TICKS, Reorder } from '../../src/media/reorder.js';

/** One line of tracks.jsonl: a recorded track, or the end of one. */
export interface TrackEntry {
  file: string;
  sessionId: string;
  userId: string;
  displayName: string;
  source: Source;
  /** ms after the recording started: when the track appeared */
  startMs: number;
  /** when the file's first frame arrived (video waits for a keyframe): where the file starts on the clock */
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

/**
 * A sink for werift's WebM output that keeps the file open and writes synchronously: werift's own
 * file writer opens, appends to and closes the file for every frame, which cost about as much CPU
 * as receiving the media. Written bytes are the kernel's at once, so a killed recorder keeps them.
 */
function webmFile(path: string): Event<[WebmOutput]> {
  const fd = openSync(path, 'w');
  const sink = new Event<[WebmOutput]>();
  let open = true;
  sink.subscribe((out) => {
    if (!open) return;
    if (out.saveToFile) writeSync(fd, out.saveToFile);
    if (out.eol) {
      // The end: the header gets the duration. The segment keeps its unknown size, as its
      // clusters have: werift's writer sets a size, and then every reader of the file warns of
      // unknown-sized clusters inside a sized segment (in every job log).
      writeSync(fd, out.eol.durationElement, 0, out.eol.durationElement.length, DurationPosition);
      closeSync(fd);
      open = false;
    }
  });
  return sink;
}

/**
 * werift's WebM writer for one track: frames at their times by the sender's RTP clock from the
 * first one. One track per file: nothing to lip-sync within it (compose aligns the files).
 */
export const trackWriter = (path: string, track: MediaStreamTrack) =>
  new MediaRecorder({ stream: webmFile(path), tracks: [track], disableNtp: true, disableLipSync: true });

export class Capture {
  readonly startedAt = Date.now();
  private readonly participant: HeadlessParticipant;
  private readonly recorders = new Map<
    string,
    {
      recorder: MediaRecorder;
      entry: TrackEntry;
      mid: string;
      stopWatching: () => void;
    }
  >();
  private trackCount = 0;

  /** `call`: where and as whom to join (the job's site, token and job id). */
  constructor(
    private readonly dir: string,
    call: Omit<HeadlessOptions, 'subscribe'>,
  ) {
    mkdirSync(join(dir, 'tracks'), { recursive: true });
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

  /** Why the job must stop, from the call: the plugin's job_stop, the call's end, a connection lost for good. */
  get stopped(): Promise<string> {
    return this.participant.stopped;
  }

  /** Joins; resolves once the recording has started (media connected). */
  async start(): Promise<void> {
    await this.participant.join();
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
    return Date.now() - this.startedAt;
  }

  private record(track: MediaStreamTrack, p: ParticipantInfo, source: Source, mid: string): void {
    this.finishTrack(p.sessionId, source);
    const file = join('tracks', `${String(++this.trackCount).padStart(3, '0')}-${source}-${p.sessionId}.webm`);
    const entry: TrackEntry = {
      file,
      sessionId: p.sessionId,
      userId: p.userId,
      displayName: p.displayName,
      source,
      startMs: this.elapsedMs,
    };
    // werift's writer reorders video itself, audio not: it gets the packets in sequence order.
    let reorder: Reorder | undefined;
    let input = track;
    if (source === 'mic') {
      const ordered = new Event<[RtpPacket]>();
      reorder = new Reorder(AUDIO_HOLD_TICKS, (rtp) => ordered.execute(rtp));
      // the writer reads no more of a track than these
      const { kind, codec, onReceiveRtcp } = track;
      input = { kind, codec, onReceiveRtp: ordered, onReceiveRtcp } as unknown as MediaStreamTrack;
    }
    const recorder = trackWriter(join(this.dir, file), input);
    this.append('tracks.jsonl', entry);
    // The writer starts at the first packet (audio) or the first keyframe (video); note when, so
    // the compose step puts the file at the right moment. From there the file's times are the
    // sender's RTP clock (werift is patched to keep it exact: see patches/).
    const isKeyframe = track.codec?.mimeType.toLowerCase() === 'video/h264' ? isH264Keyframe : isVp8Keyframe;
    const { unSubscribe } = track.onReceiveRtp.subscribe((rtp) => {
      reorder?.push(rtp);
      if (entry.mediaMs !== undefined || (source !== 'mic' && !isKeyframe(rtp.payload))) return;
      // An audio packet leaves the sender once its frame is full: its first sample was heard
      // that long before (20 ms from a browser). A video frame leaves as soon as it is encoded.
      entry.mediaMs =
        source === 'mic' ? Math.max(0, this.elapsedMs - Math.round(opusPacketMs(rtp.payload))) : this.elapsedMs;
      this.append('tracks.jsonl', entry);
    });
    this.recorders.set(`${p.sessionId}/${source}`, {
      recorder,
      entry,
      mid,
      stopWatching: () => {
        unSubscribe();
        reorder?.flush();
      },
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
    rec.stopWatching();
    void rec.recorder.stop().catch(() => undefined);
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
    appendFileSync(join(this.dir, name), `${JSON.stringify(line)}\n`);
  }

  /** Finishes every file and leaves the call. Returns the recorded duration in ms. */
  async stop(): Promise<number> {
    const duration = this.elapsedMs;
    for (const key of [...this.recorders.keys()]) {
      const [sessionId, source] = key.split('/') as [string, Source];
      this.finishTrack(sessionId, source);
    }
    this.participant.leave();
    await new Promise((r) => setTimeout(r, 200)); // the writers flush their last clusters
    return duration;
  }
}
