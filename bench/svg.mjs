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

