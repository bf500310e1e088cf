/**
 * Interactive charts on uPlot (SPEC.md §18.7): the node's history from
 * `GET /admin/api/series` for the chosen range, extended by the per-second
 * points the live feed pushes. Drag to zoom (double-click resets), hover
 * for values in the legend. Each chart's element carries what it holds
 * (`data-points`, `data-latest`, `data-peak` of its first line,
 * `data-peaks` of every line) so tests
 * and people can read it without the canvas.
 */
import uPlot from "uplot";

import { api, SERIES_KEYS, type Point, type Series, type SeriesKey } from "./api.js";

/** What one chart plots. */
export interface ChartSpec {
  /** Panel id. */
  id: string;
  /** Title and accessible name. */
  title: string;
  /** Lines: the series column and its legend label and colour. */
  lines: { key: SeriesKey; label: string; colour: string }[];
  /** Decimals in the legend. */
  decimals: number;
  /** How a value reads (legend and axis); default: `decimals` digits. */
  format?: (value: number) => string;
}

/** Bytes as B, KiB, MiB or GiB. */
export function formatBytes(value: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${v.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Milliseconds as ms, s or min. */
export function formatMs(value: number): string {
  if (Math.abs(value) >= 60_000) return `${(value / 60_000).toFixed(1)} min`;
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${value.toFixed(1)} ms`;
}

/** The dashboard's charts. */
export const CHARTS: ChartSpec[] = [
  { id: "chart:messages", title: "Messages per second", lines: [{ key: "messages_per_s", label: "messages/s", colour: "#2563eb" }], decimals: 2 },
  { id: "chart:deliveries", title: "Deliveries per second", lines: [{ key: "deliveries_per_s", label: "deliveries/s", colour: "#0d9488" }], decimals: 2 },
  {
    id: "chart:logins",
    title: "Logins per second",
    lines: [
      { key: "logins_per_s", label: "logins/s", colour: "#7c3aed" },
      { key: "failed_logins_per_s", label: "failed/s", colour: "#dc2626" },
    ],
    decimals: 2,
  },
  { id: "chart:connections", title: "Open connections", lines: [{ key: "connections", label: "open", colour: "#ea580c" }], decimals: 1 },
  { id: "chart:queue", title: "Queue depth", lines: [{ key: "queued_envelopes", label: "queued envelopes", colour: "#4b5563" }], decimals: 0 },
  {
    id: "chart:attachments",
    title: "Attachment bytes per second",
    lines: [
      { key: "attachment_in_bytes_per_s", label: "in", colour: "#0891b2" },
      { key: "attachment_out_bytes_per_s", label: "out", colour: "#c026d3" },
    ],
    decimals: 0,
    format: (v) => `${formatBytes(v)}/s`,
  },
  {
    id: "chart:latency",
    title: "Delivery latency p50/p99",
    lines: [
      { key: "latency_p50_ms", label: "p50", colour: "#0d9488" },
      { key: "latency_p99_ms", label: "p99", colour: "#be123c" },
    ],
    decimals: 1,
    format: formatMs,
  },
  { id: "chart:cpu", title: "CPU", lines: [{ key: "cpu_percent", label: "% of a core", colour: "#b45309" }], decimals: 1 },
  { id: "chart:memory", title: "Memory", lines: [{ key: "memory_bytes", label: "resident", colour: "#15803d" }], decimals: 0, format: formatBytes },
];

/** The ranges the selector offers (value for the API, label); each shows the data that exists within it. */
export const RANGES: [string, string][] = [
  ["5m", "5 minutes"],
  ["15m", "15 minutes"],
  ["1h", "1 hour"],
  ["6h", "6 hours"],
  ["24h", "24 hours"],
  ["7d", "7 days"],
  ["30d", "30 days"],
];

/** Time axis tick steps, seconds. */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 1_209_600, 2_592_000];

/** Heights (CSS pixels) of a chart's plot by panel height. */
const PLOT_HEIGHT: Record<number, number> = { 1: 180, 2: 420 };

/** One chart panel. */
export class ChartPanel {
  readonly element: HTMLElement;
  private readonly plotBox: HTMLDivElement;
  private plot: uPlot | undefined;
  private zoomed = false;
  private height = PLOT_HEIGHT[1]!;
  private readonly resize: ResizeObserver;

  constructor(readonly spec: ChartSpec) {
    this.element = document.createElement("section");
    this.element.className = "chart";
    this.element.setAttribute("aria-label", spec.title);
    this.element.dataset["points"] = "0";
    const title = document.createElement("h2");
    title.textContent = spec.title;
    this.plotBox = document.createElement("div");
    this.plotBox.className = "plot";
    this.element.append(title, this.plotBox);
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.plotBox);
  }

  /** Sets the plot height for a panel `rows` high. */
  setRows(rows: number): void {
    this.height = PLOT_HEIGHT[rows] ?? PLOT_HEIGHT[1]!;
    this.fit();
  }

  /** Shows `series` (keeps a zoom the operator made). */
  show(series: Series): void {
    const data: uPlot.AlignedData = [series.t, ...this.spec.lines.map((l) => series[l.key])];
    if (!this.plot) {
      this.plot = this.create(data);
    } else {
      this.plot.setData(data, !this.zoomed);
    }
    const first = series[this.spec.lines[0]!.key] as (number | null)[];
    const values = first.filter((v): v is number => v !== null);
    this.element.dataset["points"] = String(series.t.length);
    this.element.dataset["latest"] = String(values.at(-1) ?? 0);
    this.element.dataset["peak"] = String(values.reduce((a, b) => Math.max(a, b), 0));
    // Every line's peak, in line order (the latency chart's p50 and p99).
    this.element.dataset["peaks"] = this.spec.lines
      .map((l) => (series[l.key] as (number | null)[]).reduce<number>((m, v) => (v === null ? m : Math.max(m, v)), 0))
      .join(",");
  }

  /** Frees the plot. */
  dispose(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = undefined;
  }

  private width(): number {
    return Math.max(200, Math.floor(this.plotBox.clientWidth));
  }

  private fit(): void {
    if (this.plot && this.plotBox.isConnected) this.plot.setSize({ width: this.width(), height: this.height });
  }

  private create(data: uPlot.AlignedData): uPlot {
    const decimals = this.spec.decimals;
    const text = this.spec.format ?? ((v: number) => v.toFixed(decimals));
    const format = (_u: uPlot, v: number | null) => (v === null || v === undefined ? "–" : text(v));
    const options: uPlot.Options = {
      width: this.width(),
      height: this.height,
      // One point alone would stretch the time axis over years: show the minute before it.
      scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max] : [min, max]) } },
      series: [{ label: "time" }, ...this.spec.lines.map((l) => ({ label: l.label, stroke: l.colour, width: 2, fill: `${l.colour}22`, value: format, spanGaps: false }))],
      // Whole seconds at the finest: the samples are a second apart.
      axes: [{ incrs: TIME_STEPS }, { size: this.spec.format ? 80 : 56, values: (_u, splits) => splits.map((v) => (this.spec.format ? this.spec.format(v) : String(v))) }],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 0) this.zoomed = true;
          },
        ],
      },
    };
    const plot = new uPlot(options, data, this.plotBox);
    plot.over.addEventListener("dblclick", () => {
      this.zoomed = false;
    });
    return plot;
  }
}

/** The charts with their shared range and node: loads a range, then follows the live feed. */
export class Charts {
  /** The range and node selectors (labels "Time range", "Charts of"). */
  readonly selector: HTMLElement;
  private readonly select: HTMLSelectElement;
  /** "" (this node: its own history), "cluster" (the total) or another node's id: up to 15 minutes from the bus's per-second points, longer ranges from the minutes every node stores. */
  private readonly nodeSelect: HTMLSelectElement;
  private nodesShown = "";
  private readonly since: HTMLSpanElement;
  private series: Series | undefined;
  private loading = false;
  private fetchedAt = 0;

  constructor(readonly panels: ChartPanel[]) {
    this.select = document.createElement("select");
    for (const [value, label] of RANGES) this.select.append(new Option(label, value));
    this.select.addEventListener("change", () => void this.load());
    const label = document.createElement("label");
    label.append("Time range ", this.select);
    this.nodeSelect = document.createElement("select");
    this.nodeSelect.append(new Option("This node", ""), new Option("Cluster total", "cluster"));
    this.nodeSelect.addEventListener("change", () => void this.load());
    const nodeLabel = document.createElement("label");
    nodeLabel.append("Charts of ", this.nodeSelect);
    this.since = document.createElement("span");
    this.since.className = "since";
    this.selector = document.createElement("div");
    this.selector.className = "range";
    this.selector.append(label, nodeLabel, this.since);
  }

  /** Offers the other nodes of the cluster (from the live feed) besides this node and the total. */
  setNodes(ids: string[], own: string): void {
    const others = ids.filter((id) => id !== own).sort();
    const key = others.join(",");
    if (key === this.nodesShown) return;
    this.nodesShown = key;
    const chosen = this.nodeSelect.value;
    this.nodeSelect.replaceChildren(new Option("This node", ""), new Option("Cluster total", "cluster"), ...others.map((id) => new Option(`Node ${id}`, id)));
    // A node that went away: back to this node.
    this.nodeSelect.value = [...this.nodeSelect.options].some((o) => o.value === chosen) ? chosen : "";
    if (this.nodeSelect.value !== chosen) void this.load();
  }

  /** Loads the selected range from the server. */
  async load(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    try {
      this.series = await api.series(this.select.value, this.nodeSelect.value || undefined);
      this.fetchedAt = this.series.now_ms / 1000;
      this.render();
    } catch {
      this.since.textContent = "history unavailable";
    } finally {
      this.loading = false;
    }
  }

  /** A pushed per-second point: appended at one-second steps, else the range is fetched again once a step has passed. */
  onSample(point: Point): void {
    const s = this.series;
    if (!s) return;
    // The pushed points are this node's: another node's or the total's are fetched again,
    // every second at one-second steps, else once a step has passed.
    if (this.nodeSelect.value !== "" && s.step_secs === 1) {
      void this.load();
      return;
    }
    if (this.nodeSelect.value !== "" || s.step_secs !== 1) {
      if (point.t - this.fetchedAt >= s.step_secs) void this.load();
      return;
    }
    if ((s.t.at(-1) ?? 0) >= point.t) return;
    s.t.push(point.t);
    const keys = SERIES_KEYS;
    for (const key of keys) (s[key] as (number | null)[]).push(point[key]);
    if (s.since === null) s.since = point.t - 1;
    let drop = 0;
    while (drop < s.t.length && s.t[drop]! <= point.t - s.range_secs) drop++;
    if (drop > 0) {
      s.t.splice(0, drop);
      for (const key of keys) (s[key] as (number | null)[]).splice(0, drop);
    }
    this.render();
  }

  private render(): void {
    const s = this.series;
    if (!s) return;
    for (const panel of this.panels) panel.show(s);
    this.since.textContent = s.since === null ? "no data yet" : `data since ${new Date(s.since * 1000).toLocaleString()}`;
    this.selector.dataset["step"] = String(s.step_secs);
  }
}
