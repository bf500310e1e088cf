/**
 * The operator dashboard (SPEC.md §18.7): sign in with password + TOTP,
 * then charts of the node's history and live tables, both kept current by
 * the server's Server-Sent Events; and the usage report page.
 */
import { api, ApiError, type AuditEntry, type ClusterNode, type Layout, type Overview, type Point, type Session } from "./api.js";
import { CHARTS, ChartPanel, Charts, formatBytes } from "./charts.js";
import { ipRulesPanel } from "./ip_rules.js";
import { Board, type PanelView } from "./layout.js";
import { ReportPage } from "./report.js";
import { suspensionsPanel } from "./suspensions.js";
import { rateLimitsPanel } from "./rate_limits.js";
import { LiveTable } from "./table.js";

const root = document.getElementById("root")!;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function field(label: string, input: HTMLInputElement): HTMLLabelElement {
  return el("label", {}, label, input);
}

function showLogin(message = ""): void {
  const name = el("input", { name: "name", autocomplete: "username", required: true });
  const password = el("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const totp = el("input", { name: "totp", inputMode: "numeric", autocomplete: "one-time-code", required: true });
  const error = el("p", { className: "error", role: "alert" }, message);
  const form = el("form", { className: "login" }, el("h1", {}, "Microbot operator sign-in"), field("Name", name), field("Password", password), field("Authenticator code", totp), el("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    api
      .login(name.value, password.value, totp.value)
      .then(enter)
      .catch((e: unknown) => {
        error.textContent = e instanceof ApiError ? e.message : "sign-in failed";
      });
  });
  root.replaceChildren(form);
}

function formatMemory(n: number | null): string {
  return n === null ? "–" : formatBytes(n);
}

/** The layout of an admin who saved none. */
const DEFAULT_LAYOUT = [
  { id: "chart:messages", width: 2, height: 1 },
  { id: "chart:deliveries", width: 1, height: 1 },
  { id: "chart:latency", width: 1, height: 1 },
  { id: "chart:logins", width: 1, height: 1 },
  { id: "chart:connections", width: 1, height: 1 },
  { id: "chart:queue", width: 1, height: 1 },
  { id: "chart:attachments", width: 1, height: 1 },
  { id: "chart:cpu", width: 1, height: 1 },
  { id: "chart:memory", width: 1, height: 1 },
  { id: "table:nodes", width: 2, height: 1 },
  { id: "table:connections", width: 1, height: 1 },
  { id: "table:totals", width: 1, height: 1 },
  { id: "table:limits", width: 1, height: 1 },
  { id: "table:rules", width: 1, height: 1 },
  { id: "table:suspensions", width: 3, height: 1 },
  { id: "table:rate-limits", width: 3, height: 1 },
  { id: "table:audit", width: 3, height: 1 },
];

/** Signed in: loads the admin's layout, then shows the dashboard. */
async function enter(session: Session): Promise<void> {
  const saved = await api.layout().then((r) => r.layout, () => null);
  showDashboard(session, saved);
}

function showDashboard(session: Session, layout: Layout | null): void {
  const status = el("span", { className: "feed", role: "status", ariaLabel: "Live feed" }, "connecting…");
  const logout = el("button", { type: "button" }, "Sign out");
  const reportButton = el("button", { type: "button" }, "Report");
  const header = el("header", {}, el("h1", {}, "Microbot"), el("span", { className: "who" }, `${session.name} (${session.role})`), reportButton, status, logout);
  // Every node of the cluster, from the snapshots each publishes on the bus (SPEC.md §18.7 Nodes).
  let seenAt = Date.now();
  const nodes = new LiveTable<ClusterNode>("Nodes", [
    { title: "Node", value: (r) => r.id },
    { title: "Address", value: (r) => r.address },
    { title: "Health", value: (r) => (r.stale ? "stale" : r.ready ? "ready" : "not ready") },
    { title: "Version", value: (r) => r.version },
    { title: "QUIC", value: (r) => r.connections_quic },
    { title: "WebSocket", value: (r) => r.connections_websocket },
    { title: "Queued", value: (r) => r.queued_envelopes ?? 0 },
    { title: "Memory", value: (r) => formatMemory(r.memory_bytes) },
    { title: "CPU s", value: (r) => (r.cpu_seconds ?? 0).toFixed(1) },
    { title: "Last seen", value: (r) => `${Math.max(0, Math.round((seenAt - r.last_seen_ms) / 1000))} s ago` },
  ]);
  const connections = new LiveTable<Overview["connections"][number] & { node: string }>("Connections", [
    { title: "Node", value: (r) => r.node },
    { title: "Transport", value: (r) => r.transport },
    { title: "Open", value: (r) => r.open },
    { title: "Since start", value: (r) => r.total },
  ]);
  const limits = new LiveTable<Overview["rate_limited"][number]>("Rate-limit hits", [
    { title: "Limit", value: (r) => r.limit },
    { title: "Hits", value: (r) => r.hits },
  ]);
  const rules = ipRulesPanel(session, () => void refreshAudit());
  const suspensions = suspensionsPanel(session, () => void refreshAudit());
  const rateLimits = rateLimitsPanel(session, () => void refreshAudit());
  const totals = new LiveTable<{ name: string; value: number }>("Totals", [
    { title: "Counter", value: (r) => r.name },
    { title: "Value", value: (r) => r.value },
  ]);
  const audit = new LiveTable<AuditEntry>("Audit log", [
    { title: "When", value: (r) => new Date(r.at_ms).toISOString() },
    { title: "Who", value: (r) => r.admin },
    { title: "What", value: (r) => r.action },
    { title: "Detail", value: (r) => r.detail },
  ]);
  // Newest first.
  audit.sort(0);
  const charts = new Charts(CHARTS.map((spec) => new ChartPanel(spec)));
  const views: PanelView[] = [
    ...charts.panels.map((p) => ({ id: p.spec.id, title: p.spec.title, element: p.element, resized: (place: { height: number }) => p.setRows(place.height) })),
    { id: "table:nodes", title: nodes.name, element: nodes.element },
    { id: "table:connections", title: connections.name, element: connections.element },
    { id: "table:limits", title: limits.name, element: limits.element },
    { id: "table:rules", title: rules.name, element: rules.element },
    { id: "table:suspensions", title: suspensions.table.name, element: suspensions.table.element },
    { id: "table:rate-limits", title: rateLimits.table.name, element: rateLimits.table.element },
    { id: "table:totals", title: totals.name, element: totals.element },
    { id: "table:audit", title: audit.name, element: audit.element },
  ];
  // Saving is audited: show it in the audit log at once.
  const board = new Board(views, DEFAULT_LAYOUT, layout, () => void refreshAudit());
  const bar = el("div", { className: "bar" }, charts.selector, board.controls);
  let report: ReportPage | undefined;
  const showBoard = () => {
    report?.dispose();
    report = undefined;
    root.replaceChildren(header, bar, board.element);
  };
  reportButton.addEventListener("click", () => {
    if (report) return;
    report = new ReportPage(showBoard);
    root.replaceChildren(header, report.element);
    void report.load();
  });
  root.replaceChildren(header, bar, board.element);
  void charts.load();
  const refreshAudit = () => api.audit().then((entries) => audit.set(entries)).catch(() => undefined);
  void refreshAudit();
  void suspensions.load();
  void rateLimits.load();
  // Suspensions and rate limits are not in the pushed snapshot: other admins' changes show within 5 s.
  const suspensionsPoll = setInterval(() => {
    void suspensions.load();
    void rateLimits.load();
  }, 5000);
  const feed = new EventSource("/admin/api/live");
  feed.addEventListener("overview", (event) => {
    const o = JSON.parse((event as MessageEvent<string>).data) as Overview;
    status.textContent = `live ${new Date(o.at_ms).toLocaleTimeString()}`;
    seenAt = o.at_ms;
    nodes.set(o.nodes);
    charts.setNodes(
      o.nodes.map((n) => n.id),
      o.node.id,
    );
    connections.set(
      o.nodes.flatMap((n) => [
        { node: n.id, transport: "quic", open: n.connections_quic, total: n.connections_quic_total },
        { node: n.id, transport: "websocket", open: n.connections_websocket, total: n.connections_websocket_total },
      ]),
    );
    limits.set(o.rate_limited);
    rules.set(o.ip_rules);
    totals.set(Object.entries(o.totals).map(([name, value]) => ({ name, value })));
  });
  feed.addEventListener("sample", (event) => {
    charts.onSample(JSON.parse((event as MessageEvent<string>).data) as Point);
  });
  let lost = false;
  feed.addEventListener("open", () => {
    // Back after a gap: the history fills the seconds the feed missed.
    if (lost) void charts.load();
    lost = false;
  });
  feed.addEventListener("error", () => {
    lost = true;
    status.textContent = "feed lost, retrying";
    // The browser gives up when the answer is not a stream (the session ended): sign in again.
    if (feed.readyState === EventSource.CLOSED) {
      api.session().then(
        () => (status.textContent = "feed closed; reload to retry"),
        () => {
          for (const panel of charts.panels) panel.dispose();
          clearInterval(suspensionsPoll);
          showLogin("Your session ended; sign in again.");
        },
      );
    }
  });
  logout.addEventListener("click", () => {
    feed.close();
    for (const panel of charts.panels) panel.dispose();
    report?.dispose();
    clearInterval(suspensionsPoll);
    api.logout().finally(() => showLogin());
  });
}

api
  .session()
  .then(enter, () => showLogin())
  .catch(() => showLogin());
