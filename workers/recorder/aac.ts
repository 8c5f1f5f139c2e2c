// The recording's sound as AAC, by ffmpeg's own encoder. Of its coders, ffmpeg 5.1 defaults to
// twoloop, which searches every frame's quantisers in two nested loops; fast makes one cheaper
// pass. ffmpeg's documentation: fast is "worse with low bitrates (less than 64kbps), but is better
// and much faster at higher bitrates". Measured here (2026-12-06, one minute of 48 kHz stereo at
// 64 kbit/s, CPU s): two voices over pink noise 0.81 → 0.37, SNR 16.1 → 20.5 dB at the same size;
// a clean synthetic voice 1.79 → 0.60; four tones (bench/recorder's voices) 0.73 → 0.39 (README,
// "The MP4's AAC by ffmpeg's fast coder").
/** At or above this bitrate (kbit/s, the job's `audio_rate`) the fast coder is used. */
export const FAST_CODER_FROM_KBITS = 64;

/** ffmpeg's output arguments that encode the sound to AAC at `kbits` kbit/s. */
export function aacArgs(kbits: number): string[] {
  const coder = kbits >= FAST_CODER_FROM_KBITS ? 'fast' : 'twoloop';
  return ['-c:a', 'aac', '-aac_coder', coder, '-b:a', `${kbits}k`];
}
