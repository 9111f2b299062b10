/**
 * maand: what a Bun job command uses to talk to the maand that runs it.
 *
 * maand writes this file next to the command's script (`import ... from "./maand"`) and as the
 * package `maand` on NODE_PATH (`import ... from "maand"`) for every run. Context comes from
 * the environment maand sets; KV, demands and semaphores go to the runtime API at
 * MAAND_API_URL with the per-process token MAAND_API_TOKEN. API functions return the fetch
 * `Response`; `raiseForStatus(response)` throws a `MaandApiError` when it is not 2xx.
 *
 * SSH helpers exist in the Python module only; from Bun, run `ssh` yourself.
 */

export class MaandApiError extends Error {
  constructor(
    public status: number,
    public error: string,
    public detail?: string,
  ) {
    super(`maand API ${status}: ${error}${detail ? ` (${detail})` : ""}`);
  }
}

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined) {
    throw new Error(`${name} is not set: the maand module works inside a job command run by maand`);
  }
  return value;
}

// --- context ---------------------------------------------------------------------------------

export const allocationId = (): string => env("ALLOCATION_ID");
export const allocationIp = (): string => env("ALLOCATION_IP");
export const allocationIndex = (): number => Number.parseInt(env("ALLOCATION_INDEX"), 10);
export const jobName = (): string => env("JOB");
export const commandEvent = (): string => env("EVENT");
export const commandName = (): string => env("COMMAND");
export const isAllocationDisabled = (): boolean => process.env.DISABLED === "1";
export const currentVersion = (): string => env("CURRENT_VERSION");
export const newVersion = (): string => env("NEW_VERSION");

export const getAllocationId = allocationId;
export const getAllocationIp = allocationIp;
export const getAllocationIndex = allocationIndex;
export const getJob = jobName;
export const getEvent = commandEvent;
export const getCommand = commandName;

// --- HTTP ------------------------------------------------------------------------------------

async function call(
  method: string,
  path: string,
  body?: Record<string, unknown>,
  query?: Record<string, string>,
): Promise<Response> {
  let url = env("MAAND_API_URL") + path;
  if (query) url += "?" + new URLSearchParams(query).toString();
  const headers: Record<string, string> = {
    Authorization: `Bearer ${env("MAAND_API_TOKEN")}`,
    "X-ALLOCATION-ID": allocationId(),
    EVENT: commandEvent(),
    COMMAND: commandName(),
  };
  let payload: string | undefined;
  if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  return fetch(url, { method, headers, body: payload });
}

/** Throws a MaandApiError unless the response is 2xx; returns it otherwise. */
export async function raiseForStatus(response: Response): Promise<Response> {
  if (response.ok) return response;
  const text = await response.text();
  let parsed: { error?: string; detail?: string } = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: text };
  }
  throw new MaandApiError(response.status, parsed.error ?? text, parsed.detail);
}

const varsNamespace = () => `vars/job/${jobName()}`;
const secretsNamespace = () => `secrets/job/${jobName()}`;

// --- KV --------------------------------------------------------------------------------------

/** GET /kv: the response; its JSON has `value` (secrets decrypted). */
export const getStoreValue = (namespace: string, key: string) =>
  call("GET", "/kv", undefined, { namespace, key });

/** The value of `key`, or undefined when it does not exist. */
export async function kvGet(namespace: string, key: string): Promise<string | undefined> {
  const response = await getStoreValue(namespace, key);
  if (response.status === 404) return undefined;
  await raiseForStatus(response);
  return (await response.json()).value;
}

export const putJobVariable = (key: string, value: string) =>
  call("PUT", "/kv", { namespace: varsNamespace(), key, value: String(value) });
export const kvPut = putJobVariable;
export const putJobSecret = (key: string, value: string) =>
  call("PUT", "/kv/secret", { namespace: secretsNamespace(), key, value: String(value) });
export const deleteJobVariable = (key: string) =>
  call("DELETE", "/kv", { namespace: varsNamespace(), key });
export const kvDelete = deleteJobVariable;
export const deleteJobSecret = (key: string) =>
  call("DELETE", "/kv/secret", { namespace: secretsNamespace(), key });

/** GET /kv/keys: `{keys: {namespace: [key, ...]}}`; the job's vars and secrets by default. */
export const listJobKeys = (namespace?: string) =>
  call("GET", "/kv/keys", undefined, namespace ? { namespace } : undefined);

/** Sets this deploy's worker order (pre_deploy and cli only). */
export const putRolloutOrder = (order: string[] | string) =>
  call("PUT", "/kv", {
    namespace: `maand/job/${jobName()}`,
    key: "rollout_order",
    value: Array.isArray(order) ? order.join(",") : order,
  });

export async function getRolloutOrder(): Promise<string[]> {
  const value = await kvGet(`maand/job/${jobName()}`, "rollout_order");
  return (value ?? "").split(",").filter((ip) => ip.length > 0);
}

// --- demands and semaphores ------------------------------------------------------------------

export const listCommandDemands = () => call("GET", "/demands");

/** Waits until this allocation holds a slot of `name` (408 after `timeoutSeconds`). */
export const acquireSemaphore = (name: string, capacity = 1, timeoutSeconds = 600) =>
  call("POST", "/semaphore/acquire", { name, capacity, timeout_seconds: timeoutSeconds });
export const releaseSemaphore = (name: string) =>
  call("POST", "/semaphore/release", { name });
export const semaphoreStatus = (name: string) =>
  call("GET", "/semaphore/status", undefined, { name });
