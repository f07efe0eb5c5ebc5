/** Workgroup grids for 1-D problems, folded into y past the 65535-per-dimension limit (see shaders/residual.wgsl). */
export const MAX_GROUPS_X = 65535;

export function grid1d(n: number, workgroupSize: number): [number, number] {
  const groups = Math.ceil(n / workgroupSize);
  if (groups <= MAX_GROUPS_X) return [Math.max(groups, 1), 1];
  return [MAX_GROUPS_X, Math.ceil(groups / MAX_GROUPS_X)];
}
