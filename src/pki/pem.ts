/** PEM helpers. Nothing here trusts its input: malformed text yields errors, never partial output. */

// Like Go's pem.Decode: trailing blanks after the armour lines and inside the base64 are tolerated
// (ConfigMaps edited by hand often have them).
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[ \t]*\r?\n([A-Za-z0-9+/=\s]+?)-----END \1-----/g;

export interface PemBlock {
  label: string;
  der: Buffer;
}

/** All PEM blocks in `text`, in order. Text between blocks is ignored, as Go's pem.Decode does. */
export function pemBlocks(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    out.push({ label: m[1]!, der: Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64') });
  }
  return out;
}

/** Canonical PEM for one DER block: 64-column base64, LF line ends, trailing newline. */
export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
