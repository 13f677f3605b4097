/**
 * The three long-lived commands, each returning its exit code: `init` (0 ok, 1 failed), `sidecar` and
 * `run` (0 after a clean shutdown, 1 when `run`'s first issuance fails). Process signals are the CLI's;
 * they arrive here as an AbortSignal (SIGTERM/SIGINT) and rotation requests (SIGHUP).
 */
import type { Logger } from 'pino';
import { isAbort } from '../common/abort.js';
import { describeError } from '../common/errors.js';
import type { Settings } from '../config.js';
import { startHttpServer, type RunningServer } from '../telemetry/http-server.js';
import type { AgentMetrics } from '../telemetry/metrics.js';
import { createAgent, type Agent, type Runtime } from './compose.js';
import { runInit } from './init-mode.js';
import { RenewalLoop } from './renewal-loop.js';
import { renewBeforeWarning } from './renewal-policy.js';

export interface Control {
  /** Aborts on SIGTERM/SIGINT. */
  shutdown: AbortSignal;
  /** Registers the handler SIGHUP calls. */
  onRotate(handler: (source: string) => void): void;
}

export interface ModeContext {
  settings: Settings;
  runtime: Runtime;
  log: Logger;
  metrics: AgentMetrics;
  control: Control;
}

function warnSettings(ctx: ModeContext): void {
  const w = renewBeforeWarning(ctx.settings.renewBeforeMs, ctx.settings.certTtlMs);
  if (w) ctx.log.warn({ setting: 'RENEW_BEFORE' }, w);
}

async function firstIssuance(agent: Agent, ctx: ModeContext): Promise<number> {
  const res = await runInit(agent.renewer, { clock: ctx.runtime.clock, random: ctx.runtime.random, log: ctx.log }, { timeoutMs: ctx.settings.initTimeoutMs, signal: ctx.control.shutdown });
  if (res.ok) return 0;
  ctx.log.error({ reason: res.error.reason, code: res.error.code }, `init failed: ${describeError(res.error)}`);
  return 1;
}

/** `init`: exit 0 once the cert dir holds a bundle istiod can use. */
export async function initCommand(ctx: ModeContext): Promise<number> {
  warnSettings(ctx);
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: false });
  try {
    return await firstIssuance(agent, ctx);
  } catch (err) {
    if (isAbort(err)) return 1;
    throw err;
  } finally {
    // The token is only needed again by the sidecar, which logs in itself.
    await agent.close();
  }
}

async function serve(ctx: ModeContext, agent: Agent, loop: RenewalLoop): Promise<RunningServer | undefined> {
  const addr = ctx.settings.metricsAddr;
  if (!addr) return undefined;
  const server = await startHttpServer({
    host: addr.host,
    port: addr.port,
    registry: ctx.metrics.registry,
    isReady: () => agent.renewer.isReadyOnDisk(),
    ...(ctx.settings.rotateEndpoint ? { rotate: () => loop.requestRotation('POST /rotate') } : {}),
  });
  ctx.log.info({ addr: `${addr.host}:${server.port}` }, 'serving /metrics, /healthz, /readyz');
  return server;
}

async function loopUntilShutdown(ctx: ModeContext, agent: Agent, opts: { firstIssuance: boolean }): Promise<number> {
  const loop = new RenewalLoop({
    renewer: agent.renewer,
    clock: ctx.runtime.clock,
    random: ctx.runtime.random,
    log: ctx.log,
    metrics: ctx.metrics,
    ...(ctx.settings.istiodMetricsUrl ? { istiod: { url: ctx.settings.istiodMetricsUrl, timeoutMs: ctx.settings.istiodSyncTimeoutMs, fetchText: ctx.runtime.fetchText } } : {}),
  });
  ctx.control.onRotate((source) => loop.requestRotation(source));
  let server: RunningServer | undefined;
  try {
    server = await serve(ctx, agent, loop);
    if (opts.firstIssuance) {
      const code = await firstIssuance(agent, ctx);
      if (code !== 0 || ctx.control.shutdown.aborted) return ctx.control.shutdown.aborted ? 0 : code;
    }
    await loop.run(ctx.control.shutdown);
    ctx.log.info({}, 'shutting down');
    return 0;
  } catch (err) {
    if (isAbort(err)) return 0;
    throw err;
  } finally {
    await Promise.all([server?.close(), agent.close()]);
  }
}

/** `sidecar`: adopt the bundle on disk and keep it renewed until SIGTERM. */
export async function sidecarCommand(ctx: ModeContext): Promise<number> {
  warnSettings(ctx);
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: true });
  return loopUntilShutdown(ctx, agent, { firstIssuance: false });
}

/** `run`: `init` then `sidecar` in one process (Kubernetes native sidecar); /readyz turns 200 after the first publish. */
export async function runCommand(ctx: ModeContext): Promise<number> {
  warnSettings(ctx);
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: true });
  return loopUntilShutdown(ctx, agent, { firstIssuance: true });
}
