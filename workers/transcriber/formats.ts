// The transcriber's artifacts, as the Calls plugin shows them: a WebVTT file (cue text
// `<v Speaker Name>text`, speakers interleaved by start time) and a plain-text file (blocks headed
// `HH:MM:SS -> HH:MM:SS`, then the speaker and the text), in which consecutive segments of one
// speaker are merged while the pause between them is under the silence threshold and the block
// stays under the maximum duration (upstream: 2000 ms and 10000 ms).

export interface Segment {
  speaker: string;
  /** ms from the start of the call */
  startMs: number;
  endMs: number;
  text: string;
}

export interface TextOptions {
  silenceThresholdMs: number;
  maxSegmentDurationMs: number;
}

export const textDefaults: TextOptions = { silenceThresholdMs: 2000, maxSegmentDurationMs: 10_000 };

const byStart = (a: Segment, b: Segment) => a.startMs - b.startMs || a.endMs - b.endMs;

function clock(ms: number, withMs: boolean): string {
  const total = Math.max(0, Math.round(ms));
  const h = Math.floor(total / 3_600_000);
  const m = Math.floor(total / 60_000) % 60;
  const s = Math.floor(total / 1000) % 60;
  const hms = [h, m, s].map((n) => String(n).padStart(2, '0')).join(':');
  return withMs ? `${hms}.${String(total % 1000).padStart(3, '0')}` : hms;
}

/** WebVTT cue text may not contain "-->" or a blank line; `<` and `&` are escaped. */
const cueText = (s: string) =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/--+>/g, '->') // one pass of "-->" would leave "--->" as "-->"
    .replace(/\n\s*\n/g, '\n')
    .trim();

/** A voice tag's name on one line, without `<` or `>` (so without "-->"): the name is the site's text. */
const voice = (name: string) => name.replace(/[<>]/g, '').replace(/\s+/g, ' ').trim();

export function toWebVtt(segments: Segment[], omitSpeaker = false): string {
  const cues = segments
    .filter((s) => s.text.trim())
    .sort(byStart)
    .map(
      (s) =>
        `${clock(s.startMs, true)} --> ${clock(s.endMs, true)}\n${omitSpeaker ? '' : `<v ${voice(s.speaker)}>`}${cueText(s.text)}`,
    );
  return `${['WEBVTT', ...cues].join('\n\n')}\n`;
}

/** Merges a speaker's consecutive segments within the thresholds, in start order. */
export function compact(segments: Segment[], opts: TextOptions = textDefaults): Segment[] {
  const out: Segment[] = [];
  for (const s of segments.filter((x) => x.text.trim()).sort(byStart)) {
    const last = out[out.length - 1];
    if (
      last &&
      last.speaker === s.speaker &&
      s.startMs - last.endMs < opts.silenceThresholdMs &&
      s.endMs - last.startMs < opts.maxSegmentDurationMs
    ) {
      last.endMs = Math.max(last.endMs, s.endMs);
      last.text = `${last.text} ${s.text.trim()}`;
    } else {
      out.push({ ...s, text: s.text.trim() });
    }
  }
  return out;
}

export function toText(segments: Segment[], opts: TextOptions = textDefaults): string {
  return compact(segments, opts)
    .map((s) => `${clock(s.startMs, false)} -> ${clock(s.endMs, false)}\n${s.speaker}\n${s.text}\n`)
    .join('\n');
}
