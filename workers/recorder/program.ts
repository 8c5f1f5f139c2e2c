// The recorder job program (run as dist/workers/recorder/main.js, bundled by
// scripts/bundle-jobs.mjs). Inputs come as environment variables (upstream's names plus the
// worker's JOB_ID, JOB_DIR, SFU_URL, SFU_TOKEN, ARTIFACTS_DIR). It joins the call, captures
// until SIGTERM (stop, max duration) or until everyone has left, composes the MP4 and delivers
// it to Mattermost through the Calls plugin's bot API, or to the artifacts directory.
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fastStart } from '../shared/fast-start.js';
import { type BotClient, botClientFor } from '../shared/mattermost.js';
import {
  delivering,
  diedDelivering,
  keepArtifact,
  reportedOrLate,
  runMain,
  stopSignal,
  stopped,
  workerSetting,
} from '../shared/job.js';
import { EXIT, OUTPUT_FILE, RECOVER_ARG } from '../../src/jobs/contract.js';
import { type CallSite, callOptions, callSite, describeSite } from '../shared/call.js';
import { Capture } from './capture.js';
import { readRecording } from './compose.js';
import { LONGEST_PART_MS, PartialRecording, Parts } from './parts.js';
import { recorderInputs, type RecorderInputs } from './inputs.js';

const log = (message: string): void => {
  process.stdout.write(`[recorder ${new Date().toISOString()}] ${message}\n`);
};

/**
 * `--recover`: a previous run died (killed, crashed). Assemble what it captured into an MP4 in
 * the artifacts directory and say where it is; the job stays failed.
 */
async function recover(inputs: RecorderInputs, dir: string, partSec: number, bot?: BotClient): Promise<void> {
  const rec = readRecording(dir);
  if (rec.tracks.length === 0) {
    log('nothing captured: nothing to recover');
    return;
  }
  const output = join(dir, 'recording.mp4');
  // A run killed or crashed while delivering (past JOBS_DELIVERYTIMEOUTSEC while Mattermost was
  // down, say) had finished the MP4: it is kept as it is. Composing it again began by truncating it,
  // and a long call's join rarely ends within the recovery's time.
  if (diedDelivering(dir, output)) {
    const path = await keep(output, inputs);
    writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify({ file: path, duration_ms: rec.durationMs }));
    log(`the recording was finished before the run ended, and is kept at ${path}`);
    return report(bot, inputs, `the recording could not be delivered; it is kept on the job service at ${path}`);
  }
  let durationMs = rec.durationMs;
  const parts = partsOf(dir, inputs, partSec);
  const composedMs = await parts.joinComposed(rec.durationMs, output);
  if (composedMs > 0) {
    await keepPartial(output, inputs, dir, composedMs).then(
      (path) => log(`the recording up to ${(composedMs / 1000).toFixed(1)} s is kept at ${path}; composing the rest`),
      (err: Error) => log(`the recording up to ${(composedMs / 1000).toFixed(1)} s could not be kept: ${err.message}`),
    );
  }
  await parts.finish(rec.durationMs, output).catch((err) => {
    if (!(err instanceof PartialRecording)) throw err;
    log(`the recording past ${(err.untilMs / 1000).toFixed(1)} s could not be composed: ${err.message}`);
    durationMs = err.untilMs;
  });
  const path = await keepPartial(output, inputs, dir, durationMs);
  log(`recovered ${(durationMs / 1000).toFixed(1)} s of the call into ${path}`);
  await report(
    bot,
    inputs,
    `the recorder stopped unexpectedly; ${(durationMs / 1000).toFixed(0)} s were recovered and kept on the job service at ${path}`,
  );
}

/** The recording's parts. PART_SEC fixes their length; without it they start at 10 s and grow while that is cheap. */
const partsOf = (dir: string, inputs: RecorderInputs, partSec: number) =>
  new Parts(dir, inputs, partSec * 1000, log, process.env.PART_SEC ? undefined : LONGEST_PART_MS);

/** The recovery's failure, as the plugin shows it on the call's post. */
async function report(bot: BotClient | undefined, inputs: RecorderInputs, reason: string): Promise<void> {
  const jobId = inputs.recording_id ?? process.env.JOB_ID ?? '';
  await bot
    ?.reportStatus(inputs.call_id, jobId, 'recording', 'failed', reason)
    .catch((e) => log(`could not report: ${e.message}`));
}

/** Copies the MP4 into the artifacts directory, its index first; returns its path there. */
const keep = (output: string, inputs: RecorderInputs, prefix = '') =>
  keepArtifact(
    fastStart(output),
    `${prefix}recording-${inputs.call_id}-${process.env.JOB_ID ?? inputs.recording_id ?? 'job'}.mp4`,
  );

/** Keeps the MP4 as the partial recording and names it in output_data; returns its path. */
async function keepPartial(output: string, inputs: RecorderInputs, dir: string, durationMs: number): Promise<string> {
  const path = await keep(output, inputs, 'partial-');
  writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify({ file: path, duration_ms: durationMs, partial: true }));
  return path;
}

async function main(): Promise<void> {
  let inputs: RecorderInputs;
  let dir: string;
  let site: CallSite | undefined;
  let partSec: number;
  let bot: BotClient | undefined;
  try {
    inputs = recorderInputs(process.env);
    partSec = Number(process.env.PART_SEC ?? 10);
    if (!Number.isInteger(partSec) || partSec < 2 || partSec > 3600)
      throw new Error('PART_SEC must be a whole number of seconds from 2 to 3600');
    dir = workerSetting('JOB_DIR');
    site = process.argv.includes(RECOVER_ARG) ? undefined : callSite(inputs, inputs.recording_id);
    bot = botClientFor(inputs, log);
  } catch (err) {
    // Nothing has started: say which input is wrong and stop.
    process.stderr.write(`invalid input: ${(err as Error).message}\n`);
    process.exit(EXIT.invalidInput);
  }
  const jobId = inputs.recording_id ?? process.env.JOB_ID ?? '';
  if (process.argv.includes(RECOVER_ARG)) return recover(inputs, dir, partSec, bot);
  // Reported in the background: the plugin's answer may take minutes of retries (a server that
  // restarts), and meanwhile the job composes and hears a stop. What is reported later waits for it.
  let started: Promise<unknown> = Promise.resolve();
  const fail = async (reason: string): Promise<never> => {
    process.stderr.write(`${reason}\n`);
    await reportedOrLate(started);
    await bot?.reportStatus(inputs.call_id, jobId, 'recording', 'failed', reason).catch((e) => {
      log(`could not report the failure: ${e.message}`);
      // the reason last again: a pod's log has both streams in one, and its last line is the reason
      process.stderr.write(`${reason}\n`);
    });
    process.exit(EXIT.failed);
  };

  // SIGTERM from here on means "finish the file"; the worker escalates to SIGKILL after its grace.
  const stop = stopSignal();
  log(`joining call ${inputs.call_id} on ${describeSite(site!)}`);
  const capture = new Capture(dir, callOptions(site!, inputs.call_id, bot, log));
  try {
    await Promise.race([capture.start(), stopped(stop, 'before the call was joined')]);
  } catch (err) {
    return fail(`could not join the call: ${(err as Error).message}`);
  }
  log(`recording call ${inputs.call_id}`);
  started =
    bot
      ?.reportStatus(inputs.call_id, jobId, 'recording', 'started')
      .catch((e) => log(`could not report the start: ${e.message}`)) ?? started;

  // While capturing, finished parts are composed.
  const parts = partsOf(dir, inputs, partSec);
  const composing = setInterval(() => parts.whileCapturing(capture), 1000);
  const why = await Promise.race([stop, capture.stopped, capture.ended.then(() => 'everyone left the call')]);
  clearInterval(composing);
  const durationMs = await capture.stop();
  const { user, system } = process.cpuUsage();
  log(
    `${why}: stopping after ${(durationMs / 1000).toFixed(1)} s (capture used ${((user + system) / 1e6).toFixed(2)} s of CPU); composing`,
  );

  const output = join(dir, 'recording.mp4');
  try {
    await parts.finish(durationMs, output);
  } catch (err) {
    const failed = `could not compose the recording (the captured tracks are kept in ${dir}): ${(err as Error).message}`;
    if (!(err instanceof PartialRecording)) return fail(failed);
    // A compose fails for a full disk too: then the partial recording may not be kept either.
    const path = await keepPartial(output, inputs, dir, err.untilMs).catch((e: Error) =>
      log(`the partial recording could not be kept: ${e.message}`),
    );
    if (!path) return fail(failed);
    return fail(
      `could not compose the recording past ${(err.untilMs / 1000).toFixed(1)} s (the recording up to there is kept at ${path}, the captured tracks in ${dir}): ${err.message}`,
    );
  }
  log(`the MP4 is complete: ${(statSync(output).size / 1e6).toFixed(1)} MB`);

  if (!bot) {
    const path = await keep(output, inputs);
    writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify({ file: path, duration_ms: durationMs }));
    log(`saved ${path}`);
    return;
  }
  try {
    delivering(output); // first: the delivery's own time covers waiting for the start's report
    await started;
    const filename = `${await bot.filename(inputs.call_id)}.mp4`;
    const file = await bot.upload(inputs.call_id, fastStart(output), filename);
    await bot.postRecording(inputs.call_id, { JobID: jobId, FileIDs: [file.id], PostID: inputs.post_id! });
    writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify({ file_id: file.id, filename, duration_ms: durationMs }));
    log(`posted ${filename} (${file.size} bytes) to the call thread`);
    // Delivered: the local copies go. (Until then they stay for the retention time.)
    rmSync(output, { force: true });
    for (const sub of ['tracks', 'parts']) rmSync(join(dir, sub), { recursive: true, force: true });
  } catch (err) {
    // Kept where the job's files stay past its directory's retention, and named in output_data.
    const path = await keep(output, inputs).catch((e: Error) => log(`the recording could not be kept: ${e.message}`));
    if (path) writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify({ file: path, duration_ms: durationMs }));
    return fail(`could not deliver the recording (kept at ${path || output}): ${(err as Error).message}`);
  }
}

runMain('recorder', main);
