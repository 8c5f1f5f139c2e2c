// Where a transcription of a finished recording (input_data.media_url) may read from: an explicit
// capability the admin grants, never "anything the URL names". Allowed are the job's own
// Mattermost site (its site_url origin) and what JOBS_MEDIAURLALLOW lists: http(s) origins and
// file:// directories. The API checks the URL a job is created with; the job checks it again,
// and every redirect, before it reads a byte (workers/shared/job.ts).

/** One allowed source: an http(s) origin, or a directory for file:// URLs. */
export type MediaSource = { origin: string } | { dir: string };

/** Parses JOBS_MEDIAURLALLOW entries; throws with the entry named when one is not a source. */
export function parseMediaSources(entries: string[]): MediaSource[] {
  return entries.map((entry) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new Error(`${JSON.stringify(entry)} is not a URL: give https://host[:port] or file:///directory/`);
    }
    if (url.protocol === 'file:') return { dir: url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/` };
    if (
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      url.pathname === '/' &&
      !url.search &&
      !url.username &&
      !url.password
    ) {
      return { origin: url.origin };
    }
    throw new Error(`${JSON.stringify(entry)} is not an http(s) origin (scheme, host, port) nor a file:/// directory`);
  });
}

/** The sources as JOBS_MEDIAURLALLOW writes them: what the worker hands a job (MEDIA_URL_ALLOW). */
export const formatMediaSources = (sources: MediaSource[]) =>
  sources.map((s) => ('origin' in s ? s.origin : `file://${s.dir}`)).join(',');

/**
 * Why `url` may not be read, or null when it may. `siteUrl` (the job's Mattermost site) is always
 * allowed. A URL with user:password, or a file path that climbs out of its directory, never is.
 */
export function mediaRefusal(url: string, allowed: MediaSource[], siteUrl?: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'it is not a URL';
  }
  if (u.username || u.password) return 'it carries a user name or password';
  if (u.protocol === 'file:') {
    let path: string;
    try {
      path = decodeURIComponent(u.pathname);
    } catch {
      return 'its path is not valid %-encoding';
    }
    if (path.split('/').includes('..')) return 'its path climbs out of its directory';
    return allowed.some((s) => 'dir' in s && path.startsWith(s.dir)) ? null : 'file:// is not allowed there';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${u.protocol} is not http(s) or file`;
  const origins = allowed.flatMap((s) => ('origin' in s ? [s.origin] : []));
  if (siteUrl) origins.push(new URL(siteUrl).origin);
  // URL normalises hosts (0x7f000001 → 127.0.0.1), so an origin compares as written once
  return origins.includes(u.origin) ? null : `${u.origin} is not an allowed source`;
}

/** The sentence a refused media_url gets, for the API's 400 and the job's failure alike. */
export const mediaRefused = (reason: string) =>
  `media_url is not allowed: ${reason}; the service reads media only from the job's site_url and what JOBS_MEDIAURLALLOW lists`;
