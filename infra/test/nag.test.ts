import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { PolicyViolation, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildCurfewApp } from '../lib/app';
import { buildForTest } from './support';

function findings(stack: Stack, honourAcknowledgements = true): PolicyViolation[] {
  const pack = new AwsSolutionsChecks();
  if (!honourAcknowledgements) {
    // What the pack finds before acknowledgements are applied (a private hook; test-only).
    (pack as any).isAcknowledged = () => false; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
  return pack.validateScope(stack).violations;
}

function describeFindings(violations: PolicyViolation[]): string {
  return violations
    .map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)
    .join('\n');
}

/** Every acknowledgement recorded in the stack: where, which finding, and why. */
function acknowledgements(stack: Stack): { path: string; id: string; reason: string }[] {
  return stack.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          path: c.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      ),
  );
}

describe('cdk-nag AwsSolutions', () => {
  const app = buildForTest();

  for (const name of ['hub', 'spoke'] as const) {
    test(`finds no unacknowledged error or warning in the ${name} stack`, () => {
      const violations = findings(app[name]);
      assert.equal(violations.length, 0, `unacknowledged findings:\n${describeFindings(violations)}`);
    });

    test(`every acknowledgement in the ${name} stack has a reason and is still needed`, () => {
      const raw = findings(app[name], false);
      const acks = acknowledgements(app[name]);
      assert.ok(acks.length > 0);
      for (const ack of acks) {
        assert.ok(ack.reason.length >= 20, `${ack.id} on ${ack.path} has no real reason`);
        const needed = raw.some(
          (v) => v.ruleName === ack.id && v.violatingResources.some((r) => r.constructPath?.startsWith(`${ack.path}/`) || r.constructPath === ack.path),
        );
        assert.ok(needed, `${ack.id} on ${ack.path} acknowledges nothing: remove it`);
      }
    });
  }

  test('the acknowledgements are written into the templates for auditors', () => {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'curfew-nag-'));
    try {
      buildCurfewApp({ skipBundling: true, outdir }).app.synth();
      const template = JSON.parse(fs.readFileSync(path.join(outdir, 'CurfewSpoke.template.json'), 'utf8'));
      const role = Object.values(template.Resources).find((r: any) => r.Properties?.RoleName?.Ref === 'SpokeRoleName') as any;
      const ids = role.Metadata.cdk_nag.rules_to_suppress.map((r: { id: string }) => r.id);
      assert.ok(ids.includes('AwsSolutions-IAM5[Resource::*]'));
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });

  test('a full synthesis (nag plugin and CDK\'s CloudFormation validation) reports nothing', () => {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'curfew-synth-'));
    try {
      buildCurfewApp({ skipBundling: true, outdir }).app.synth();
      const report = JSON.parse(fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8'));
      const violations = report.pluginReports.flatMap((r: any) => r.violations ?? []);
      assert.deepEqual(violations, []);
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });
});
