/** The admin JSON API (SPEC.md §18.7): same-origin fetches with the CSRF header on every mutating request. */

/** An API refusal: HTTP status and the server's error code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The signed-in admin. */
export interface Session {
  name: string;
  role: "admin" | "viewer";
  expires_at_ms: number;
}

/** One audit log entry. */
export interface AuditEntry {
  at_ms: number;
  admin: string;
  action: string;
  detail: string;
}

/** An IP rule: from the server's settings (`config`) or made on the dashboard. */
export interface IpRule {
  kind: "deny" | "allow";
  cidr: string;
  source: "config" | "dashboard";
  created_by?: string;
  created_at_ms?: number;
}

/** A node of the cluster as this node last heard from it (SPEC.md §18.7 Nodes). */
export interface ClusterNode {
  id: string;
  address: string;
  version: string;
  ready: boolean;
  connections_quic: number;
  connections_websocket: number;
  connections_quic_total: number;
  connections_websocket_total: number;
  queued_envelopes: number | null;
  memory_bytes: number | null;
  cpu_seconds: number | null;
  at_ms: number;
  last_seen_ms: number;
  /** Silent for 5 s or more. */
  stale: boolean;
}

/** A node snapshot as `/admin/api/live` pushes it. */
export interface Overview {
  at_ms: number;
  node: { id: string; version: string; ready: boolean; memory_bytes: number | null; cpu_seconds: number | null; queued_envelopes: number | null };
  /** Every node of the cluster heard from lately, this one included. */
  nodes: ClusterNode[];
  connections: { transport: string; open: number; total: number }[];
  rate_limited: { limit: string; hits: number }[];
  ip_rules: IpRule[];
  totals: Record<string, number>;
}

/** One per-second chart point as `/admin/api/live` pushes it (`event: sample`). */
export interface Point {
  /** Seconds since the epoch. */
  t: number;
  messages_per_s: number;
  deliveries_per_s: number;
  logins_per_s: number;
  failed_logins_per_s: number;
  connections: number;
  queued_envelopes: number | null;
  attachment_in_bytes_per_s: number;
  attachment_out_bytes_per_s: number;
  /** Percent of one core. */
  cpu_percent: number | null;
  memory_bytes: number | null;
  /** Delivery latency (acceptance to hand-over), median and 99th percentile, ms; null: nothing delivered. */
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
}

/** The charts' history over a range (`GET /admin/api/series`): one array per value, indexed like `t`. */
export interface Series {
  range_secs: number;
  step_secs: number;
  now_ms: number;
  /** The oldest second the node has data for. */
  since: number | null;
  t: number[];
  messages_per_s: number[];
  deliveries_per_s: number[];
  logins_per_s: number[];
  failed_logins_per_s: number[];
  connections: number[];
  queued_envelopes: (number | null)[];
  attachment_in_bytes_per_s: number[];
  attachment_out_bytes_per_s: number[];
  cpu_percent: (number | null)[];
  memory_bytes: (number | null)[];
  latency_p50_ms: (number | null)[];
  latency_p99_ms: (number | null)[];
}

/** The value columns of a `Series` (what a chart can plot). */
export type SeriesKey = Exclude<keyof Series & keyof Point, "t">;

/** Every value column, in the order the server sends them. */
export const SERIES_KEYS: SeriesKey[] = [
  "messages_per_s",
  "deliveries_per_s",
  "logins_per_s",
  "failed_logins_per_s",
  "connections",
  "queued_envelopes",
  "attachment_in_bytes_per_s",
  "attachment_out_bytes_per_s",
  "cpu_percent",
  "memory_bytes",
  "latency_p50_ms",
  "latency_p99_ms",
];

/** One panel of a saved layout: which, how many grid columns wide (1–3) and rows high (1–2). */
export interface PanelPlace {
  id: string;
  width: number;
  height: number;
}

/** An admin's saved layout: panels in display order. */
export interface Layout {
  panels: PanelPlace[];
}

/** An editable rate limit (SPEC.md §18.7 Rate limits): per-minute rates, 0 = off. */
export interface RateLimit {
  name: string;
  description: string;
  /** The server's setting. */
  config: number;
  /** The rate in force on the serving node. */
  effective: number;
  /** The dashboard's override, if any. */
  override: { name: string; per_minute: number; updated_by: string; updated_at_ms: number } | null;
}

/** A suspended account (every device) or device (SPEC.md §18.7). */
export interface Suspension {
  kind: "account" | "device";
  username: string;
  device_id?: number;
  created_by: string;
  created_at_ms: number;
}

/** Counts of one day or one week (a week: `start` is its Monday). */
export interface ReportPeriod {
  start: string;
  active_accounts: number;
  active_devices: number;
  messages: number;
  group_messages: number;
  attachment_bytes: number;
}

/** The usage report (`GET /admin/api/report`, SPEC.md §18.7). */
export interface Report {
  since: string;
  until: string;
  generated_at_ms: number;
  days: ReportPeriod[];
  weeks: ReportPeriod[];
  group_sizes: { members: string; groups: number }[];
  cohorts: { week: string; accounts: number; active: number[] }[];
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== "GET") headers["X-Microbot-Admin"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/admin/api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const json: unknown = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = json as { error?: string; message?: string };
    throw new ApiError(response.status, e.error ?? "unknown", e.message ?? response.statusText);
  }
  return json as T;
}

export const api = {
  session: () => call<Session>("GET", "session"),
  login: (name: string, password: string, totp: string) => call<Session>("POST", "login", { name, password, totp }),
  logout: () => call<{ ok: boolean }>("POST", "logout"),
  audit: () => call<AuditEntry[]>("GET", "audit"),
  ipRules: () => call<{ rules: IpRule[] }>("GET", "ip-rules"),
  addIpRule: (kind: IpRule["kind"], cidr: string) => call<{ rules: IpRule[] }>("POST", "ip-rules", { kind, cidr }),
  removeIpRule: (cidr: string) => call<{ rules: IpRule[] }>("DELETE", `ip-rules?cidr=${encodeURIComponent(cidr)}`),
  layout: () => call<{ layout: Layout | null }>("GET", "layout"),
  saveLayout: (layout: Layout) => call<Layout>("PUT", "layout", layout),
  suspensions: () => call<{ suspensions: Suspension[] }>("GET", "suspensions"),
  suspend: (username: string, deviceId?: number) =>
    call<{ suspensions: Suspension[] }>("POST", "suspensions", deviceId === undefined ? { kind: "account", username } : { kind: "device", username, device_id: deviceId }),
  unsuspend: (kind: Suspension["kind"], username: string, deviceId?: number) =>
    call<{ suspensions: Suspension[] }>(
      "DELETE",
      `suspensions?kind=${kind}&username=${encodeURIComponent(username)}${deviceId === undefined ? "" : `&device_id=${deviceId}`}`,
    ),
  rateLimits: () => call<{ limits: RateLimit[] }>("GET", "rate-limits"),
  setRateLimit: (name: string, perMinute: number) => call<{ limits: RateLimit[] }>("PUT", "rate-limits", { name, per_minute: perMinute }),
  resetRateLimit: (name: string) => call<{ limits: RateLimit[] }>("DELETE", `rate-limits?name=${encodeURIComponent(name)}`),
  report: (since: string) => call<Report>("GET", `report?since=${encodeURIComponent(since)}&format=json`),
  /** `node`: undefined for the serving node, `cluster` for the total, or another node's id. */
  series: (range: string, node?: string) => call<Series>("GET", `series?range=${encodeURIComponent(range)}${node ? `&node=${encodeURIComponent(node)}` : ""}`),
};
