// patches/werift+*.patch rewrites werift's per-packet RTP, SRTP and event code for speed. The
// patched werift must write, read, encrypt and decrypt exactly what werift as released does, and
// reject what it rejects: both are loaded here and fed the same random packets. One deliberate
// difference: a header extension block that runs past the packet is rejected, where released werift
// read on past the end, making up empty extensions in quadratic time (a 24-byte packet could hold
// the event loop for minutes); such packets are not given to released werift here. Another: NTP
// times, which released werift wrote and read with the fraction's decimal digits as its binary
// fraction, checked on their own. The patch's
// security fixes (ICE answering and passing on strangers; DTLS closing or starting over on a record
// in the clear; a lost bind of an ICE port ending the process; SCTP holding whatever a peer sends;
// SCTP packets and data-channel messages ending the process; data channels and candidates without
// bound; RTCP read past its packet, NACKs without serial arithmetic, NACKs answered without bound,
// TWCC feedback claiming packets it has no deltas for; SRTP state for any number of streams; ICE
// passwords of every restart)
// are checked last, on both: released werift must show the hole, the patched one not.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { type Socket, createSocket } from 'node:dgram';
import { test } from 'node:test';
import * as patched from 'werift';
import { useNativeSrtp } from '../src/sfu/srtp-native.js';
import { dtlsClientHello, seededRandom as random, waitFor } from './helpers.js';
import { releasedWerift } from './werift-released.js';

const released = (await import(releasedWerift())) as typeof patched;
type Werift = typeof patched;

type Rng = ReturnType<typeof random>;

/** Header fields as plain data, to compare what each werift parsed. */
const fields = (h: patched.RtpHeader) => ({
  version: h.version,
  padding: h.padding,
  paddingSize: h.paddingSize,
  extension: h.extension,
  marker: h.marker,
  payloadType: h.payloadType,
  sequenceNumber: h.sequenceNumber,
  timestamp: h.timestamp,
  ssrc: h.ssrc,
  csrc: [...h.csrc],
  extensionProfile: h.extensionProfile,
  extensionLength: h.extensionLength,
  extensions: h.extensions.map((e) => [e.id, e.payload.toString('hex')]),
  payloadOffset: h.payloadOffset,
});

function randomHeader(w: Werift, r: Rng): patched.RtpHeader {
  const twoByte = r.int(3) === 0;
  const extensions = Array.from({ length: r.int(4) }, (_, i) =>
    twoByte ? { id: i + 1 + r.int(200), payload: r.bytes(r.int(20)) } : { id: i + 1, payload: r.bytes(1 + r.int(16)) },
  );
  return new w.RtpHeader({
    marker: r.int(2) === 1,
    payloadType: r.int(128),
    sequenceNumber: r.int(65536),
    timestamp: r.int(2 ** 32),
    ssrc: r.int(2 ** 32),
    csrc: Array.from({ length: r.int(4) }, () => r.int(2 ** 32)),
    extensionProfile: twoByte ? w.ExtensionProfiles.TwoByte : w.ExtensionProfiles.OneByte,
    extensions,
  });
}

/** Whether the header at the start of `packet` claims an extension block longer than the packet. */
function overruns(packet: Buffer): boolean {
  if (packet.length < 1 || !(packet[0]! & 0x10)) return false;
  const at = 12 + 4 * (packet[0]! & 0x0f);
  return packet.length >= at + 4 && at + 4 + packet.readUInt16BE(at + 2) * 4 > packet.length;
}

/** A packet the extension block of which overruns it: the patched werift must reject it. */
function rejected(what: string, fn: (w: Werift) => unknown): void {
  assert.throws(() => fn(patched), what);
}

/** Runs fn on both; they must both throw or return the same. */
function same<T>(what: string, fn: (w: Werift) => T, compare: (v: T) => unknown = (v) => v): void {
  const outcome = (w: Werift) => {
    try {
      return { value: compare(fn(w)) };
    } catch (e) {
      return { threw: e instanceof w.SrtpAuthenticationError ? 'SrtpAuthenticationError' : 'error' };
    }
  };
  assert.deepEqual(outcome(patched), outcome(released), what);
}

test('RTP headers: patched werift writes and reads the same bytes and fields as released werift', () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const theirs = randomHeader(released, random(seed));
    const wire = theirs.serialize(theirs.serializeSize);
    const mine = randomHeader(patched, random(seed));
    assert.deepEqual(mine.serialize(mine.serializeSize), wire, `seed ${seed}: serialize`);
    const packet = Buffer.concat([wire, random(seed).bytes(random(seed).int(40))]);
    same(
      `seed ${seed}: deSerialize`,
      (w) => w.RtpPacket.deSerialize(packet),
      (p) => [fields(p.header), p.payload],
    );
    // Cut short or flipped: both must fail alike, or read alike.
    const r = random(seed);
    const cut = packet.subarray(0, r.int(packet.length));
    const flipped = Buffer.from(packet);
    flipped[r.int(Math.min(flipped.length, 20))] ^= 1 << r.int(8);
    for (const [what, bytes] of [
      ['truncated', cut],
      ['flipped', flipped],
    ] as const) {
      const parse = (w: Werift) => w.RtpHeader.deSerialize(bytes);
      if (overruns(bytes)) rejected(`seed ${seed}: ${what}`, parse);
      else same(`seed ${seed}: ${what}`, parse, fields);
    }
  }
});

/** What the DTLS transport hands on: the patched one decrypts and parses the header once. */
const received = (w: Werift, session: patched.SrtpSession, data: Buffer) =>
  w === patched
    ? (session as patched.SrtpSession & { decryptPacket(b: Buffer): patched.RtpPacket }).decryptPacket(data)
    : w.RtpPacket.deSerialize(session.decrypt(data));

for (const [name, profile, tagLength, addon] of [
  ['AES-GCM', patched.ProtectionProfileAeadAes128Gcm, 16, false],
  ['AES-GCM through the addon (src/sfu/srtp-native.c)', patched.ProtectionProfileAeadAes128Gcm, 16, true],
  ['AES-CM + HMAC-SHA1', patched.ProtectionProfileAes128CmHmacSha1_80, 10, false],
  ['AES-CM + HMAC-SHA1 through the addon', patched.ProtectionProfileAes128CmHmacSha1_80, 10, true],
] as const) {
  test(`SRTP ${name}: patched werift encrypts, decrypts and rejects as released werift does`, (t) => {
    // Sessions keyed after this use the addon (or werift's own ciphers); later tests get werift's.
    assert.equal(useNativeSrtp(addon), addon ? 'OpenSSL, one context per key' : "werift's (switched off)");
    t.after(() => useNativeSrtp(false));
    const r = random(profile);
    const [key, salt, otherKey, otherSalt] = [r.bytes(16), r.bytes(14), r.bytes(16), r.bytes(14)];
    const sender = (w: Werift) =>
      new w.SrtpSession({
        keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: otherKey, remoteMasterSalt: otherSalt },
        profile,
      });
    const receiver = (w: Werift) =>
      new w.SrtpSession({
        keys: { localMasterKey: otherKey, localMasterSalt: otherSalt, remoteMasterKey: key, remoteMasterSalt: salt },
        profile,
      });
    const senders = new Map([patched, released].map((w) => [w, sender(w)] as const));
    const receivers = new Map([patched, released].map((w) => [w, receiver(w)] as const));
    const keyed = (session: patched.SrtpSession) =>
      (session as unknown as { localContext: { cipher: { rtpKey?: unknown } } }).localContext.cipher.rtpKey;
    assert.equal(
      keyed(senders.get(patched)!) !== undefined,
      addon,
      'the session holds an addon key exactly when it should',
    );
    // One stream whose sequence numbers wrap (the rollover counter), some packets padded.
    const ssrc = r.int(2 ** 32);
    for (let i = 0; i < 600; i++) {
      const paddingSize = r.int(5) === 0 ? 1 + r.int(8) : 0;
      const payload = Buffer.concat([r.bytes(1 + r.int(1200)), Buffer.alloc(paddingSize, paddingSize)]);
      const props = {
        ssrc,
        sequenceNumber: (65536 - 300 + i) & 0xffff,
        timestamp: i * 3000,
        payloadType: 96,
        padding: paddingSize > 0,
        marker: i % 3 === 0,
        // Headers of every length: contributing sources, and one- or two-byte extensions.
        csrc: Array.from({ length: r.int(3) }, () => r.int(2 ** 32)),
        extensionProfile: i % 2 ? patched.ExtensionProfiles.TwoByte : patched.ExtensionProfiles.OneByte,
        extensions: Array.from({ length: r.int(3) }, (_, id) => ({ id: id + 1, payload: r.bytes(1 + r.int(12)) })),
      };
      const wire = senders.get(released)!.encrypt(payload, new released.RtpHeader(props));
      assert.deepEqual(
        senders.get(patched)!.encrypt(payload, new patched.RtpHeader(props)),
        wire,
        `packet ${i}: encrypt`,
      );
      const tampered = Buffer.from(wire);
      tampered[r.int(tampered.length)] ^= 1 << r.int(8);
      const cut = wire.subarray(0, r.int(wire.length));
      for (const [what, bytes] of [
        ['tampered', tampered],
        ['cut short', cut],
        ['decrypt', wire],
      ] as const) {
        const receive = (w: Werift) => received(w, receivers.get(w)!, bytes);
        // The header is read before authentication, without the tag.
        if (overruns(bytes.subarray(0, bytes.length - tagLength))) rejected(`packet ${i}: ${what}`, receive);
        else same(`packet ${i}: ${what}`, receive, (p) => [fields(p.header), p.payload]);
      }
    }
  });
}

test('uint32Add: the same sums, negative steps and wraps included', () => {
  const r = random(7);
  for (let i = 0; i < 10000; i++) {
    const a = r.int(2 ** 32);
    const b = i % 2 ? r.int(2 ** 32) : -r.int(2 ** 32);
    assert.equal(patched.uint32Add(a, b), released.uint32Add(a, b), `${a} + ${b}`);
  }
});

test('header extensions, packet clones and events: the same as released werift', async () => {
  const r = random(11);
  const uris = Object.values(patched.RTP_EXTENSION_URI);
  for (let i = 0; i < 3000; i++) {
    // Some ids mapped (to any URI, even twice), some not; payloads of any size, so that some fail to read.
    const idToUri: Record<number, string> = {};
    for (let id = 1; id <= 14; id++) if (r.int(2)) idToUri[id] = uris[r.int(uris.length)]!;
    const extensions = Array.from({ length: r.int(5) }, () => ({ id: 1 + r.int(15), payload: r.bytes(r.int(6)) }));
    same(`extensions ${i}`, (w) => w.rtpHeaderExtensionsParser(extensions, idToUri));
    const header = randomHeader(patched, r);
    const packet = Buffer.concat([header.serialize(header.serializeSize), r.bytes(r.int(40))]);
    same(`clone ${i}`, (w) => {
      const original = w.RtpPacket.deSerialize(packet);
      const copy = original.clone();
      copy.header.sequenceNumber = (copy.header.sequenceNumber + 1) & 0xffff; // a copy, not the same header
      return [fields(original.header), fields(copy.header), copy.payload === original.payload];
    });
  }
  // Listeners called alike: plain ones at once, queued ones in turn, each with every argument.
  const calls = async (w: Werift) => {
    const seen: string[] = [];
    const event = new w.Event<[number, string]>();
    event.subscribe((n, s) => seen.push(`plain ${n} ${s}`));
    event.queuingSubscribe(async (n, s) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      seen.push(`queued ${n} ${s}`);
    });
    event.execute(1, 'a');
    event.execute(2, 'b');
    seen.push('returned');
    await waitFor('the queued listeners', () => seen.filter((c) => c.startsWith('queued')).length === 2);
    const bare = new w.Event<[number]>();
    bare.subscribe((n) => seen.push(`bare ${n}`));
    bare.execute(3);
    return seen;
  };
  assert.deepEqual(await calls(patched), await calls(released));
});

interface ReceiveStatistics {
  jitter: number;
  packets_lost: number;
  packets_received: number;
  fraction_lost: number;
  bytesReceived: number;
  headerBytesReceived: number;
}

test('the receiver: the same statistics, and the same packets handed to its track, as released werift', () => {
  // A camera's packets (VP8) and its retransmissions (RTX) on their way in: some lost, some late,
  // arriving at uneven times (fractions of a millisecond: the jitter's arrival is truncated).
  const r = random(12);
  let at = 1.7e12;
  let seq = 1000;
  const arrivals: { at: number; packet: Buffer }[] = [];
  for (let i = 0; i < 2000; i++) {
    at += r.int(40_000) / 1000;
    const rtx = r.int(10) === 0;
    const header = new patched.RtpHeader({
      payloadType: rtx ? 97 : 96,
      sequenceNumber: rtx ? r.int(65536) : (seq = (seq + 1 + (r.int(8) === 0 ? r.int(3) : 0)) & 0xffff),
      timestamp: Math.floor(i / 3) * 6000 + r.int(2) * 90,
      ssrc: rtx ? 2222 : 1111,
      marker: i % 3 === 2,
    });
    arrivals.push({ at, packet: Buffer.concat([header.serialize(header.serializeSize), r.bytes(r.int(4) * 60)]) });
  }
  const receive = (w: Werift) => {
    const clock = Date.now;
    let now = 0;
    Date.now = () => now; // werift reads the arrival time from it
    const receiver = new w.RTCRtpReceiver({} as never, 'video', 1234);
    try {
      receiver.prepareReceive({
        codecs: [
          new w.RTCRtpCodecParameters({ payloadType: 96, mimeType: 'video/VP8', clockRate: 90000 }),
          new w.RTCRtpCodecParameters({
            payloadType: 97,
            mimeType: 'video/RTX',
            clockRate: 90000,
            parameters: 'apt=96',
          }),
        ],
        encodings: [{ ssrc: 1111, rtx: { ssrc: 2222 } }],
        headerExtensions: [],
      } as never);
      const track = new w.MediaStreamTrack({ kind: 'video', remote: true });
      receiver.trackBySSRC[1111] = track;
      const handed: unknown[] = [];
      track.onReceiveRtp.subscribe((p) => handed.push([fields(p.header), p.payload.toString('hex')]));
      for (const { at, packet } of arrivals) {
        now = at;
        receiver.handleRtpBySsrc(w.RtpPacket.deSerialize(packet), {});
      }
      // its per-stream statistics, as its receiver reports read them (private in werift's types)
      const streams = (receiver as unknown as { remoteStreams: Record<string, ReceiveStatistics> }).remoteStreams;
      const stats = Object.entries(streams).map(([ssrc, s]) => [
        ssrc,
        s.jitter,
        s.packets_lost,
        s.packets_received,
        s.fraction_lost,
        s.bytesReceived,
        s.headerBytesReceived,
      ]);
      return { handed, stats };
    } finally {
      Date.now = clock;
      receiver.stop();
    }
  };
  const mine = receive(patched);
  assert.deepEqual(mine, receive(released));
  assert.ok(mine.handed.length > 1800, `${mine.handed.length} packets handed on`);
  assert.ok(
    mine.stats.some(([, jitter]) => Number(jitter) > 0),
    'the jitter moved',
  );
});

/** Two werift peers connected on loopback through a data channel (ICE, DTLS, SCTP). */
async function connectedPeers(w: Werift) {
  const config = {
    iceServers: [],
    iceUseIpv6: false,
    iceAdditionalHostAddresses: ['127.0.0.1'],
    iceInterfaceAddresses: { udp4: '127.0.0.1' },
  };
  const offerer = new w.RTCPeerConnection(config);
  const answerer = new w.RTCPeerConnection(config);
  const close = async () => {
    await offerer.close();
    await answerer.close();
  };
  try {
    const channel = offerer.createDataChannel('x');
    const answered = new Promise<patched.RTCDataChannel>((resolve) => answerer.onDataChannel.subscribe(resolve));
    await offerer.setLocalDescription(await offerer.createOffer());
    await answerer.setRemoteDescription(offerer.localDescription!);
    await answerer.setLocalDescription(await answerer.createAnswer());
    await offerer.setRemoteDescription(answerer.localDescription!);
    await waitFor('the peers connect', () => answerer.connectionState === 'connected', 30_000);
    const other = await answered;
    await waitFor('the data channel opens', () => channel.readyState === 'open', 30_000);
    other.onMessage.subscribe((m) => other.send(m));
    let echoes = 0;
    channel.onMessage.subscribe(() => echoes++);
    /** Whether a message goes each way on the data channel (within 10 s: SCTP's first retransmission is at 3 s). */
    const talking = async () => {
      const before = echoes;
      try {
        channel.send('ping');
        await waitFor('the echo', () => echoes > before, 10_000);
        return true;
      } catch {
        return false;
      }
    };
    return { offerer, answerer, channel, echoed: () => echoes, talking, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A UDP socket on a free loopback port. */
async function loopbackSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return socket;
}

/** What a stranger who knows the answerer's port gets back, and how much of what it sends passes ICE. */
async function stranger(w: Werift): Promise<{ answers: number; passedIce: number }> {
  const { answerer, close } = await connectedPeers(w);
  const socket = await loopbackSocket();
  try {
    const sdp = answerer.localDescription!.sdp;
    const port = Number(/a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/.exec(sdp)![1]);
    const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)![1]!;
    const marker = randomBytes(40);
    marker[0] = 0x80; // an RTP version byte: not STUN, so ICE hands it on
    let passedIce = 0;
    answerer.iceTransports[0]!.connection.onData.subscribe((data: Buffer) => {
      if (data.equals(marker)) passedIce++;
    });
    let answers = 0;
    socket.on('message', () => answers++);
    // A binding request with the answerer's user name, without the password's MESSAGE-INTEGRITY.
    const username = Buffer.from(`${ufrag}:stranger`);
    const attr = Buffer.alloc(4 + Math.ceil(username.length / 4) * 4);
    attr.writeUInt16BE(0x0006, 0);
    attr.writeUInt16BE(username.length, 2);
    username.copy(attr, 4);
    const header = Buffer.alloc(20);
    header.writeUInt16BE(0x0001, 0);
    header.writeUInt16BE(attr.length, 2);
    header.writeUInt32BE(0x2112a442, 4);
    randomBytes(12).copy(header, 8);
    for (let i = 0; i < 5; i++) {
      socket.send(Buffer.concat([header, attr]), port, '127.0.0.1');
      socket.send(marker, port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 1000)); // a triggered check would have come by now
    return { answers, passedIce };
  } finally {
    socket.close();
    await close();
  }
}

test('ICE: a stranger gets no STUN answer without the password, and its datagrams stop at ICE', async () => {
  // Released werift answered anyone (and paired with them, checking back), and passed every
  // datagram on to DTLS and SRTP, whoever sent it.
  const before = await stranger(released);
  assert.ok(before.answers > 0 && before.passedIce > 0, `released werift: ${JSON.stringify(before)}`);
  assert.deepEqual(await stranger(patched), { answers: 0, passedIce: 0 });
});

test('DTLS: a ClientHello or an alert in the clear, past ICE, leaves a connected session as it was', async () => {
  // As from a spoofed source address on the pair: handed to the offerer's DTLS (the server side)
  // as ICE would hand it.
  const alert = Buffer.from([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0]); // close_notify (a warning), epoch 0
  const outcome = async (w: Werift, datagram: Buffer) => {
    const peers = await connectedPeers(w);
    try {
      assert.ok(await peers.talking(), 'the data channel works before');
      peers.offerer.iceTransports[0]!.connection.onData.execute(datagram);
      await new Promise((r) => setTimeout(r, 500));
      // An alert closed the DTLS transport (the SFU drops a participant whose transport closes);
      // a ClientHello cut the data channel.
      return (await peers.talking()) && peers.offerer.dtlsTransports[0]!.state === 'connected';
    } finally {
      await peers.close();
    }
  };
  for (const [what, datagram] of [
    ['ClientHello', dtlsClientHello()],
    ['alert', alert],
  ] as const) {
    assert.equal(await outcome(released, datagram), false, `released werift after a ${what}`);
    assert.equal(await outcome(patched, datagram), true, `patched werift after a ${what}`);
  }
});

/** werift's ICE socket (exported as `UdpTransport`; its types name the SCTP one). */
interface IceUdpTransport {
  socket: Socket;
  onData: (data: Buffer, addr: [string, number]) => void;
  init(): Promise<void>;
}
type IceUdpTransportClass = new (type: 'udp4', options: object) => IceUdpTransport;
const iceUdp = (w: Werift) => (w as unknown as { UdpTransport: IceUdpTransportClass }).UdpTransport;

test('ICE ports: a lost bind does not end the process, and a port taken after the probe is passed over', async () => {
  const holder = await loopbackSocket();
  const taken = holder.address().port;
  const local = { interfaceAddresses: { udp4: '127.0.0.1' } };
  try {
    // Released werift: the socket's 'error' has no listener, so a failed bind ends the process.
    const script = `const w = await import(${JSON.stringify(releasedWerift())});
      await new w.UdpTransport('udp4', ${JSON.stringify({ port: taken, ...local })}).init();`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.notEqual(child.status, 0, 'released werift survived a lost bind');
    assert.match(child.stderr, /EADDRINUSE/);

    const lost = new (iceUdp(patched))('udp4', { port: taken, ...local });
    await assert.rejects(lost.init(), { code: 'EADDRINUSE' });
    lost.socket.close();

    // The race made certain: another socket binds the port werift's probe found free, just
    // before werift's own bind (a range below Linux's ephemeral ports: nothing else takes them).
    const range = [31800, 31809];
    const transport = new (iceUdp(patched))('udp4', { portRange: range, ...local });
    const thief = createSocket('udp4');
    const bind = transport.socket.bind.bind(transport.socket) as (o: { port: number; address: string }) => void;
    let stolen = 0;
    transport.socket.bind = ((o: { port: number; address: string }) => {
      if (stolen) return bind(o);
      stolen = o.port;
      thief.bind(o.port, o.address, () => bind(o));
    }) as typeof transport.socket.bind;
    try {
      await transport.init();
      const port = transport.socket.address().port;
      assert.ok(stolen >= range[0]! && port > stolen && port <= range[1]!, `stolen ${stolen}, bound ${port}`);
      const got = new Promise<Buffer>((r) => (transport.onData = (data) => r(data)));
      holder.send('hello', port, '127.0.0.1');
      assert.equal(String(await got), 'hello');
    } finally {
      transport.socket.close();
      thief.close();
    }
  } finally {
    holder.close();
  }
});

test("NTP times are RFC 3550's: the fraction of a second in binary, not its decimal digits", () => {
  // werift stamps what it sends with ntpTime (the sender report that maps a stream's RTP time to
  // the wall clock, by which a browser lip-syncs a person's voice and camera; abs-send-time) and
  // reads a peer's sender reports with ntpTimeToEpochMs (getStats' remoteTimestamp).
  const check = (w: Werift) => {
    // werift's clock (performance's: the wall clock at the process's start, then monotonic),
    // away from a whole second, where whole seconds would pass for the time.
    const now = () => performance.timeOrigin + performance.now();
    while (Math.abs((now() % 1000) - 500) > 400);
    const before = now();
    const ntp = w.ntpTime();
    const after = now();
    const ms = Number(ntp >> 32n) * 1000 + (Number(ntp & 0xffffffffn) / 2 ** 32) * 1000 + Date.UTC(1900, 0, 1);
    // A browser's report, 0.75 s past a whole second (0xc0000000 / 2^32).
    const peer = w.ntpTimeToEpochMs((3_970_000_000n << 32n) | 0xc0000000n) - Date.UTC(1900, 0, 1);
    return { sent: ms >= before - 1 && ms <= after + 1, read: peer === 3_970_000_000_750 };
  };
  assert.deepEqual(check(released), { sent: false, read: false }, 'released werift writes and reads whole seconds');
  assert.deepEqual(check(patched), { sent: true, read: true });
});

/** What werift's SCTP association keeps of what its peer sent (its fields, as the patch names them). */
interface SctpReceiver {
  lastReceivedTsn: number;
  advertisedRwnd: number;
  sackMisOrdered: Set<number>;
  inboundStreams: Record<number, { reassembly: unknown[] }>;
  receiveDataChunk(chunk: object): void;
  receiveForwardTsnChunk(chunk: { cumulativeTsn: number; streams: [number, number][] }): void;
}
const WINDOW = 1024 * 1024; // werift's advertised receive window
const [END, BEGIN, UNORDERED] = [1, 2, 4]; // a DATA chunk's flags

/** A one-byte DATA chunk on stream 9 (flags: a whole unordered message unless told). */
const dataChunk = (
  tsn: number,
  { flags = BEGIN | END | UNORDERED, userData = randomBytes(1), streamSeqNum = 0 } = {},
) => ({
  tsn,
  streamId: 9,
  streamSeqNum,
  protocol: 53,
  flags,
  userData,
});

/**
 * Hands the answerer's association DATA chunks as packets from its peer would (TSNs from after
 * `from`, or after its cumulative TSN), and tells what it holds then.
 */
async function sctpHolds(w: Werift, chunks: (tsn: (n: number) => number) => object[], from?: number) {
  const peers = await connectedPeers(w);
  try {
    const sctp = (peers.answerer.sctpTransport as unknown as { sctp: SctpReceiver }).sctp;
    if (from !== undefined) sctp.lastReceivedTsn = from;
    const first = sctp.lastReceivedTsn;
    for (const chunk of chunks((n) => (first + n) >>> 0))
      if ('cumulativeTsn' in chunk) sctp.receiveForwardTsnChunk(chunk as { cumulativeTsn: number; streams: [] });
      else sctp.receiveDataChunk(chunk);
    const held = Object.values(sctp.inboundStreams).reduce((n, s) => n + s.reassembly.length, 0);
    return {
      bytes: WINDOW - sctp.advertisedRwnd,
      chunks: held,
      ahead: sctp.sackMisOrdered.size,
      cumulative: sctp.lastReceivedTsn,
    };
  } finally {
    await peers.close();
  }
}

test('SCTP: what a peer makes the receiver hold is bounded by its window; the cumulative TSN passes from 9 to 10', async () => {
  // A data channel's peer (in a call, anyone who joined) chose how much werift kept: fragments of a
  // message never ended, ordered messages after one never sent and TSNs far ahead were all held,
  // and each TSN ahead cost a sort of all of them.
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const attacks: Record<string, (tsn: (n: number) => number) => object[]> = {
    'a message never ended (3,000 fragments of 1,000 bytes)': (tsn) =>
      range(3000).map((i) => dataChunk(tsn(1 + i), { flags: i === 0 ? BEGIN : 0, userData: randomBytes(1000) })),
    'one-byte ordered messages after one never sent (5,000)': (tsn) =>
      range(5000).map((i) => dataChunk(tsn(1 + i), { flags: BEGIN | END, streamSeqNum: 1 + i })),
    'one-byte messages at every other TSN after one never sent (3,000)': (tsn) =>
      range(3000).map((i) => dataChunk(tsn(2 + 2 * i))),
    // 2^31 ahead is neither before nor after in serial number arithmetic (RFC 1982); each
    // FORWARD-TSN of one leaves the chunk before it 2^31 - 1 ahead, and frees the next slot
    'fragments of 1,000 bytes 2^31 TSNs ahead, each followed by a FORWARD-TSN of one (3,000)': (tsn) =>
      range(3000).flatMap((i) => [
        dataChunk(tsn(2 ** 31 + i), { flags: 0, userData: randomBytes(1000) }),
        { cumulativeTsn: tsn(1 + i), streams: [] },
      ]),
  };
  for (const [what, chunks] of Object.entries(attacks)) {
    const before = await sctpHolds(released, chunks);
    assert.ok(
      before.bytes > WINDOW || before.chunks > 2048 || before.ahead > 1024,
      `released werift, ${what}: ${JSON.stringify(before)}`,
    );
    const after = await sctpHolds(patched, chunks);
    assert.ok(
      after.bytes <= WINDOW && after.chunks <= 2048 && after.ahead <= 1024,
      `patched werift, ${what}: ${JSON.stringify(after)}`,
    );
  }

  // What a peer that keeps to the window sends still all arrives: 600 messages at once, one of
  // 60,000 bytes (55 fragments) among them; the receiver holds nothing once they have.
  const peers = await connectedPeers(patched);
  try {
    const before = peers.echoed();
    for (let i = 0; i < 600; i++) peers.channel.send(randomBytes(i === 300 ? 60_000 : 100));
    await waitFor('600 echoes', () => peers.echoed() === before + 600, 120_000);
    const sctp = (peers.answerer.sctpTransport as unknown as { sctp: SctpReceiver & { heldChunks: number } }).sctp;
    assert.deepEqual([sctp.heldChunks, sctp.advertisedRwnd], [0, WINDOW]);
  } finally {
    await peers.close();
  }

  // TSN 10 before 9 (any count gaining a digit): released werift sorted the TSNs as strings, and
  // its cumulative TSN stayed at 8 for good.
  const nineAfterTen = () => [dataChunk(10), dataChunk(9)];
  assert.equal((await sctpHolds(released, nineAfterTen, 8)).cumulative, 8);
  assert.equal((await sctpHolds(patched, nineAfterTen, 8)).cumulative, 10);
});

test('SCTP and data channels: what a peer sends that werift cannot take is dropped, not the end of the process', () => {
  // Each is handed to the SCTP association of a fresh peer connection in a process of its own, as
  // its DTLS transport would: released werift ends (an unhandled rejection, or for a chunk of
  // length 0 a loop that makes chunks until the heap runs out), the patched one lives.
  const script = `const [entry, input] = process.argv.slice(1);
    const w = await import(entry);
    const pc = new w.RTCPeerConnection();
    pc.createDataChannel('calls-dc');
    const sctp = pc.sctpTransport.sctp;
    const chunk = (type, body, length = 4 + body.length) => {
      const c = Buffer.alloc(4 + body.length + ((4 - (body.length % 4)) % 4));
      c[0] = type;
      c.writeUInt16BE(length, 2);
      body.copy(c, 4);
      return c;
    };
    const packet = (...chunks) => {
      const p = Buffer.concat([Buffer.alloc(12), ...chunks]);
      p.writeUInt16BE(5000, 0);
      p.writeUInt16BE(5000, 2);
      p.writeUInt32LE(w.crc32c(p), 8);
      return p;
    };
    const fromDtls = (p) => sctp.transport.dtls.dataReceiver(p);
    const inputs = {
      'a bad checksum': () => fromDtls(Buffer.concat([packet(chunk(0xc0, Buffer.alloc(4))).subarray(0, 8), Buffer.alloc(4, 1)])),
      'a chunk of length 0': () => fromDtls(packet(chunk(11, Buffer.alloc(0), 0))),
      'an unknown chunk type': () => fromDtls(packet(chunk(0xfe, Buffer.alloc(4)))),
      'an INIT with another chunk': () => fromDtls(packet(chunk(1, Buffer.alloc(16)), chunk(0xc0, Buffer.alloc(4)))),
      'a DATA_CHANNEL_ACK for no channel': () => sctp.onReceive.execute(9, 50, Buffer.from([2])),
    };
    inputs[input]();
    await new Promise((r) => setTimeout(r, 300));
    console.log('alive');
    process.exit(0);`;
  const lives = (entry: string, input: string) => {
    const child = spawnSync(
      process.execPath,
      ['--max-old-space-size=32', '--input-type=module', '-e', script, entry, input],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return child.status === 0 && child.stdout.trim() === 'alive';
  };
  for (const input of [
    'a bad checksum',
    'a chunk of length 0',
    'an unknown chunk type',
    'an INIT with another chunk',
    'a DATA_CHANNEL_ACK for no channel',
  ]) {
    assert.equal(lives(releasedWerift(), input), false, `released werift after ${input}`);
    assert.equal(lives(import.meta.resolve('werift'), input), true, `patched werift after ${input}`);
  }
});

test('RTCP: a packet is read to its own length; a NACK generator takes serial numbers; a NACKed packet is sent again once', async () => {
  // A compound of 300 empty NACKs (4-byte headers): each of released werift's parsers read on to
  // the compound's end, taking the headers after it as lost sequence numbers.
  const compound = Buffer.concat(Array.from({ length: 300 }, () => Buffer.of(0x81, 0xcd, 0, 0)));
  const lostIn = (w: Werift) =>
    w.RtcpPacketConverter.deSerialize(compound).reduce(
      (n, p) => n + ((p as { feedback?: { lost?: number[] } }).feedback?.lost?.length ?? 0),
      0,
    );
  assert.ok(lostIn(released) > 40_000, `released: ${lostIn(released)}`);
  assert.equal(lostIn(patched), 0);

  // 65535 then 65534, twice: released werift took 65534 for a packet 65,534 ahead, and marked
  // every number between lost (131,068 marks for five packets).
  const marks = (w: Werift) => {
    const { nack } = new w.RTCRtpReceiver({} as never, 'video', 1234) as unknown as {
      nack: { setLost(seq: number, n: number): void; addPacket(p: { header: object }): void };
    };
    let marked = 0;
    nack.setLost = () => void marked++;
    for (const sequenceNumber of [65535, 65534, 65535, 65534, 3])
      nack.addPacket({ header: { sequenceNumber, ssrc: 1 } });
    return marked;
  };
  assert.ok(marks(released) > 100_000, `released: ${marks(released)}`);
  assert.equal(marks(patched), 3, 'only 0, 1 and 2, lost between 65535 and 3');

  // One NACK naming a cached packet 1,000 times, then another at once: released werift sent it
  // 2,000 times.
  const resent = async (w: Werift) => {
    const sender = new w.RTCRtpSender('video') as unknown as {
      rtpCache: object[];
      dtlsTransport: object;
      handleRtcpPacket(p: unknown): void;
    };
    let sent = 0;
    sender.dtlsTransport = { sendRtp: async () => void sent++ };
    sender.rtpCache[500 % 128] = { header: { sequenceNumber: 500, serializeSize: 12 }, payload: Buffer.alloc(100) };
    const nack = () =>
      new w.RtcpTransportLayerFeedback({
        feedback: new w.GenericNack({ senderSsrc: 1, mediaSourceSsrc: 2, lost: Array(1000).fill(500) }),
      });
    const clock = Date.now;
    Date.now = () => 1000; // both at one time, however loaded the machine
    try {
      sender.handleRtcpPacket(nack());
      sender.handleRtcpPacket(nack());
    } finally {
      Date.now = clock;
    }
    await new Promise((r) => setImmediate(r));
    return sent;
  };
  assert.equal(await resent(released), 2000);
  assert.equal(await resent(patched), 1);
});

test("RTCP and SRTP: a TWCC claims no more received packets than it has deltas for; a peer's streams keep state for at most 4,096 SSRCs", () => {
  // A transport-wide feedback of 36 bytes whose eight run-length chunks say 65,528 packets were
  // received, and no delta for any: released werift made an object for each before giving up.
  const claims = Buffer.alloc(32);
  claims.writeUInt16BE(65_535, 10); // packet status count
  for (let i = 0; i < 8; i++) claims.writeUInt16BE((1 << 13) | 8191, 16 + 2 * i); // 8,191 received, small deltas
  const made = (w: Werift, data: Buffer) => {
    const assign = Object.assign;
    let deltas = 0;
    Object.assign = ((target: object, ...sources: object[]) => {
      if (target instanceof w.RecvDelta) deltas++;
      return assign(target, ...sources);
    }) as typeof Object.assign;
    try {
      w.TransportWideCC.deSerialize(data, new w.RtcpHeader({ type: 205, count: 15 }));
      return { deltas };
    } catch {
      return { deltas, threw: true };
    } finally {
      Object.assign = assign;
    }
  };
  assert.deepEqual(made(released, claims), { deltas: 8 * 8191, threw: true });
  assert.deepEqual(made(patched, claims), { deltas: 0, threw: true });
  // Feedback as a browser sends it reads the same on both.
  const feedback = new patched.TransportWideCC({
    senderSsrc: 1,
    mediaSourceSsrc: 2,
    baseSequenceNumber: 65_530,
    packetStatusCount: 12,
    referenceTime: 77,
    fbPktCount: 3,
    packetChunks: [new patched.RunLengthChunk({ packetStatus: 1, runLength: 12 })],
    recvDeltas: Array.from({ length: 12 }, (_, i) => new patched.RecvDelta({ type: 1, delta: 250 * i })),
  }).serialize();
  const read = (w: Werift) => {
    const { recvDeltas, packetStatusCount, baseSequenceNumber } = w.TransportWideCC.deSerialize(
      feedback.subarray(4),
      new w.RtcpHeader({ type: 205, count: 15 }),
    );
    return { packetStatusCount, baseSequenceNumber, deltas: recvDeltas.map((d) => d.delta) };
  };
  assert.deepEqual(read(patched), read(released));
  assert.equal(read(patched).deltas.length, 12);

  // Each SSRC a peer's authenticated packets name kept a state for good (its rollover counter):
  // 5,000 streams of one packet each kept 5,000. A stream known before the bound is still read.
  const streams = (w: Werift) => {
    const r = random(4096);
    const [key, salt, otherKey, otherSalt] = [r.bytes(16), r.bytes(14), r.bytes(16), r.bytes(14)];
    const profile = patched.ProtectionProfileAes128CmHmacSha1_80;
    const sender = new w.SrtpSession({
      keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: otherKey, remoteMasterSalt: otherSalt },
      profile,
    });
    const receiver = new w.SrtpSession({
      keys: { localMasterKey: otherKey, localMasterSalt: otherSalt, remoteMasterKey: key, remoteMasterSalt: salt },
      profile,
    });
    const packet = (ssrc: number, sequenceNumber: number) =>
      sender.encrypt(Buffer.alloc(20), new w.RtpHeader({ ssrc, sequenceNumber, payloadType: 111 }));
    let read = 0;
    for (let ssrc = 1; ssrc <= 5000; ssrc++) {
      try {
        receiver.decrypt(packet(ssrc, 1));
        read++;
      } catch {}
    }
    const states = Object.keys((receiver.remoteContext as unknown as { srtpSSRCStates: object }).srtpSSRCStates);
    return { read, states: states.length, first: receiver.decrypt(packet(1, 2)).length };
  };
  assert.deepEqual(streams(released), { read: 5000, states: 5000, first: 32 });
  assert.deepEqual(streams(patched), { read: 4096, states: 4096, first: 32 });
});

test('a peer opens at most 64 data channels, and names at most 128 ICE candidates, a repeated one once', async () => {
  const bounds = async (w: Werift) => {
    const pc = new w.RTCPeerConnection();
    pc.createDataChannel('calls-dc');
    const sctp = pc.sctpTransport as unknown as {
      sctp: { onReceive: { execute(id: number, ppid: number, data: Buffer): void } };
      dataChannels: Record<number, unknown>;
      dtlsTransport: { iceTransport: { connection: patched.Connection } };
    };
    try {
      // DATA_CHANNEL_OPEN (DCEP, ppid 50) on 100 odd streams: each a channel of the peer's
      const open = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]), Buffer.from('a')]);
      for (let i = 0; i < 100; i++) sctp.sctp.onReceive.execute(2 * i + 1, 50, open);
      await new Promise((r) => setTimeout(r, 100));
      const ice = sctp.dtlsTransport.iceTransport.connection;
      const candidate = (port: number) =>
        w.Candidate.fromSdp(`candidate:1 1 udp 2122260223 127.0.0.1 ${port} typ host`);
      // the same candidate in ten offers (a renegotiation repeats them), then 200 others
      for (let i = 0; i < 10; i++) await ice.addRemoteCandidate(candidate(40000));
      const repeated = ice.remoteCandidates.length;
      for (let i = 0; i < 200; i++) await ice.addRemoteCandidate(candidate(41000 + i));
      return { channels: Object.keys(sctp.dataChannels).length, repeated, candidates: ice.remoteCandidates.length };
    } finally {
      await pc.close();
    }
  };
  assert.deepEqual(await bounds(released), { channels: 100, repeated: 10, candidates: 210 });
  assert.deepEqual(await bounds(patched), { channels: 64, repeated: 1, candidates: 128 });
});

test('ICE restarts: a peer restarting with every offer leaves the passwords of 4 generations, not of each', async () => {
  const history = async (w: Werift) => {
    const ice = new w.Connection(false, {});
    const kept = () => (ice as unknown as { userHistory: Record<string, string> }).userHistory;
    const names: string[] = [];
    let currentKept = true;
    try {
      // 4 hex characters: about one in seven is a name such as "1234", which an object lists first
      for (let i = 0; i < 200; i++) {
        await ice.restart();
        names.push(ice.localUsername);
        currentKept &&= kept()[ice.localUsername] === ice.localPassword;
      }
      const last4 = new Set(names.slice(-4));
      return {
        generations: Object.keys(kept()).length,
        currentKept,
        onlyTheLast: Object.keys(kept()).every((k) => last4.has(k)),
      };
    } finally {
      await ice.close();
    }
  };
  const before = await history(released);
  assert.ok(before.generations > 150, `${before.generations} kept by released werift`);
  const after = await history(patched);
  assert.ok(after.generations <= 4 && after.currentKept && after.onlyTheLast, JSON.stringify(after));
});
