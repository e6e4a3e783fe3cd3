// Jobs: long-running work (migrations, backups) followed by id: list, one job's
// phase and progress, cancel.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { JobRegistry } from "../../jobs/job-registry.js";
import * as errors from "../route-errors.js";
import { jobListSchema, jobSchema, json, problems } from "../response-schemas.js";
import { emptyBody } from "../schemas.js";

const jobParams = z.object({ id: z.uuid() }).strict();

export function registerJobRoutes(app: FastifyInstance, jobs: JobRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/jobs",
    { schema: { operationId: "listJobs", summary: "jobs, running and recently finished", response: { 200: jobListSchema, ...problems(...errors.anyRequest) } } },
    async () => ({ jobs: jobs.list().map((j) => j.view()) }),
  );
  r.get(
    "/v1/jobs/:id",
    {
      schema: {
        operationId: "getJob",
        summary: "one job: phase, progress, result or error",
        params: jobParams,
        response: { 200: json("the job", jobSchema), ...problems(...errors.job) },
      },
    },
    async (req) => jobs.get(req.params.id).view(),
  );
  r.post(
    "/v1/jobs/:id/cancel",
    {
      schema: {
        operationId: "cancelJob",
        summary: "cancel a running job",
        params: jobParams,
        body: emptyBody,
        response: { 202: json("the job, cancelling", jobSchema), ...problems(...errors.jobCancel) },
      },
    },
    async (req, reply) => {
      const job = jobs.get(req.params.id);
      job.cancel();
      return reply.status(202).send(job.view());
    },
  );
}
