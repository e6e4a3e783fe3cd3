// Opening GET /v1/events as a client that holds the stream: the tests of the
// stream caps open many and need to know which were let in.
import http from "node:http";

export interface HeldStream {
  status: number;
  /** The problem document of a refused stream; empty for an open one. */
  body: string;
  close: () => void;
}

/** Opens /v1/events with `options` (Unix socket or TCP, headers); resolves once the status is known. */
export function holdEventStream(options: http.RequestOptions): Promise<HeldStream> {
  return new Promise((resolve, reject) => {
    const req = http.request({ path: "/v1/events", agent: false, ...options }, (res) => {
      const close = (): void => void req.destroy();
      if (res.statusCode === 200) return resolve({ status: 200, body: "", close });
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, close }));
    });
    req.on("error", reject);
    req.end();
  });
}
