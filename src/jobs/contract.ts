// What passes between the worker and a job program besides its inputs: files in the job's
// directory that each side reads.

/** `output.json`: the job's output_data. */
export const OUTPUT_FILE = 'output.json';

/**
 * `delivering`: written by the program once its file is finished and being delivered
 * (`{"file": path}`): the stop grace bounded finishing the file; the delivery gets its own time.
 */
export const DELIVERING_FILE = 'delivering';
