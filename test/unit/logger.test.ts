import { describe, expect, it } from 'vitest';
import { AgentError } from '../../src/common/errors.js';
import { serializeError } from '../../src/telemetry/logger.js';
import { captureLog } from '../helpers/log-sink.js';

describe('logger', () => {
  it('writes JSON lines with a level name, a time and the component', () => {
    const cap = captureLog('info');
    cap.log.info({ serial: 'AB' }, 'published');
    cap.log.debug({}, 'hidden at info');
    expect(cap.lines).toHaveLength(1);
    expect(cap.lines[0]).toMatchObject({ level: 'info', component: 'istiod-vault-agent', serial: 'AB', msg: 'published' });
    expect(String(cap.lines[0]!.time)).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it.each([
    [{ token: 'hvs.SECRET' }],
    [{ auth: { client_token: 'hvs.SECRET' } }],
    [{ body: { jwt: 'eyJ.SECRET.sig' } }],
    [{ req: { secret_id: 'SECRET' } }],
    [{ files: { caKey: '-----BEGIN PRIVATE KEY-----SECRET' } }],
    [{ headers: { 'x-vault-token': 'hvs.SECRET' } }],
  ])('redacts secret fields wherever they are: %j', (fields) => {
    const cap = captureLog('info');
    cap.log.info(fields, 'x');
    expect(cap.text()).not.toContain('SECRET');
    expect(cap.text()).toContain('[REDACTED]');
  });

  it('serialises errors to their safe facts only, with the cause chain in the message', () => {
    const inner = Object.assign(new Error('socket hang up'), { config: { headers: { 'X-Vault-Token': 'hvs.SECRET' } } });
    const err = new AgentError('while signing at pki/root/sign-intermediate: failed', { code: 'VAULT_UNREACHABLE', reason: 'vault_unreachable', retryable: true, cause: inner });
    const out = serializeError(err);
    expect(out).toEqual({ message: 'while signing at pki/root/sign-intermediate: failed: caused by: socket hang up', type: 'AgentError', code: 'VAULT_UNREACHABLE', reason: 'vault_unreachable', retryable: true });
    const cap = captureLog('info');
    cap.log.error({ err }, 'failed');
    expect(cap.text()).not.toContain('SECRET');
    expect(cap.text()).not.toContain('"stack"');
  });
});
