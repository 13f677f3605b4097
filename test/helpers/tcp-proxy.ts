/**
 * A loopback TCP proxy between an agent and OpenBao, to cut or slow the path to Vault on demand:
 * 'pass' forwards, 'refuse' resets every connection at once (and drops open ones), 'stall' accepts and
 * never forwards (a black hole: the agent's timeout must fire).
 *
 * Given several targets it is a round-robin front (an L4 load balancer such as a Kubernetes Service or
 * an nginx `stream` block): each new connection goes to the next target, and a target that refuses the
 * connection hands it to the following one (nginx's default `proxy_next_upstream`); a target that dies
 * while a connection is open drops that connection. `onRequest` sees each plain-HTTP request line
 * (`POST /v1/pki/root/sign-intermediate`) before it is forwarded, so a test can act at that exact moment.
 */
import net from 'node:net';

export type ProxyMode = 'pass' | 'refuse' | 'stall';

export interface TcpProxy {
  url: string;
  mode: ProxyMode;
  connections: number;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Called synchronously with each HTTP request line seen from a client, before it is forwarded. */
  onRequest?(method: string, path: string): void;
}

/** Request lines at the start of a chunk or after a CRLF (a new request on a kept-alive connection). */
const REQUEST_LINE = /(?:^|\r\n)(GET|POST|PUT|DELETE|LIST|HEAD) (\/\S*) HTTP\/1\.[01]\r\n/g;

export async function startTcpProxy(target: string | readonly string[], opts: TcpProxyOptions = {}): Promise<TcpProxy> {
  const targets = (typeof target === 'string' ? [target] : target).map((t) => new URL(t));
  const open = new Set<net.Socket>();
  let turn = 0;
  const proxy: TcpProxy = {
    url: '',
    mode: 'pass',
    connections: 0,
    setMode(mode) {
      proxy.mode = mode;
      if (mode !== 'pass') for (const s of open) s.destroy();
    },
    close: async () => undefined,
  };
  const track = (s: net.Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  };
  const server = net.createServer((client) => {
    proxy.connections++;
    track(client);
    client.on('error', () => undefined);
    if (proxy.mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    if (proxy.mode === 'stall') return;
    // Client bytes wait here until an upstream accepts the connection.
    let pending: Buffer[] | undefined = [];
    let upstream: net.Socket | undefined;
    let clientEnded = false;
    client.on('end', () => (upstream ? upstream.end() : (clientEnded = true)));
    client.on('data', (chunk: Buffer) => {
      if (opts.onRequest) for (const m of chunk.toString('latin1').matchAll(REQUEST_LINE)) opts.onRequest(m[1]!, m[2]!);
      if (pending) pending.push(chunk);
      else upstream!.write(chunk);
    });
    const first = turn++ % targets.length;
    const connect = (attempt: number) => {
      const t = targets[(first + attempt) % targets.length]!;
      const up = net.connect(Number(t.port), t.hostname);
      track(up);
      up.once('connect', () => {
        upstream = up;
        for (const c of pending!) up.write(c);
        pending = undefined;
        up.on('data', (d: Buffer) => client.write(d));
        up.on('end', () => client.end());
        if (clientEnded) up.end();
        up.on('close', () => client.destroy());
        client.on('close', () => up.destroy());
      });
      up.on('error', () => {
        if (upstream === undefined && attempt + 1 < targets.length && !client.destroyed) connect(attempt + 1);
        else client.destroy();
      });
    };
    connect(0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  proxy.url = `${targets[0]!.protocol}//127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    });
  return proxy;
}
