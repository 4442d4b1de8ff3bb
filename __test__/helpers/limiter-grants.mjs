// The order a limiter of one slot grants its waiters in, by counting: the slot is held (by `first`), every item of
// `items` asks in turn and waits, then the slot is handed on one grant at a time.
import assert from 'node:assert/strict';
import { settle } from './util.mjs';

/** Each grant's `name(item)`, in the order granted. */
export async function grantOrder(l, items, first, name) {
  let holding = await l.acquire(first);
  const order = [];
  const all = items.map((item) =>
    l.acquire(item).then((permit) => {
      order.push(name(item));
      holding = permit;
    }),
  );
  await settle();
  assert.equal(l.stats().waiting, items.length);
  for (let i = 0; i < items.length; i++) {
    holding.release();
    await settle(1);
  }
  await Promise.all(all);
  holding.release();
  return order;
}
