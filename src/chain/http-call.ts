/**
 * One HTTP exchange over node:http(s): the answer read into one buffer sized by its
 * Content-Length, with a deadline for the whole exchange and a bound on the bytes taken.
 * The node client makes every call through it rather than fetch. For the block ranges a
 * syncing node fetches one after another, fetch's web streams took about three times the
 * CPU (each chunk copied into a new array, the chunks then joined, a promise per chunk) on
 * the cores verifying them. And fetch parses HTTP in WebAssembly, for which V8 reserves
 * ~10 GiB of address space: in a process under a smaller `ulimit -v` every fetch fails.
 * Redirects are not followed (a node's API never answers one): a 3xx is a status failure.
 */
import { type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";

/** Why an HTTP call failed: no answer, an answer that is not 2xx, or too many bytes. */
export type HttpCallFailure =
  | { kind: "unreachable"; cause: string }
  | { kind: "status"; status: number; text: string }
  | { kind: "too-large"; bytes: number };

export class HttpCallError extends Error {
  constructor(readonly failure: HttpCallFailure) {
    super(`HTTP call failed: ${JSON.stringify(failure)}`);
  }
}

/** What to send: the method (GET unless given), headers, and a body. */
export interface HttpCallRequest {
  method?: string;
  headers: Record<string, string>;
  body?: Buffer | string;
}

// A body without a Content-Length starts this large and doubles up to the bound.
const UNSIZED_START_BYTES = 64 * 1024;
// How much of an error answer's text is kept.
const ERROR_TEXT_MAX = 500;

export function httpCall(
  url: URL,
  call: HttpCallRequest,
  timeoutMs: number,
  maxBytes: number,
): Promise<Buffer> {
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const headers = { ...call.headers };
  if (call.body !== undefined) headers["content-length"] = String(Buffer.byteLength(call.body));
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (failure: HttpCallFailure | undefined, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (failure) {
        req?.destroy();
        reject(new HttpCallError(failure));
      } else resolve(body!);
    };
    let req: ClientRequest | undefined;
    const timer = setTimeout(() => finish({ kind: "unreachable", cause: "TimeoutError" }), timeoutMs);
    try {
      req = request(url, { method: call.method ?? "GET", headers }, (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299)
          return readErrorText(res, (text) => finish({ kind: "status", status, text }));
        const declared = Number(res.headers["content-length"]);
        if (declared > maxBytes) return finish({ kind: "too-large", bytes: declared });
        let body = Buffer.allocUnsafeSlow(Number.isInteger(declared) ? declared : UNSIZED_START_BYTES);
        let at = 0;
        res.on("data", (chunk: Buffer) => {
          const end = at + chunk.length;
          if (end > maxBytes) return finish({ kind: "too-large", bytes: end });
          if (end > body.length) {
            const grown = Buffer.allocUnsafeSlow(Math.min(maxBytes, Math.max(2 * body.length, end)));
            body.copy(grown, 0, 0, at);
            body = grown;
          }
          chunk.copy(body, at);
          at = end;
        });
        res.on("end", () => finish(undefined, body.subarray(0, at)));
        // A connection that closes before the whole body came (the peer stopped or died).
        res.on("close", () => {
          if (!res.complete) finish({ kind: "unreachable", cause: "the connection closed mid-body" });
        });
      });
    } catch (err) {
      // An address node:http cannot use (a scheme other than http or https) throws at once.
      finish({ kind: "unreachable", cause: (err as NodeJS.ErrnoException).code ?? (err as Error).name });
      return;
    }
    req.on("error", (err: NodeJS.ErrnoException) =>
      finish({ kind: "unreachable", cause: err.code ?? err.name }),
    );
    req.end(call.body);
  });
}

function readErrorText(res: IncomingMessage, done: (text: string) => void): void {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (s: string) => {
    if (text.length < ERROR_TEXT_MAX) text += s;
  });
  res.on("end", () => done(text.slice(0, ERROR_TEXT_MAX)));
  res.on("close", () => done(text.slice(0, ERROR_TEXT_MAX)));
}
