/** Types of infra.js, for the tests that start private servers through it. */
export function ensureInfrastructure(): Promise<() => void>;
export function reachable(host: string, port: number, timeoutMs?: number): Promise<boolean>;

export interface LocalPostgres {
  start(): Promise<void>;
  /** "fast" disconnects clients and shuts down cleanly; "immediate" aborts, as a crash would. */
  stop(mode?: "smart" | "fast" | "immediate"): void;
}
export function localPostgres(dir: string, host: string, port: number, say?: (msg: string) => void): LocalPostgres;

export interface LocalNats {
  start(options?: { detached?: boolean }): Promise<void>;
  /** Resolves once the server has exited; SIGKILL is a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}
export function localNats(dir: string, host: string, port: number, say?: (msg: string) => void): LocalNats;
