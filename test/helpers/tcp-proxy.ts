/**
 * A loopback TCP proxy between an agent and OpenBao, to cut or slow the path to Vault on demand:
 * 'pass' forwards, 'refuse' resets every connection at once (and drops open ones), 'stall' accepts and
 * never forwards (a black hole: the agent's timeout must fire).
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

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const t = new URL(target);
  const open = new Set<net.Socket>();
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
  const server = net.createServer((client) => {
    proxy.connections++;
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => undefined);
    if (proxy.mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    if (proxy.mode === 'stall') return;
    const upstream = net.connect(Number(t.port), t.hostname);
    open.add(upstream);
    upstream.on('close', () => open.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.url = `${t.protocol}//127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    });
  return proxy;
}
