import { defineConfig } from "drizzle-kit";
import { env } from "./calibrator/env.ts";

const { FAIRSPEC_DB_URL: url, FAIRSPEC_DB_AUTH_TOKEN: authToken } = env();

export default defineConfig({
  dialect: "turso",
  schema: "./core/schema.ts",
  out: "./migrations",
  dbCredentials: authToken ? { url, authToken } : { url },
});
