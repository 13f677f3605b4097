/** A throwaway self-signed CA certificate, generated at load: Vault wants some PEM as kubernetes_ca_cert. */
import { makeRoot } from './test-pki.js';

export const DUMMY_CA_PEM = (await makeRoot('CN=Dummy Kubernetes CA')).pem;
