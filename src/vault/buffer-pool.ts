/**
 * A fixed set of equal buffers, handed out and returned, waiting when all are out. Bulk
 * paths reuse their buffers: on this class of machine faulting in fresh pages costs more
 * than hashing or encrypting them (~0.2–0.6 GB/s against 1–2 GB/s), so a backup or a
 * restore must not allocate per chunk. Buffers are made on first need; only the pages a
 * buffer's contents touched count towards memory.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: (() => void)[] = [];
  private made = 0;

  /**
   * `shared`: back each buffer with a SharedArrayBuffer, for jobs on worker threads.
   * `make`: how to make the buffer of a given index instead (direct-writes.ts carves
   * page-aligned ones out of one WebAssembly memory).
   */
  constructor(
    readonly sizeBytes: number,
    readonly max: number,
    private readonly shared = false,
    private readonly make?: (index: number) => Buffer,
  ) {}

  async acquire(): Promise<Buffer> {
    for (;;) {
      const b = this.free.pop();
      if (b) return b;
      if (this.made < this.max) {
        if (this.make) return this.make(this.made++);
        this.made++;
        return this.shared
          ? Buffer.from(new SharedArrayBuffer(this.sizeBytes))
          : Buffer.allocUnsafeSlow(this.sizeBytes);
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  release(b: Buffer): void {
    this.free.push(b);
    this.waiters.shift()?.();
  }

  /** Runs `fn` with a buffer from the pool and returns it afterwards. */
  async with<T>(fn: (b: Buffer) => Promise<T>): Promise<T> {
    const b = await this.acquire();
    try {
      return await fn(b);
    } finally {
      this.release(b);
    }
  }
}
