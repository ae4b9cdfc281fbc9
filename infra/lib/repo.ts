import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The repository root: the nearest ancestor of `from` holding the Cargo workspace manifest and
 * the `lambdas/` directory. Walking up (rather than a fixed `../..`) keeps the answer the same
 * whether this runs from `lib/*.ts` or from the compiled `dist/lib/*.js`.
 */
export function findRepoRoot(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'Cargo.toml')) && fs.existsSync(path.join(dir, 'lambdas'))) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`no Cargo workspace with a lambdas/ directory above ${from}`);
    }
    dir = parent;
  }
}
