/**
 * The agent's commands, each returning its exit code: `init` (0 ok, 1 failed), `sidecar` and
 * `run` (0 after a clean shutdown, 1 when `run`'s first issuance fails). Process signals are the CLI's;
 * they arrive here as an AbortSignal (SIGTERM/SIGINT) and rotation requests (SIGHUP).
 */
import type { Logger } from 'pino';
import { isAbort } from '../common/abort.js';
import type { Settings } from '../config/settings.js';
import type { RunningServer } from '../telemetry/http-server.js';
import type { Registry } from 'prom-client';
import type { MetricsRecorder } from '../telemetry/metrics.js';
import { createAgent, type Agent, type Runtime } from './compose.js';
import { ensureFirstBundle } from './first-bundle.js';
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
  metrics: MetricsRecorder;
  /** What /metrics serves (the registry `metrics` records into); undefined for `init`, which serves none. */
  registry: Registry | undefined;
  control: Control;
  /** Set by `dev`: the settings it chose itself (it does not warn about its own choices). */
  dev?: { chosen: readonly string[] };
}

function warnSettings(ctx: ModeContext): void {
  if (ctx.dev?.chosen.includes('RENEW_BEFORE')) return;
  const w = renewBeforeWarning(ctx.settings.renewBeforeMs, ctx.settings.certTtlMs);
  if (w) ctx.log.warn({ setting: 'RENEW_BEFORE' }, w);
}

async function firstIssuance(agent: Agent, ctx: ModeContext): Promise<number> {
  // ensureFirstBundle logs the final failure itself, once.
  const res = await ensureFirstBundle(agent.keeper, { clock: ctx.runtime.clock, random: ctx.runtime.random, log: ctx.log }, { timeoutMs: ctx.settings.initTimeoutMs, signal: ctx.control.shutdown });
  return res.ok ? 0 : 1;
}

/** `init`: exit 0 once the cert dir holds a bundle istiod can use. */
export async function initCommand(ctx: ModeContext): Promise<number> {
  warnSettings(ctx);
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: false, dev: ctx.dev !== undefined });
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
  if (!ctx.registry) throw new Error('METRICS_ADDR is set but this mode records no metrics');
  // Imported here: only long-running modes with METRICS_ADDR serve (and src/main.ts on node:http).
  const { startHttpServer } = await import('../telemetry/http-server.js');
  const server = await startHttpServer({
    host: addr.host,
    port: addr.port,
    registry: ctx.registry,
    isReady: () => agent.keeper.isReadyOnDisk(),
    ...(ctx.settings.rotateEndpoint ? { rotate: () => loop.requestRotation('POST /rotate') } : {}),
  });
  ctx.log.info({ addr: `${addr.host}:${server.port}` }, 'serving /metrics, /healthz, /readyz');
  return server;
}

/**
 * AUTH_METHOD=token: the agent cannot log in again, so a token that runs out before the next renewal
 * means a failed renewal later; say so now, while there is time to hand it a better one.
 */
async function warnTokenLifetime(ctx: ModeContext, agent: Agent): Promise<void> {
  if (ctx.settings.authMethod !== 'token') return;
  const renewAt = agent.keeper.renewAt;
  const token = await agent.vault.describeToken(ctx.control.shutdown).catch(() => undefined);
  // A lookup that fails is reported by the issuance that needs the token.
  if (!token || renewAt === undefined) return;
  const fields = { setting: 'VAULT_TOKEN', tokenExpiresAt: token.expiresAt === undefined ? 'never' : new Date(token.expiresAt).toISOString(), renewAt: new Date(renewAt).toISOString(), renewable: token.renewable };
  if (token.expiresAt === undefined || token.expiresAt > renewAt) ctx.log.info(fields, 'VAULT_TOKEN lives past the next renewal');
  else if (token.renewable) ctx.log.info(fields, 'VAULT_TOKEN expires before the next renewal; the agent renews it as it goes (up to its max TTL)');
  else ctx.log.warn(fields, 'VAULT_TOKEN expires before the next renewal and cannot be renewed, so that renewal will fail: give the agent a longer-lived or renewable token, or use kubernetes or jwt auth');
}

async function loopUntilShutdown(ctx: ModeContext, agent: Agent, opts: { firstIssuance: boolean }): Promise<number> {
  const loop = new RenewalLoop({
    keeper: agent.keeper,
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
    } else {
      await loop.adopt();
    }
    // From here on istiod may be running on what is published (the sidecar starts beside it).
    agent.keeper.markIstiodRunning();
    await warnTokenLifetime(ctx, agent);
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
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: true, dev: ctx.dev !== undefined });
  return loopUntilShutdown(ctx, agent, { firstIssuance: false });
}

/** `run`: `init` then `sidecar` in one process (Kubernetes native sidecar); /readyz turns 200 after the first publish. */
export async function runCommand(ctx: ModeContext): Promise<number> {
  warnSettings(ctx);
  const agent = await createAgent(ctx.settings, ctx.runtime, ctx.log, ctx.metrics, { watch: true, dev: ctx.dev !== undefined });
  return loopUntilShutdown(ctx, agent, { firstIssuance: true });
}
