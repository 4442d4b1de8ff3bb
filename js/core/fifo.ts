/**
 * A FIFO queue with O(1) shift (Array#shift is O(n), and a million un-awaited
 * sends is a real workload). Its array is made on first push: most streams
 * never queue a waiter, and an idle stream should cost little memory.
 */
export class Fifo<T> {
  static readonly #none: never[] = [];
  #items: (T | undefined)[] = Fifo.#none;
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    // (Most queues hold one item at a time: a literal of one is the size needed, where a push grows an empty array
    // to 17 places.)
    if (this.#items === Fifo.#none) this.#items = [item];
    else this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = Fifo.#none;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const items = this.#items.slice(this.#head) as T[];
    this.#items = Fifo.#none;
    this.#head = 0;
    return items;
  }
}
