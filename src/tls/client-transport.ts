// How a client of the API (vmctl, or this daemon calling a peer) opens a request
// to a base URL: plain HTTP for http://, TLS for https:// with the server
// verified against the given CA (the system's CAs when none is given) and this
// side's certificate presented when it has one. An https:// URL is never spoken
// to in clear; any other scheme is refused.
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";

export interface ClientTls {
  /** PEM bundle the server's certificate must chain to. */
  ca?: string | Buffer;
  /** PEM certificate and key presented to a server that asks for one (mutual TLS). */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface Transport {
  request: (options: https.RequestOptions, callback: (res: http.IncomingMessage) => void) => http.ClientRequest;
  /** host, port and, for https, the TLS options: spread into the request's options. */
  options: https.RequestOptions;
}

export function transportFor(base: URL, tls: ClientTls = {}): Transport {
  if (base.protocol === "http:") {
    return { request: http.request, options: { host: base.hostname, port: Number(base.port || 80) } };
  }
  if (base.protocol === "https:") {
    const host = base.hostname.replace(/^\[|\]$/g, "");
    return {
      request: https.request,
      options: {
        host,
        port: Number(base.port || 443),
        // SNI takes names only; an address is checked against the certificate's IP SANs all the same.
        ...(isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: true,
        ...(tls.ca ? { ca: tls.ca } : {}),
        ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
      },
    };
  }
  throw new Error(`${base.href}: only http:// and https:// URLs are supported`);
}

/** Node's TLS error codes, said in words an operator can act on. */
const TLS_REASONS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the server's certificate is not signed by a trusted CA (give the fleet's CA: --ca FILE)",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "the server's certificate is not signed by a trusted CA (give the fleet's CA: --ca FILE)",
  SELF_SIGNED_CERT_IN_CHAIN: "the server's certificate is not signed by a trusted CA (give the fleet's CA: --ca FILE)",
  DEPTH_ZERO_SELF_SIGNED_CERT: "the server's certificate is self-signed and not trusted (give its CA: --ca FILE)",
  CERT_HAS_EXPIRED: "the server's certificate has expired",
  CERT_NOT_YET_VALID: "the server's certificate is not valid yet",
  ERR_TLS_CERT_ALTNAME_INVALID: "the server's certificate does not name the address or host in the URL",
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: "the server requires a client certificate (give --cert FILE --key FILE)",
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: "the server refused our client certificate (not signed by its CA?)",
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: "the server does not know the CA of our client certificate",
  ERR_SSL_WRONG_VERSION_NUMBER: "the server does not speak TLS (is the URL http://?)",
};

/** An error's message, with what it means for TLS when it is a TLS failure. */
export function describeTransportError(err: Error & { code?: string }): string {
  const reason = err.code ? TLS_REASONS[err.code] : undefined;
  return reason ? `TLS: ${reason} [${err.code}]` : err.message;
}
