/** A listen address's host as a URL names it from this machine: all interfaces by loopback, IPv6 in brackets. */
export const urlHost = (host: string) =>
  host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
