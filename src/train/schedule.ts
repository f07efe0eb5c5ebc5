/** Learning rate: linear warm-up to `lr`, then cosine decay to `lr·minRatio` at `totalSteps` (steps count from 1). */
export interface LrSchedule {
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  minRatio: number;
}

export function learningRate(step: number, s: LrSchedule): number {
  if (s.warmupSteps > 0 && step <= s.warmupSteps) return (s.lr * step) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - s.warmupSteps) / span));
  const minLr = s.lr * s.minRatio;
  return minLr + 0.5 * (s.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
