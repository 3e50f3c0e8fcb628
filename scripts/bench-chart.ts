/**
 * A horizontal bar chart as SVG, for benchmark results a reader would rather
 * look at than read: one group of bars per scenario, one bar per series,
 * each labelled with its value. No dependencies: it is a few rectangles.
 */
export interface ChartGroup {
  label: string;
  bars: { series: string; value: number }[];
}

const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2"];
const BAR = 16;
const GAP = 10;
const LABEL_WIDTH = 300;
const PLOT_WIDTH = 460;

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function barChart(title: string, subtitle: string, unit: string, groups: ChartGroup[]): string {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value)));
  const legendTop = 52;
  let y = legendTop + 24;
  const parts: string[] = [];
  for (const group of groups) {
    parts.push(`<text x="${LABEL_WIDTH - 8}" y="${y + (group.bars.length * BAR) / 2 + 4}" text-anchor="end">${escape(group.label)}</text>`);
    for (const bar of group.bars) {
      const width = Math.max(1, (bar.value / max) * PLOT_WIDTH);
      const color = COLORS[series.indexOf(bar.series) % COLORS.length];
      parts.push(`<rect x="${LABEL_WIDTH}" y="${y}" width="${width.toFixed(1)}" height="${BAR - 2}" fill="${color}"/>`);
      parts.push(`<text x="${LABEL_WIDTH + width + 4}" y="${y + BAR - 4}">${bar.value.toLocaleString("en-US")}</text>`);
      y += BAR;
    }
    y += GAP;
  }
  const legend = series.map(
    (s, i) => `<rect x="${10 + i * 220}" y="${legendTop}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${10 + i * 220 + 16}" y="${legendTop + 10}">${escape(s)}</text>`,
  );
  const width = LABEL_WIDTH + PLOT_WIDTH + 80;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<text x="10" y="40" font-size="11" fill="#444">${escape(subtitle)}</text>`,
    `<text x="${LABEL_WIDTH}" y="${y}" fill="#666">${escape(unit)}</text>`,
    ...legend,
    ...parts,
    `</svg>`,
  ].join("\n");
}
