// Piscina tasks for the worker-thread baselines: one event per task, with no
// state between tasks (Piscina's model).
export const average = (e) => e;
export const averageObjects = (e) => ({ id: e.id, average: e.value });
export const grayscale = async (rgb) => {
  const { toGray } = await import('./handlers.mjs');
  return { gray: toGray(rgb), motion: 0 };
};
