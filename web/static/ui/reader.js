// The result: each line's polygon drawn over the image (an SVG whose viewBox is
// the submitted image's size, stretched over the displayed image: the boxes scale
// with it) and the text in reading order. A line and its box select each other.
// Text only ever goes in through textContent.

const SVG = "http://www.w3.org/2000/svg";
const LOW_CONFIDENCE = 0.8;

export class Reader {
  constructor({ svg, list, plain, raw, caption }) {
    Object.assign(this, { svg, list, plain, raw, caption });
    this.boxes = [];
    this.buttons = [];
    this.selected = -1;
    list.addEventListener("keydown", (e) => this.onKey(e));
  }

  show(page, note = "") {
    const lines = [...page.lines].sort((a, b) => a.order - b.order);
    this.svg.setAttribute("viewBox", `0 0 ${page.width} ${page.height}`);
    this.boxes = lines.map((line, i) => this.box(line, i));
    this.buttons = lines.map((line, i) => this.button(line, i));
    this.svg.replaceChildren(...this.boxes);
    this.list.replaceChildren(...this.printedLines(lines));
    this.selected = -1;
    this.plain.textContent = plainText(lines);
    this.raw.textContent = JSON.stringify(page, null, 2);
    const ms = Object.values(page.timings_ms || {}).reduce((a, b) => a + b, 0);
    const models = Object.entries(page.models || {}).map(([k, v]) => `${k} v${v}`).join(", ");
    this.caption.textContent = [
      `${page.width} × ${page.height} px`, `${lines.length} lines`,
      page.rotation ? `read turned ${page.rotation}°` : "upright",
      models && `models ${models}`, ms && `${Math.round(ms)} ms of model time`, note,
    ].filter(Boolean).join(" · ");
  }

  box(line, i) {
    const poly = document.createElementNS(SVG, "polygon");
    poly.setAttribute("points", line.polygon.map(([x, y]) => `${x},${y}`).join(" "));
    poly.setAttribute("class", line.confidence < LOW_CONFIDENCE ? "box low" : "box");
    poly.dataset.index = String(i);
    const title = document.createElementNS(SVG, "title");
    title.textContent = line.text;
    poly.append(title);
    poly.addEventListener("click", () => this.select(i, { focusLine: true }));
    poly.addEventListener("mouseenter", () => this.hover(i, true));
    poly.addEventListener("mouseleave", () => this.hover(i, false));
    return poly;
  }

  button(line, i) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = line.confidence < LOW_CONFIDENCE ? "line low" : "line";
    b.textContent = line.text;
    b.title = `confidence ${Math.round(line.confidence * 100)}%`;
    b.dataset.index = String(i);
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => this.select(i));
    b.addEventListener("mouseenter", () => this.hover(i, true));
    b.addEventListener("mouseleave", () => this.hover(i, false));
    b.addEventListener("focus", () => this.hover(i, true));
    b.addEventListener("blur", () => this.hover(i, false));
    return b;
  }

  // One list item per printed line (same block and line), its fragments side by side.
  printedLines(lines) {
    const items = [];
    let key = null;
    lines.forEach((line, i) => {
      const here = `${line.block}/${line.line}`;
      if (here !== key || !items.length) items.push(document.createElement("li"));
      key = here;
      items[items.length - 1].append(this.buttons[i]);
    });
    return items;
  }

  select(i, { focusLine = false } = {}) {
    if (this.selected >= 0) this.mark(this.selected, false);
    this.selected = i === this.selected && !focusLine ? -1 : i; // a second click unselects
    if (this.selected < 0) return;
    this.mark(i, true);
    const b = this.buttons[i];
    if (focusLine) b.focus({ preventScroll: true });
    b.scrollIntoView({ block: "nearest" });
  }

  mark(i, on) {
    this.boxes[i].classList.toggle("selected", on);
    this.buttons[i].classList.toggle("selected", on);
    this.buttons[i].setAttribute("aria-pressed", String(on));
    if (on) this.svg.append(this.boxes[i]); // on top of its neighbours
  }

  hover(i, on) {
    this.boxes[i].classList.toggle("hover", on);
    this.buttons[i].classList.toggle("hover", on);
  }

  onKey(e) {
    const at = this.buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowRight: at + 1, ArrowUp: at - 1, ArrowLeft: at - 1,
      Home: 0, End: this.buttons.length - 1 }[e.key];
    if (e.key === "Escape" && this.selected >= 0) {
      this.select(this.selected);
    } else if (to !== undefined && to >= 0 && to < this.buttons.length) {
      e.preventDefault();
      this.buttons[to].focus();
      if (this.selected !== to) this.select(to);
    }
  }
}

function plainText(lines) {
  const rows = [];
  let key = null;
  for (const line of lines) {
    const here = `${line.block}/${line.line}`;
    if (here === key && rows.length) rows[rows.length - 1] += ` ${line.text}`;
    else rows.push(line.text);
    key = here;
  }
  return rows.join("\n");
}
