// The SFU's Prometheus metrics (prom-client): calls and sessions read from the server, and the
// packet counters of every track in the process (track.ts), at each scrape.
import { Counter, Gauge, Registry } from 'prom-client';
import { counters } from './track.js';

const NS = 'calls_offloader_sfu';

export function sfuMetrics(server: { calls(): number; participants(): number }): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: `${NS}_${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name: `${NS}_${name}`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge('calls', 'Calls with a session in them', server.calls);
  gauge('participants', 'Sessions across calls', server.participants);
  counter('rtp_packets_received_total', 'RTP packets received from publishers', () => counters.received);
  counter('rtp_packets_forwarded_total', 'RTP packets sent on to subscribers', () => counters.forwarded);
  counter(
    'rtp_packets_dropped_total',
    "RTP packets dropped past their track's bound (1 or 25 Mbit/s)",
    () => counters.dropped,
  );
  counter('keyframe_requests_total', 'Keyframes asked of publishers for subscribers', () => counters.keyframeRequests);
  return registry;
}
