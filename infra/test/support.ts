import { Template } from 'aws-cdk-lib/assertions';
import { buildCurfewApp, CurfewApp } from '../lib/app';

/**
 * The app as CI builds it, bundling skipped (no `cargo lambda build`). The cdk-nag plugin is left
 * out here so a nag finding fails test/nag.test.ts, not every shape assertion.
 */
export function buildForTest(context: Record<string, unknown> = {}): CurfewApp {
  return buildCurfewApp({ skipBundling: true, nag: false, context });
}

let cached: { hub: Template; spoke: Template } | undefined;

/** Templates of the default app, synthesized once per test file. */
export function templates(): { hub: Template; spoke: Template } {
  if (!cached) {
    const { hub, spoke } = buildForTest();
    cached = { hub: Template.fromStack(hub), spoke: Template.fromStack(spoke) };
  }
  return cached;
}

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The one resource of `type` whose logical ID starts with `prefix`. */
export function resource(t: Template, type: string, prefix: string): { id: string; body: Json } {
  const found = Object.entries(t.findResources(type)).filter(([id]) => id.startsWith(prefix));
  if (found.length !== 1) {
    throw new Error(`expected one ${type} named ${prefix}*, found ${found.map(([id]) => id).join(', ') || 'none'}`);
  }
  return { id: found[0][0], body: found[0][1] };
}

/** Every IAM policy statement attached to the role with logical ID `roleId` (inline or separate). */
export function statementsOfRole(t: Template, roleId: string): Json[] {
  const role = t.toJSON().Resources[roleId];
  const inline: Json[] = (role.Properties.Policies ?? []).flatMap((p: Json) => p.PolicyDocument.Statement);
  const attached = Object.values(t.findResources('AWS::IAM::Policy'))
    .filter((p: Json) => (p.Properties.Roles ?? []).some((r: Json) => r.Ref === roleId))
    .flatMap((p: Json) => p.Properties.PolicyDocument.Statement);
  return [...inline, ...attached];
}

/** Actions of a statement as a list. */
export function actionsOf(statement: Json): string[] {
  return ([] as string[]).concat(statement.Action ?? []);
}

/** Resources of a statement as a list. */
export function resourcesOf(statement: Json): Json[] {
  return ([] as Json[]).concat(statement.Resource ?? []);
}

/** Resolves a token-free description of a CloudFormation value for readable comparisons. */
export function render(value: Json): string {
  if (typeof value === 'string') return value;
  if (value?.Ref) return `\${${value.Ref}}`;
  if (value?.['Fn::GetAtt']) return `\${${value['Fn::GetAtt'].join('.')}}`;
  if (value?.['Fn::Join']) return value['Fn::Join'][1].map(render).join(value['Fn::Join'][0]);
  return JSON.stringify(value);
}

