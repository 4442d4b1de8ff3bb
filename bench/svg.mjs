// A horizontal bar chart as SVG, for the charts BENCHMARKS.md shows (charts.mjs, workers.mjs).
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** A horizontal bar chart: groups of labelled bars, one scale (or, with `groupScale`, one per group). */
export function barChart({ title, unit, groups, format, groupScale = false }) {
  const barH = 16;
  const gap = 4;
  const groupGap = 18;
  const left = 250;
  const width = 760;
  const plotW = width - left - 110;
  const max = Math.max(...groups.flatMap((g) => g.bars.map((b) => b.value)));
  let y = 40;
  const parts = [];
  for (const g of groups) {
    const top = groupScale ? Math.max(...g.bars.map((b) => b.value)) : max;
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(g.name)}</text>`);
    y += 18;
    for (const b of g.bars) {
      const w = Math.max(1, (b.value / top) * plotW);
      parts.push(`<text x="${left - 8}" y="${y + barH - 4}" text-anchor="end">${esc(b.label)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${b.color}"/>`);
      parts.push(`<text x="${left + w + 6}" y="${y + barH - 4}">${esc(format(b.value))}</text>`);
      y += barH + gap;
    }
    y += groupGap;
  }
  const height = y + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="${width - 10}" y="22" text-anchor="end" fill="#555">${esc(unit)}</text>
${parts.join('\n')}
</svg>
`;
}


/** A line chart: `series` of [x, y] points on one scale from 0, a legend at the top left. */
export function lineChart({ title, xLabel, yLabel, series }) {
  const [width, height, left, top, bottom] = [760, 320, 60, 40, 40];
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(...all.map((p) => p[0]));
  const yMax = Math.max(...all.map((p) => p[1]));
  const x = (v) => left + (v / xMax) * (width - left - 20);
  const y = (v) => top + (1 - v / yMax) * (height - top - bottom);
  const parts = [];
  for (const v of [0, yMax / 4, yMax / 2, (3 * yMax) / 4, yMax]) {
    parts.push(`<line x1="${left}" x2="${width - 20}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${Math.round(v)}</text>`);
  }
  parts.push(`<text x="${(width / 2).toFixed(0)}" y="${height - 8}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text x="10" y="${top - 8}" font-size="11" fill="#555">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const d = s.points.map(([px, py], j) => `${j === 0 ? 'M' : 'L'}${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${left + 10}" y="${top + 14 + i * 15}" font-size="12" fill="${s.color}">${esc(s.label)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="14" font-weight="bold">${esc(title)}</text>
${parts.join('\n')}
</svg>
`;
}
