/** A live table: rows replaced on every push, sorted by a clicked column, filtered by a text box. */

/** One column: header text and how to read a row's cell (sorted and filtered by `value`; shown as `cell` when given). */
export interface Column<R> {
  title: string;
  value: (row: R) => string | number;
  cell?: (row: R) => Node;
}

export class LiveTable<R> {
  readonly element: HTMLElement;
  private rows: R[] = [];
  private shownJson = "";
  private sortBy = 0;
  private ascending = true;
  private filter = "";
  private readonly body: HTMLTableSectionElement;
  private readonly heads: HTMLTableCellElement[] = [];

  constructor(
    readonly name: string,
    private readonly columns: Column<R>[],
  ) {
    this.element = document.createElement("section");
    this.element.className = "table";
    this.element.setAttribute("aria-label", name);
    this.element.dataset["table"] = name;
    const title = document.createElement("h2");
    title.textContent = name;
    const filter = document.createElement("input");
    filter.type = "search";
    filter.placeholder = "Filter";
    filter.setAttribute("aria-label", `Filter ${name}`);
    filter.addEventListener("input", () => {
      this.filter = filter.value.toLowerCase();
      this.render();
    });
    const table = document.createElement("table");
    table.setAttribute("aria-label", name);
    const head = table.createTHead().insertRow();
    columns.forEach((column, i) => {
      const th = document.createElement("th");
      th.textContent = column.title;
      th.tabIndex = 0;
      th.addEventListener("click", () => this.sort(i));
      head.appendChild(th);
      this.heads.push(th);
    });
    this.body = table.createTBody();
    this.element.append(title, filter, table);
  }

  /** Replaces the rows (nothing is redrawn when they did not change, so a pushed copy does not disturb the page). */
  set(rows: R[]): void {
    const json = JSON.stringify(rows);
    if (json === this.shownJson) return;
    this.shownJson = json;
    this.rows = rows;
    this.render();
  }

  /** Puts `node` (a form, say) between the title and the filter. */
  addControls(node: Node): void {
    this.element.querySelector(":scope > h2")!.after(node);
  }

  /** Sorts by column `i` (again: reverses). */
  sort(i: number): void {
    this.ascending = this.sortBy === i ? !this.ascending : true;
    this.sortBy = i;
    this.render();
  }

  private render(): void {
    const column = this.columns[this.sortBy];
    const shown = this.rows.filter((r) => !this.filter || this.columns.some((c) => String(c.value(r)).toLowerCase().includes(this.filter)));
    if (column) {
      shown.sort((a, b) => {
        const x = column.value(a);
        const y = column.value(b);
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return this.ascending ? order : -order;
      });
    }
    this.heads.forEach((th, i) => th.setAttribute("aria-sort", i === this.sortBy ? (this.ascending ? "ascending" : "descending") : "none"));
    this.body.replaceChildren(
      ...shown.map((row) => {
        const tr = document.createElement("tr");
        for (const c of this.columns) {
          const td = document.createElement("td");
          if (c.cell) td.append(c.cell(row));
          else td.textContent = String(c.value(row));
          tr.appendChild(td);
        }
        return tr;
      }),
    );
  }
}
