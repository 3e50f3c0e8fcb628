import http from "node:http";

/**
 * Whether a GET of `url` answers 2xx within `timeoutMs`. Plain node:http, not
 * fetch: fetch refuses the ports the Fetch standard calls bad (10080 among
 * them), which a moved port (PORT_OFFSET) can land on.
 */
export function answersOk(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get(url, { timeout: timeoutMs }, (response) => {
      response.resume();
      resolve((response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300);
    });
    request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on("error", () => resolve(false));
  });
}
