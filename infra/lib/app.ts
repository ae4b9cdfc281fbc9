import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CurfewHub } from './hub-stack';
import { CurfewSpoke } from './spoke-stack';

/** Context key: `-c curfew:deletionProtection=false` turns the table's deletion protection off. */
export const DELETION_PROTECTION_CONTEXT = 'curfew:deletionProtection';
/** Context key: the spoke role name (the hub may assume only roles with this name). */
export const SPOKE_ROLE_NAME_CONTEXT = 'curfew:spokeRoleName';
/** Context key: `arm64` (default) or `x86_64`, the functions' architecture. */
export const ARCHITECTURE_CONTEXT = 'curfew:architecture';
/**
 * Context key: minutes the router trusts the inventory cache (`CURFEW_INVENTORY_MINUTES`, 0 to
 * 10080). Raise it above the time between waves where every spoke forwards its change events.
 */
export const INVENTORY_MINUTES_CONTEXT = 'curfew:inventoryMinutes';

export interface CurfewAppOptions {
  /** Extra context (wins over cdk.json's). */
  readonly context?: Record<string, unknown>;
  /** Where to write the cloud assembly. @default the CDK default (cdk.out, or the CLI's) */
  readonly outdir?: string;
  /**
   * Skip cross-compiling the Lambdas (tests, CI static checks): the assets get a placeholder
   * hash and no `cargo lambda build` runs.
   */
  readonly skipBundling?: boolean;
  /**
   * Register cdk-nag's AwsSolutions pack, so synthesis fails on an unacknowledged finding. Unit
   * tests of template shape turn it off to fail on their own assertion, not on a nag finding.
   * @default true
   */
  readonly nag?: boolean;
}

export interface CurfewApp {
  readonly app: App;
  readonly hub: CurfewHub;
  readonly spoke: CurfewSpoke;
}

/**
 * The curfew CDK app: the hub stack and the spoke stack, checked by cdk-nag's AwsSolutions pack.
 * Tests build it in memory; `bin/curfew.ts` is what the CDK CLI runs.
 */
export function buildCurfewApp(options: CurfewAppOptions = {}): CurfewApp {
  const app = new App({
    outdir: options.outdir,
    context: {
      // The same feature flags in memory as under the CLI, which reads them from cdk.json.
      ...cdkJsonContext(),
      ...(options.skipBundling ? { 'aws:cdk:bundling-stacks': [] } : {}),
      ...options.context,
    },
  });
  if (options.nag ?? true) {
    // Acknowledged findings are also written into the templates (Metadata.cdk_nag) for auditors.
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  }

  const spokeRoleName = app.node.tryGetContext(SPOKE_ROLE_NAME_CONTEXT) as string | undefined;
  const hub = new CurfewHub(app, 'CurfewHub', {
    deletionProtection: parseBoolean(app.node.tryGetContext(DELETION_PROTECTION_CONTEXT), true),
    spokeRoleName,
    architecture: parseArchitecture(app.node.tryGetContext(ARCHITECTURE_CONTEXT)),
    inventoryMinutes: parseMinutes(app.node.tryGetContext(INVENTORY_MINUTES_CONTEXT), INVENTORY_MINUTES_CONTEXT),
  });
  const spoke = new CurfewSpoke(app, 'CurfewSpoke', { spokeRoleName });
  return { app, hub, spoke };
}

function cdkJsonContext(): Record<string, unknown> {
  // lib/ and dist/lib/ both sit under infra/; cdk.json is at infra/cdk.json.
  for (const candidate of [path.join(__dirname, '..', 'cdk.json'), path.join(__dirname, '..', '..', 'cdk.json')]) {
    if (fs.existsSync(candidate)) {
      return JSON.parse(fs.readFileSync(candidate, 'utf8')).context ?? {};
    }
  }
  return {};
}

/** `arm64` (the default) or `x86_64`. */
export function parseArchitecture(value: unknown): lambda.Architecture {
  if (value === undefined || value === null || value === 'arm64') return lambda.Architecture.ARM_64;
  if (value === 'x86_64') return lambda.Architecture.X86_64;
  throw new Error(`${ARCHITECTURE_CONTEXT}: expected arm64 or x86_64, got ${JSON.stringify(value)}`);
}

/** Whole minutes from 0 to a week (what the functions accept), or `undefined` when not set. */
export function parseMinutes(value: unknown, key: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const minutes = typeof value === 'number' ? value : Number(String(value));
  if (!Number.isInteger(minutes) || minutes < 0 || minutes > 10080) {
    throw new Error(`${key}: expected whole minutes from 0 to 10080, got ${JSON.stringify(value)}`);
  }
  return minutes;
}

/** Context from `-c key=value` arrives as a string; from cdk.json or code as a boolean. */
export function parseBoolean(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new Error(`expected true or false, got ${JSON.stringify(value)}`);
}
