// Contract: the outputs made before a failure arrive before its error, for every cell (cells.mjs), read
// live and by run(); and the error keeps its code, whatever threads and stages it crossed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENTS, cells } from './cells.mjs';

const FAIL = { fail: true };
const isContractError = (e) => e?.code === 'E_CONTRACT' && /contract failure/.test(e.message);

for (const cell of cells()) {
  test(`${cell.name}: the outputs before a failure come first, then its error, with its code`, async () => {
    const s = cell.make({ buffer: 8 }).open();
    const before = EVENTS.slice(0, 3);
    for (const e of before) await s.send(e);
    await s.send(FAIL).catch(() => {});
    const got = [];
    let error;
    try {
      for await (const v of s) got.push(v);
    } catch (e) {
      error = e;
    }
    assert.deepEqual(got, before);
    assert.ok(isContractError(error), `the error: ${error}`);
    assert.equal(s.state, 'failed');
    await assert.rejects(cell.make().run([...before, FAIL, ...EVENTS.slice(3)]), isContractError);
  });
}
