// The recording's sound as AAC, by ffmpeg's own encoder. Of its coders, ffmpeg 5.1 defaults to
// twoloop, which searches every frame's quantisers in two nested loops; fast makes one cheaper
// pass. ffmpeg's documentation: fast is "worse with low bitrates (less than 64kbps), but is better
// and much faster at higher bitrates". Here it cost a third to a half of twoloop's CPU with a
// closer waveform at 64 kbit/s (README, "The MP4's AAC by ffmpeg's fast coder"); below 64 kbit/s
// twoloop is kept, as ffmpeg's documentation prefers there.
/** At or above this bitrate (kbit/s, the job's `audio_rate`) the fast coder is used. */
const FAST_CODER_FROM_KBITS = 64;

/** ffmpeg's output arguments that encode the sound to AAC at `kbits` kbit/s. */
export function aacArgs(kbits: number): string[] {
  const coder = kbits >= FAST_CODER_FROM_KBITS ? 'fast' : 'twoloop';
  return ['-c:a', 'aac', '-aac_coder', coder, '-b:a', `${kbits}k`];
}
