import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { parseArchitecture, parseBoolean } from '../lib/app';
import { LAMBDA_CRATES } from '../lib/names';
import { findRepoRoot } from '../lib/repo';

describe('app wiring', () => {
  test('finds the repository root holding the Cargo workspace', () => {
    const root = findRepoRoot();
    assert.ok(fs.existsSync(path.join(root, 'Cargo.toml')));
    assert.ok(fs.existsSync(path.join(root, 'infra', 'cdk.json')));
  });

  for (const [lambda, crate] of Object.entries(LAMBDA_CRATES)) {
    test(`the ${lambda} manifest exists and builds the ${crate.binary} binary`, () => {
      const manifest = fs.readFileSync(path.join(findRepoRoot(), crate.manifest), 'utf8');
      const names = [...manifest.matchAll(/^name\s*=\s*"([^"]+)"/gm)].map((m) => m[1]);
      assert.ok(names.includes(crate.binary), `${crate.manifest} names ${names.join(', ')}, not ${crate.binary}`);
    });
  }

  test('context booleans accept true/false as strings or booleans and reject anything else', () => {
    assert.equal(parseBoolean(undefined, true), true);
    assert.equal(parseBoolean('false', true), false);
    assert.equal(parseBoolean(false, true), false);
    assert.equal(parseBoolean('true', false), true);
    assert.throws(() => parseBoolean('no', true), /expected true or false/);
  });

  test('the architecture is arm64 unless x86_64 is asked for by name', () => {
    assert.equal(parseArchitecture(undefined).name, 'arm64');
    assert.equal(parseArchitecture('arm64').name, 'arm64');
    assert.equal(parseArchitecture('x86_64').name, 'x86_64');
    assert.throws(() => parseArchitecture('amd64'), /expected arm64 or x86_64/);
  });
});
