/**
 * Defaults for `dev`: a short lifetime so rotation can be watched, files in ./cacerts. Apart from the
 * command, so that naming them does not load the dev OpenBao launcher (child_process).
 */
export const DEV_DEFAULTS: Readonly<Record<string, string>> = {
  CERT_DIR: 'cacerts',
  CERT_TTL: '3m',
  RENEW_BEFORE: '2m',
  KEY_TYPE: 'ec',
  METRICS_ADDR: '127.0.0.1:15099',
  ISTIOD_METRICS_URL: '',
  ROTATE_ENDPOINT: 'true',
};
