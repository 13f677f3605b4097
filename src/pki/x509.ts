/**
 * @peculiar/x509 set-up, done once: it needs reflect-metadata loaded before it and a WebCrypto provider.
 * Every pki module imports x509 from here so the order can never be wrong.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
