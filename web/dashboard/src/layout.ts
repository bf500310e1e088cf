/**
 * The panel board (SPEC.md §18.7, saved layouts): the dashboard's panels
 * in the signed-in admin's order and sizes. "Edit layout" shows, on every
 * panel, buttons to move it earlier or later, make it wider, narrower,
 * taller or shorter, or remove it, and a list of the removed panels to add
 * back; "Save layout" stores it on the server for this admin (either role:
 * a layout is one's own view, not a setting).
 */
import { api, type Layout, type PanelPlace } from "./api.js";

/** A panel the board can place. */
export interface PanelView {
  /** Stable id, as stored in layouts. */
  id: string;
  /** Title and accessible name. */
  title: string;
  /** Its element (a section). */
  element: HTMLElement;
  /** Told its new size after every change. */
  resized?(place: PanelPlace): void;
}

/** The board's columns: a panel is 1 to this many wide. */
export const COLUMNS = 3;
/** Highest panel, in rows. */
export const ROWS = 2;

function button(label: string, text: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

/** The board: a grid of panels and its layout controls. */
export class Board {
  /** The grid. */
  readonly element: HTMLDivElement;
  /** Edit / add / save controls. */
  readonly controls: HTMLDivElement;
  private places: PanelPlace[];
  private saved: PanelPlace[];
  private editing = false;
  private readonly views: Map<string, PanelView>;
  private readonly status: HTMLSpanElement;

  constructor(
    views: PanelView[],
    private readonly defaults: PanelPlace[],
    stored: Layout | null,
    private readonly onSaved: () => void = () => undefined,
  ) {
    this.views = new Map(views.map((v) => [v.id, v]));
    // Ids this dashboard does not know (an older or newer one saved them) are left out.
    const known = stored?.panels.filter((p) => this.views.has(p.id));
    this.places = (known ?? defaults).map((p) => ({ ...p }));
    this.saved = this.places.map((p) => ({ ...p }));
    this.element = document.createElement("div");
    this.element.className = "grid";
    this.controls = document.createElement("div");
    this.controls.className = "layout-controls";
    this.status = document.createElement("span");
    this.status.setAttribute("role", "status");
    this.status.setAttribute("aria-label", "Layout status");
    this.render();
  }

  private render(): void {
    for (const view of this.views.values()) view.element.querySelector(":scope > .arrange")?.remove();
    const shown = this.places.map((place, index) => {
      const view = this.views.get(place.id)!;
      view.element.classList.add("panel");
      for (const c of [...view.element.classList]) if (/^(w|h)-\d$/.test(c)) view.element.classList.remove(c);
      view.element.classList.add(`w-${place.width}`, `h-${place.height}`);
      view.element.dataset["panel"] = place.id;
      view.element.dataset["width"] = String(place.width);
      view.element.dataset["height"] = String(place.height);
      if (this.editing) view.element.prepend(this.arrange(place, index, view.title));
      view.resized?.(place);
      return view.element;
    });
    this.element.replaceChildren(...shown);
    this.element.classList.toggle("editing", this.editing);
    this.renderControls();
  }

  private arrange(place: PanelPlace, index: number, title: string): HTMLElement {
    const bar = document.createElement("div");
    bar.className = "arrange";
    bar.setAttribute("role", "toolbar");
    bar.setAttribute("aria-label", `Arrange ${title}`);
    const last = this.places.length - 1;
    const change = (f: () => void) => () => {
      f();
      this.render();
    };
    const earlier = button(`Move ${title} earlier`, "◀", change(() => this.swap(index, index - 1)));
    earlier.disabled = index === 0;
    const later = button(`Move ${title} later`, "▶", change(() => this.swap(index, index + 1)));
    later.disabled = index === last;
    const narrower = button(`Make ${title} narrower`, "−W", change(() => (place.width -= 1)));
    narrower.disabled = place.width <= 1;
    const wider = button(`Make ${title} wider`, "+W", change(() => (place.width += 1)));
    wider.disabled = place.width >= COLUMNS;
    const shorter = button(`Make ${title} shorter`, "−H", change(() => (place.height -= 1)));
    shorter.disabled = place.height <= 1;
    const taller = button(`Make ${title} taller`, "+H", change(() => (place.height += 1)));
    taller.disabled = place.height >= ROWS;
    const remove = button(`Remove ${title}`, "✕", change(() => this.places.splice(index, 1)));
    bar.append(earlier, later, narrower, wider, shorter, taller, remove);
    return bar;
  }

  private swap(i: number, j: number): void {
    const a = this.places[i];
    const b = this.places[j];
    if (!a || !b) return;
    this.places[i] = b;
    this.places[j] = a;
  }

  private renderControls(): void {
    if (!this.editing) {
      this.controls.replaceChildren(button("Edit layout", "Edit layout", () => this.edit(true)), this.status);
      return;
    }
    const missing = [...this.views.values()].filter((v) => !this.places.some((p) => p.id === v.id));
    const select = document.createElement("select");
    select.setAttribute("aria-label", "Panel to add");
    for (const v of missing) select.append(new Option(v.title, v.id));
    const add = button("Add panel", "Add panel", () => {
      if (!select.value) return;
      this.places.push({ id: select.value, width: 1, height: 1 });
      this.render();
    });
    select.disabled = add.disabled = missing.length === 0;
    const save = button("Save layout", "Save layout", () => void this.save());
    const cancel = button("Cancel", "Cancel", () => {
      this.places = this.saved.map((p) => ({ ...p }));
      this.edit(false);
    });
    const reset = button("Default layout", "Default layout", () => {
      this.places = this.defaults.map((p) => ({ ...p }));
      this.render();
    });
    this.controls.replaceChildren(select, add, reset, save, cancel, this.status);
  }

  private edit(on: boolean): void {
    this.editing = on;
    this.status.textContent = "";
    this.render();
  }

  private async save(): Promise<void> {
    try {
      const layout = await api.saveLayout({ panels: this.places });
      this.places = layout.panels.map((p) => ({ ...p }));
      this.saved = this.places.map((p) => ({ ...p }));
      this.edit(false);
      this.status.textContent = "Layout saved";
      this.onSaved();
    } catch (e) {
      this.status.textContent = `Layout not saved: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
}
