// Types of the shmkv Node.js binding (index.js, cache.js, keyv.js,
// session-store.js). TTLs are milliseconds; 0 or undefined: no expiry.
import { EventEmitter } from 'node:events';

/** A key or value: strings are stored as UTF-8. */
export type Bytes = string | ArrayBufferView | ArrayBuffer;
/** A value: numbers and bigints are stored as decimal text. */
export type Value = Bytes | number | bigint;

export interface CacheOptions {
  /** Create the segment if missing (default true; false with readonly). */
  create?: boolean;
  /** With create: fail with SHMKV_EEXIST if the segment exists. */
  exclusive?: boolean;
  readonly?: boolean;
  /** Size of a new segment: bytes or "64M" (default 64 MiB). */
  memory?: number | string;
  maxItems?: number | string;
  maxKeyLen?: number;
  maxValueLen?: number | string;
  /** File mode of a new segment (default 0o600). */
  mode?: number;
  evictPolicy?: 'allkeys' | 'volatile' | 'none';
  preciseClock?: boolean;
}

export interface SetOptions {
  ttl?: number;
  /** Store only if absent. */
  nx?: boolean;
  /** Store only if present. */
  xx?: boolean;
  /** Keep the entry's current TTL. */
  keepTtl?: boolean;
  /** 32 user bits stored with the value (see gets). */
  flags?: number;
  noEvict?: boolean;
}

export interface Item<V = Buffer> {
  value: V;
  /** Version token: changes on every write of the key. */
  cas: bigint;
  /** Remaining ms, -1 for no expiry. */
  ttl: number;
  flags: number;
}

/** getStale's answer. */
export interface StaleItem<V = Buffer> {
  value: V;
  /** How long ago the entry expired, in ms; 0 if it has not. */
  expiredMs: number;
}

/** throttle's decision. */
export interface ThrottleResult {
  allowed: boolean;
  /** 0 when allowed, else ms until one request would be (rounded up). */
  retryAfterMs: number;
  /** How many more requests would be allowed right now. */
  remaining: number;
}

export interface ComputeOptions {
  /** TTL of the computed value (default: none). */
  ttl?: number;
  /** How long the computing caller holds the lease (default 10000 ms). */
  lease?: number;
  /** How long the others wait before rejecting with SHMKV_EBUSY (default 10000 ms). */
  wait?: number;
  /** Resolve at once to an expired value still in memory while another caller computes. */
  serveStale?: boolean;
  /** Resolve to a string instead of a Buffer. */
  string?: boolean;
}

export interface Stats {
  memoryBytes: number;
  memoryUsed: number;
  items: number;
  capacityItems: number;
  gets: number;
  hits: number;
  misses: number;
  sets: number;
  deletes: number;
  incrs: number;
  casFailures: number;
  evictions: number;
  expirations: number;
  recoveredProcesses: number;
  attachedProcesses: number;
}

/** Thrown by a failed call: code is the library's name for errno. */
export interface ShmkvError extends Error {
  code: string;
  errno: number;
}

export class Cache {
  constructor(name: string, options?: CacheOptions);
  static unlink(name: string): boolean;
  readonly name: string;
  readonly closed: boolean;
  get(key: Bytes): Buffer | undefined;
  getString(key: Bytes): string | undefined;
  has(key: Bytes): boolean;
  set(key: Bytes, value: Value, options?: SetOptions | number): boolean;
  add(key: Bytes, value: Value, options?: Omit<SetOptions, 'nx' | 'xx'> | number): boolean;
  replace(key: Bytes, value: Value, options?: Omit<SetOptions, 'nx' | 'xx'> | number): boolean;
  gets(key: Bytes, options?: { string?: false }): Item<Buffer> | undefined;
  gets(key: Bytes, options: { string: true }): Item<string> | undefined;
  getStale(key: Bytes, options?: { string?: false }): StaleItem<Buffer> | undefined;
  getStale(key: Bytes, options: { string: true }): StaleItem<string> | undefined;
  cas(key: Bytes, value: Value, token: bigint, options?: Omit<SetOptions, 'nx' | 'xx'> | number): boolean;
  delete(key: Bytes): boolean;
  /**
   * A missing key counts as initial (default 0): the first incr stores
   * initial + by (Redis's rule). A number result, or a bigint when by/initial is a bigint or the
   * result is beyond Number.MAX_SAFE_INTEGER.
   */
  incr(key: Bytes, by?: number, options?: { initial?: number; ttl?: number }): number | bigint;
  incr(key: Bytes, by: bigint, options?: { initial?: number | bigint; ttl?: number }): bigint;
  decr(key: Bytes, by?: number, options?: { initial?: number; ttl?: number }): number | bigint;
  decr(key: Bytes, by: bigint, options?: { initial?: number | bigint; ttl?: number }): bigint;
  touch(key: Bytes, ttl: number): boolean;
  ttl(key: Bytes): number | undefined;
  /** GCRA: bursts of up to burst requests, then rate per periodMs, across all processes. */
  throttle(key: Bytes, rate: number | bigint, periodMs: number | bigint, burst: number | bigint): ThrottleResult;
  /** On a miss, exactly one caller across all processes runs fn; the others wait for its value. */
  getOrCompute(key: Bytes, fn: () => Value | PromiseLike<Value>,
    options?: ComputeOptions & { string?: false }): Promise<Buffer>;
  getOrCompute(key: Bytes, fn: () => Value | PromiseLike<Value>,
    options: ComputeOptions & { string: true }): Promise<string>;
  mget(keys: Bytes[], options?: { string?: false }): Array<Buffer | undefined>;
  mget(keys: Bytes[], options: { string: true }): Array<string | undefined>;
  mgetItems(keys: Bytes[]): Array<{ value: Buffer; flags: number } | undefined>;
  scan(prefix?: Bytes, options?: { count?: number; buffer?: false }): Generator<string, void, undefined>;
  scan(prefix: Bytes, options: { count?: number; buffer: true }): Generator<Buffer, void, undefined>;
  keys(prefix?: Bytes, options?: { count?: number; buffer?: false }): string[];
  keys(prefix: Bytes, options: { count?: number; buffer: true }): Buffer[];
  clear(): void;
  stats(): Stats;
  recover(): number;
  close(): void;
}

export function unlink(name: string): boolean;
export function parseSize(value: number | bigint | string, what?: string): number;
export const version: string;
/** SHMKV_E* name -> numeric code. */
export const codes: Readonly<Record<string, number>>;

export interface KeyvShmkvOptions extends CacheOptions {
  /** "shmkv://NAME", "shmkv:///dev/shm/file" or "NAME". */
  url?: string;
  /** Segment name when there is no url (default "keyv"). */
  segment?: string;
  /** An open Cache to use (not closed by disconnect()). */
  cache?: Cache;
  /** Let keyv 5 wire keyv.iterator() to this store (see keyv.js). */
  keyvIterator?: boolean;
}

export class KeyvShmkv extends EventEmitter {
  constructor(url?: string | KeyvShmkvOptions, options?: KeyvShmkvOptions);
  opts: KeyvShmkvOptions & { url: string; dialect: string; segment: string };
  namespace?: string;
  cache: Cache;
  get(key: string): Promise<unknown>;
  getMany(keys: string[]): Promise<unknown[]>;
  set(key: string, value: unknown, ttl?: number): Promise<boolean>;
  setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<boolean[]>;
  delete(key: string): Promise<boolean>;
  deleteMany(keys: string[]): Promise<boolean>;
  has(key: string): Promise<boolean>;
  hasMany(keys: string[]): Promise<boolean[]>;
  clear(): Promise<void>;
  iterator(namespace?: string): AsyncGenerator<[string, unknown], void, undefined>;
  disconnect(): Promise<void>;
}

export interface ShmkvStoreOptions extends CacheOptions {
  cache?: Cache;
  /** Default "sessions". */
  segment?: string;
  /** Default "sess:". */
  prefix?: string;
  /** ms for a cookie without expiry (default one day). */
  ttl?: number;
  serializer?: { stringify(value: unknown): string; parse(text: string): any };
  disableTouch?: boolean;
}

/** An express-session Store (extends session.Store). */
export class ShmkvStore extends EventEmitter {
  constructor(options?: ShmkvStoreOptions);
  cache: Cache;
  get(sid: string, cb: (err: any, session?: any) => void): void;
  set(sid: string, session: any, cb?: (err?: any) => void): void;
  touch(sid: string, session: any, cb?: (err?: any) => void): void;
  destroy(sid: string, cb?: (err?: any) => void): void;
  length(cb: (err: any, length?: number) => void): void;
  all(cb: (err: any, sessions?: Record<string, any>) => void): void;
  clear(cb?: (err?: any) => void): void;
  close(): void;
}
