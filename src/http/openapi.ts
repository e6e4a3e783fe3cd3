// The OpenAPI document is the route table: @fastify/swagger collects every route
// as it is added, with the zod schemas it declares for its params, query, body
// and answers, and fastify-type-provider-zod turns those into JSON Schema. Here
// is only what no route knows: who the API is, where it listens, how it is
// authorised, and the tidying of the components the schemas produce.
import swagger, { type SwaggerTransform, type SwaggerTransformObject } from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform, jsonSchemaTransformObject, type ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { DAEMON_VERSION } from "../host/host-inventory.js";
import * as errors from "./route-errors.js";
import { problems } from "./response-schemas.js";

export const OPENAPI_URL = "/openapi.json";

type Json = Record<string, unknown>;

/** Registers the document's collector; it must come before the routes, which it sees as they are added. */
export function registerApiDocument(app: FastifyInstance): void {
  void app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "vmhostd",
        version: DAEMON_VERSION,
        description:
          "Per-host VM daemon API. Every error is an application/problem+json document (the Problem schema) with a stable code. " +
          "On the Unix socket no token is needed: its file mode and group decide who may connect. " +
          "Over TCP (--listen) every request carries the peer token as a bearer token.",
        license: { name: "Apache-2.0", url: "https://www.apache.org/licenses/LICENSE-2.0" },
      },
      servers: [
        {
          url: "http://localhost",
          description: "the Unix socket (--socket, default <run-dir>/vmhostd.sock), e.g. curl --unix-socket PATH http://localhost/v1/vms; no token",
        },
        {
          url: "{scheme}://{host}:{port}",
          description:
            "the TCP listener (--listen HOST:PORT): HTTPS with --tls-cert (a client certificate of the fleet's CA with --tls-ca); every request needs Authorization: Bearer <peer token>",
          variables: { scheme: { default: "https", enum: ["https", "http"] }, host: { default: "localhost" }, port: { default: "8600" } },
        },
      ],
      components: {
        securitySchemes: {
          peerToken: {
            type: "http",
            scheme: "bearer",
            description: "a peer token shared by the hosts (--peer-token-file); required over TCP, not on the Unix socket",
          },
        },
      },
      security: [{ peerToken: [] }],
    },
    transform: documentRoute,
    transformObject: tidyComponents,
  });
}

/** GET /openapi.json; added with the routes so that it documents itself. */
export function registerApiDocumentRoute(app: FastifyInstance): void {
  // Built on first request: most daemons are never asked for it.
  let document: Json | undefined;
  app.withTypeProvider<ZodTypeProvider>().get(
    OPENAPI_URL,
    {
      schema: {
        operationId: "openapi",
        summary: "this document",
        response: { 200: z.record(z.string(), z.unknown()).describe("OpenAPI 3.0"), ...problems(...errors.anyRequest) },
      },
    },
    async () => (document ??= app.swagger() as unknown as Json),
  );
}

/**
 * The zod transform keeps a response's description and content; the headers a
 * route documents (console log) are put back. An answer's objects are open: the
 * serializer does not strip what a route returns beyond its schema.
 */
const documentRoute: SwaggerTransform = (route) => {
  const out = jsonSchemaTransform(route as Parameters<typeof jsonSchemaTransform>[0]);
  const declared = (route.schema?.response ?? {}) as Record<string, { headers?: Json }>;
  const responses = (out.schema as { response?: Record<string, Json> } | undefined)?.response;
  for (const [status, r] of Object.entries(declared)) {
    if (r?.headers && responses?.[status]) responses[status].headers = r.headers;
  }
  openObjects(responses);
  return out;
};

function openObjects(node: unknown): void {
  if (Array.isArray(node)) node.forEach(openObjects);
  else if (node && typeof node === "object") {
    const o = node as Json;
    if (o.additionalProperties === false) delete o.additionalProperties;
    Object.values(o).forEach(openObjects);
  }
}

/**
 * Components come out of the schema registry twice, as input (`XInput`) and as
 * output (`X`), used or not. Kept: those the paths reach; an input whose output
 * is not kept takes the plain name.
 */
const tidyComponents: SwaggerTransformObject = (documentObject) => {
  const doc = jsonSchemaTransformObject(documentObject) as Json & { paths?: Json; components?: { schemas?: Record<string, Json> } };
  const schemas = doc.components?.schemas ?? {};
  const reached = new Set<string>();
  const visit = (node: unknown): void => {
    for (const ref of refsIn(node)) {
      if (reached.has(ref) || !schemas[ref]) continue;
      reached.add(ref);
      visit(schemas[ref]);
    }
  };
  visit(doc.paths);
  const renames = new Map<string, string>();
  for (const name of reached) {
    const plain = name.replace(/Input$/, "");
    if (plain !== name && !reached.has(plain)) renames.set(name, plain);
  }
  const kept: Record<string, Json> = {};
  for (const name of [...reached].sort()) {
    // Output components describe answers: open, as the answers' inline schemas are.
    if (!name.endsWith("Input")) openObjects(schemas[name]);
    kept[renames.get(name) ?? name] = schemas[name]!;
  }
  bodiesMayBeOmitted(doc.paths ?? {}, schemas);
  const tidied = { ...doc, components: { ...doc.components, schemas: kept } };
  return JSON.parse(JSON.stringify(tidied), (key, value: unknown) => {
    // zod wraps a reference in a one-member allOf; alone, the reference says the same.
    if (isLoneAllOf(value)) return value.allOf[0];
    if (key !== "$ref" || typeof value !== "string") return value;
    const name = value.split("/").pop()!;
    return renames.has(name) ? `#/components/schemas/${renames.get(name)}` : value;
  }) as ReturnType<SwaggerTransformObject>;
};

/**
 * @fastify/swagger marks every body required; a request without one is read as
 * `{}` (http-app.ts), so only a body whose schema requires a field must be sent.
 */
function bodiesMayBeOmitted(paths: Json, schemas: Record<string, Json>): void {
  for (const methods of Object.values(paths) as Record<string, Json>[]) {
    for (const op of Object.values(methods)) {
      const body = op.requestBody as { required?: boolean; content?: Record<string, { schema?: Json }> } | undefined;
      let schema = body?.content?.["application/json"]?.schema;
      const ref = schema?.$ref;
      if (typeof ref === "string") schema = schemas[ref.split("/").pop()!];
      if (body && schema?.type === "object" && !(schema.required as unknown[] | undefined)?.length) body.required = false;
    }
  }
}

function isLoneAllOf(value: unknown): value is { allOf: [unknown] } {
  if (!value || typeof value !== "object") return false;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === "allOf" && (value as { allOf: unknown[] }).allOf.length === 1;
}

function refsIn(node: unknown): string[] {
  const found: string[] = [];
  const walk = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(walk);
    else if (n && typeof n === "object") {
      for (const [k, v] of Object.entries(n)) {
        if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")) found.push(v.slice("#/components/schemas/".length));
        else walk(v);
      }
    }
  };
  walk(node);
  return found;
}
