/**
 * Runs `fn` over `items` with at most `limit` in flight. After a failure no new item starts,
 * and the first error is thrown only once every item in flight has settled: nothing keeps
 * working after the caller has moved on (released a lock, retried).
 */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
}
