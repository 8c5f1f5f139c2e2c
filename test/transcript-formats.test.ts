// The transcript files the transcriber will deliver: WebVTT with speaker voice tags in time order,
// and the compact text format with upstream's merging rules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compact, toText, toWebVtt, type Segment } from '../workers/transcriber/formats.js';

const segments: Segment[] = [
  { speaker: 'Bob', startMs: 2500, endMs: 4000, text: 'Hi Alice.' },
  { speaker: 'Alice', startMs: 0, endMs: 1800, text: 'Good morning, everyone.' },
  { speaker: 'Alice', startMs: 5000, endMs: 7000, text: 'Let us start.' },
  { speaker: 'Alice', startMs: 7500, endMs: 9000, text: 'First item: the <release> & plan.' },
  { speaker: 'Alice', startMs: 9200, endMs: 16_000, text: 'It is long.' },
  { speaker: 'Bob', startMs: 3_725_000, endMs: 3_727_250, text: 'An hour later --> still here.' },
  { speaker: 'Bob', startMs: 3_728_000, endMs: 3_729_000, text: '   ' },
];

describe('transcript formats', () => {
  it('WebVTT: cues in time order with voice tags, text escaped', () => {
    assert.equal(
      toWebVtt(segments),
      [
        'WEBVTT',
        '',
        '00:00:00.000 --> 00:00:01.800\n<v Alice>Good morning, everyone.',
        '',
        '00:00:02.500 --> 00:00:04.000\n<v Bob>Hi Alice.',
        '',
        '00:00:05.000 --> 00:00:07.000\n<v Alice>Let us start.',
        '',
        '00:00:07.500 --> 00:00:09.000\n<v Alice>First item: the &lt;release> &amp; plan.',
        '',
        '00:00:09.200 --> 00:00:16.000\n<v Alice>It is long.',
        '',
        '01:02:05.000 --> 01:02:07.250\n<v Bob>An hour later -> still here.',
        '',
      ].join('\n'),
    );
  });

  it('WebVTT: a name or a text cannot end a cue or start another', () => {
    const vtt = toWebVtt([
      { speaker: 'Eve\n\n00:00:00.000 --> 00:00:09.000', startMs: 0, endMs: 1000, text: 'a ---> b\n\nc' },
    ]);
    assert.equal(vtt, 'WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Eve 00:00:00.000 -- 00:00:09.000>a -> b\nc\n');
  });

  it('WebVTT without speakers when asked', () => {
    assert.match(toWebVtt(segments, true), /^00:00:02\.500 --> 00:00:04\.000\nHi Alice\.$/m);
    assert.doesNotMatch(toWebVtt(segments, true), /<v /);
  });

  it("text: a speaker's segments merge across short pauses while the block stays under the maximum", () => {
    const merged = compact(segments);
    assert.deepEqual(
      merged.map((s) => [s.speaker, s.startMs, s.endMs]),
      [
        ['Alice', 0, 1800],
        ['Bob', 2500, 4000],
        ['Alice', 5000, 9000], // 500 ms pause: merged; adding the next would make 11 s
        ['Alice', 9200, 16_000],
        ['Bob', 3_725_000, 3_727_250],
      ],
    );
    assert.equal(
      toText(segments).split('\n\n')[2],
      '00:00:05 -> 00:00:09\nAlice\nLet us start. First item: the <release> & plan.',
    );
    assert.equal(compact(segments, { silenceThresholdMs: 100, maxSegmentDurationMs: 60_000 }).length, 6);
  });
});
