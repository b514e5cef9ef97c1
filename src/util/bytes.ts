/**
 * Bulk byte copies at memcpy speed. Buffer#copy and TypedArray#set go through V8, which copies
 * to or from a SharedArrayBuffer word by word with relaxed atomics: ~0.33 ns a byte on this
 * machine against ~0.03 for memcpy, and the bulk buffers of backup and restore are shared with
 * the crypto workers. Buffer#fill with a buffer as its value is Node's own C++ memcpy.
 */

/**
 * Copies all of `src` into `dst` at `offset` (which must have room; the two must not
 * overlap) and returns the number of bytes copied.
 */
export function copyInto(dst: Buffer, offset: number, src: Uint8Array): number {
  // fill() refuses an empty value; an empty copy has nothing to do.
  if (src.length > 0) dst.fill(src, offset, offset + src.length);
  return src.length;
}
