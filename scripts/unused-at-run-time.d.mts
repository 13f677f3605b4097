import type { Plugin } from 'esbuild';

/** Package name -> why it is never called. */
export declare const UNUSED_AT_RUN_TIME: Record<string, string>;
/** esbuild plugin: resolves each package of UNUSED_AT_RUN_TIME to its throwing stub. */
export declare const unusedAtRunTime: Plugin;
