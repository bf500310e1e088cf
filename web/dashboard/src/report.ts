/**
 * The report page (SPEC.md §18.7 "Reports", §14.1 "Analytics"): the
 * server's content-free usage counts from a chosen day to today — daily
 * charts of active accounts and devices, messages and group messages, and
 * attachment volume (uPlot), weekly totals, current group sizes and
 * retention cohorts — with CSV and JSON downloads of the same report.
 * Any role may read it.
 */
import uPlot from "uplot";

import { api, ApiError, type Report, type ReportPeriod } from "./api.js";
import { formatBytes } from "./charts.js";
import { LiveTable } from "./table.js";

/** Days shown when the page opens: the last 30, today included. */
const DEFAULT_DAYS = 30;

/** `YYYY-MM-DD` (UTC) of a time. */
function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Seconds since the epoch of a `YYYY-MM-DD` day's start (UTC). */
function daySeconds(day: string): number {
  return Date.parse(`${day}T00:00:00Z`) / 1000;
}

/** One line of a report chart. */
interface Line {
  key: keyof Omit<ReportPeriod, "start">;
  label: string;
  colour: string;
}

/** A daily chart of some report columns; its element carries the sum of each line (`data-total-<key>`). */
class ReportChart {
  readonly element: HTMLElement;
  private readonly box: HTMLDivElement;
  private plot: uPlot | undefined;

  constructor(
    readonly title: string,
    private readonly lines: Line[],
    private readonly format: (v: number) => string = (v) => String(Math.round(v)),
  ) {
    this.element = document.createElement("section");
    this.element.className = "chart";
    this.element.setAttribute("aria-label", title);
    const h = document.createElement("h2");
    h.textContent = title;
    this.box = document.createElement("div");
    this.box.className = "plot";
    this.element.append(h, this.box);
  }

  show(days: ReportPeriod[]): void {
    const data: uPlot.AlignedData = [days.map((d) => daySeconds(d.start)), ...this.lines.map((l) => days.map((d) => d[l.key]))];
    for (const l of this.lines) this.element.dataset[`total_${l.key}`] = String(days.reduce((sum, d) => sum + d[l.key], 0));
    this.element.dataset["days"] = String(days.length);
    this.plot?.destroy();
    const value = (_u: uPlot, v: number | null) => (v === null || v === undefined ? "–" : this.format(v));
    this.plot = new uPlot(
      {
        width: Math.max(260, Math.floor(this.box.clientWidth || 360)),
        height: 200,
        scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 86_400, max + 86_400] : [min, max]) } },
        series: [{ label: "day", value: (_u, v) => (v === null ? "–" : isoDay(v * 1000)) }, ...this.lines.map((l) => ({ label: l.label, stroke: l.colour, width: 2, fill: `${l.colour}22`, value, points: { show: true } }))],
        axes: [{}, { size: 70, values: (_u, splits) => splits.map((v) => this.format(v)) }],
        cursor: { drag: { x: true, y: false } },
        legend: { live: true },
      },
      data,
      this.box,
    );
  }

  dispose(): void {
    this.plot?.destroy();
    this.plot = undefined;
  }
}

/** The report page: `back` returns to the dashboard. */
export class ReportPage {
  readonly element: HTMLElement;
  private readonly since: HTMLInputElement;
  private readonly csv: HTMLAnchorElement;
  private readonly json: HTMLAnchorElement;
  private readonly status: HTMLParagraphElement;
  private readonly charts: ReportChart[];
  private readonly weeks: LiveTable<ReportPeriod>;
  private readonly sizes: LiveTable<Report["group_sizes"][number]>;
  private readonly cohorts: HTMLElement;

  constructor(back: () => void) {
    this.element = document.createElement("section");
    this.element.className = "report";
    this.element.setAttribute("aria-label", "Report");
    const title = document.createElement("h2");
    title.textContent = "Usage report";
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = "Counts only, per UTC day: no content, no names, no who-talks-to-whom (SPEC.md §14.1).";
    this.since = document.createElement("input");
    this.since.type = "date";
    this.since.name = "since";
    this.since.required = true;
    this.since.value = isoDay(Date.now() - (DEFAULT_DAYS - 1) * 86_400_000);
    this.since.max = isoDay(Date.now());
    const label = document.createElement("label");
    label.append("Since ", this.since);
    const show = document.createElement("button");
    show.type = "submit";
    show.textContent = "Show report";
    this.csv = this.link("Download CSV");
    this.json = this.link("Download JSON");
    const backButton = document.createElement("button");
    backButton.type = "button";
    backButton.textContent = "Back to dashboard";
    backButton.addEventListener("click", back);
    const form = document.createElement("form");
    form.className = "report-controls";
    form.append(label, show, this.csv, this.json, backButton);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.load();
    });
    this.since.addEventListener("change", () => this.setLinks());
    this.status = document.createElement("p");
    this.status.setAttribute("role", "status");
    this.status.className = "report-status";
    this.charts = [
      new ReportChart("Active per day", [
        { key: "active_accounts", label: "accounts", colour: "#7c3aed" },
        { key: "active_devices", label: "devices", colour: "#0d9488" },
      ]),
      new ReportChart("Messages per day", [
        { key: "messages", label: "one-to-one", colour: "#2563eb" },
        { key: "group_messages", label: "group", colour: "#ea580c" },
      ]),
      new ReportChart("Attachment volume per day", [{ key: "attachment_bytes", label: "uploaded", colour: "#0891b2" }], formatBytes),
    ];
    this.weeks = new LiveTable<ReportPeriod>("Weeks", [
      { title: "Week of", value: (r) => r.start },
      { title: "Active accounts", value: (r) => r.active_accounts },
      { title: "Active devices", value: (r) => r.active_devices },
      { title: "Messages", value: (r) => r.messages },
      { title: "Group messages", value: (r) => r.group_messages },
      { title: "Attachments", value: (r) => formatBytes(r.attachment_bytes) },
    ]);
    this.sizes = new LiveTable<Report["group_sizes"][number]>("Group sizes", [
      // Sorted by the bucket's smallest size, shown as its label.
      { title: "Members", value: (r) => Number.parseInt(r.members, 10), cell: (r) => document.createTextNode(r.members) },
      { title: "Groups", value: (r) => r.groups },
    ]);
    this.weeks.element.classList.add("wide");
    this.cohorts = document.createElement("section");
    this.cohorts.className = "table wide-3";
    this.cohorts.setAttribute("aria-label", "Retention cohorts");
    const grid = document.createElement("div");
    grid.className = "report-grid";
    grid.append(...this.charts.map((c) => c.element), this.weeks.element, this.sizes.element, this.cohorts);
    this.element.append(title, note, form, this.status, grid);
    this.setLinks();
  }

  private link(text: string): HTMLAnchorElement {
    const a = document.createElement("a");
    a.className = "button";
    a.textContent = text;
    a.setAttribute("download", "");
    return a;
  }

  private setLinks(): void {
    const since = encodeURIComponent(this.since.value);
    this.csv.href = `/admin/api/report?since=${since}&format=csv`;
    this.json.href = `/admin/api/report?since=${since}&format=json`;
  }

  /** Fetches and shows the report from the chosen day. */
  async load(): Promise<void> {
    this.setLinks();
    this.status.textContent = "loading…";
    try {
      const report = await api.report(this.since.value);
      for (const chart of this.charts) chart.show(report.days);
      this.weeks.set(report.weeks);
      this.sizes.set(report.group_sizes);
      this.showCohorts(report);
      this.status.textContent = `${report.since} to ${report.until} (UTC), made ${new Date(report.generated_at_ms).toLocaleTimeString()}`;
    } catch (e: unknown) {
      this.status.textContent = e instanceof ApiError ? e.message : "report unavailable";
    }
  }

  private showCohorts(report: Report): void {
    const title = document.createElement("h2");
    title.textContent = "Retention cohorts";
    const table = document.createElement("table");
    table.setAttribute("aria-label", "Retention cohorts");
    const width = report.cohorts.reduce((n, c) => Math.max(n, c.active.length), 0);
    const head = table.createTHead().insertRow();
    for (const text of ["Registered week of", "Accounts", ...Array.from({ length: width }, (_, k) => `Week ${k}`)]) {
      const th = document.createElement("th");
      th.textContent = text;
      head.append(th);
    }
    const body = table.createTBody();
    for (const c of report.cohorts) {
      const row = body.insertRow();
      row.insertCell().textContent = c.week;
      row.insertCell().textContent = String(c.accounts);
      for (const n of c.active) row.insertCell().textContent = c.accounts > 0 ? `${n} (${Math.round((100 * n) / c.accounts)}%)` : String(n);
    }
    const empty = document.createElement("p");
    empty.textContent = report.cohorts.length === 0 ? "No registrations in this period." : "";
    this.cohorts.replaceChildren(title, table, empty);
  }

  /** Frees the charts. */
  dispose(): void {
    for (const chart of this.charts) chart.dispose();
  }
}
