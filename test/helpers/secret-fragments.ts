/**
 * Secret material to search test output (log lines, /metrics, evidence) for, in one place: what counts
 * as a trace of a private key, a Vault token or a service-account JWT.
 */

/** Secret material to search agent output for. */
export interface Secrets {
  tokens: Iterable<string>;
  jwts: Iterable<string>;
  privateKeys: Iterable<string>;
}

/** Distinctive pieces of a PEM key: each full base64 line of its body. */
function keyFragments(pem: string): string[] {
  return pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
}

/** A JWT's claims segment: distinctive on its own (a log of the token's middle part). */
function jwtClaims(jwt: string): string | undefined {
  return jwt.split('.')[1] || undefined;
}

/** Names the kinds of secret found in `text` (never the secret itself); [] when clean. */
export function findSecrets(text: string, s: Secrets): string[] {
  const found: string[] = [];
  if (text.includes('PRIVATE KEY')) found.push('a PEM "PRIVATE KEY" label');
  for (const t of s.tokens) if (t.length >= 8 && text.includes(t)) found.push('a Vault token');
  for (const j of s.jwts) {
    const claims = jwtClaims(j);
    if (text.includes(j)) found.push('the service-account JWT');
    else if (claims !== undefined && text.includes(claims)) found.push('the JWT claims segment');
  }
  for (const k of s.privateKeys) if (keyFragments(k).some((f) => text.includes(f))) found.push('a fragment of a published private key');
  return [...new Set(found)];
}
