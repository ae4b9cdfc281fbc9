import * as path from 'node:path';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { RustFunction, cargoLambdaVersion } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { acknowledge } from '../acknowledge';

export interface RustLambdaProps {
  /** Repository root: `manifest` is relative to it. */
  readonly repoRoot: string;
  /** The Lambda's Cargo.toml, relative to the repository root. */
  readonly manifest: string;
  /** The binary in that package (cargo-lambda names the output `bootstrap`). */
  readonly binary: string;
  readonly functionName: string;
  readonly description: string;
  /** Execution role; this construct adds what Lambda itself needs (logs, X-Ray). */
  readonly role: iam.Role;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly environment: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
  /** @default ARM_64 */
  readonly architecture?: lambda.Architecture;
}

/**
 * One of curfew's Rust Lambdas: an arm64 (by default) `provided.al2023` function built by cargo-lambda (never
 * in Docker), with its own log group, JSON logs and active X-Ray tracing.
 */
export class RustLambda extends Construct {
  public readonly function: lambda.Function;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: RustLambdaProps) {
    super(scope, id);

    // cargo-lambda-cdk silently falls back to bundling in Docker when `cargo lambda` is missing;
    // curfew builds with cargo-lambda from PyPI (it bundles zig), so say that instead.
    if (Stack.of(this).bundlingRequired && !cargoLambdaVersion()) {
      throw new Error(
        `${props.binary}: 'cargo lambda' is not on PATH. Install it with 'pip install cargo-lambda' ` +
          `(or run 'make build', which does) before synthesizing with bundling.`,
      );
    }

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // The role writes to this log group only (no logs:CreateLogGroup, no AWSLambdaBasicExecutionRole).
    props.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    this.function = new RustFunction(this, 'Function', {
      manifestPath: path.join(props.repoRoot, props.manifest),
      binaryName: props.binary,
      runtime: 'provided.al2023',
      architecture: props.architecture ?? lambda.Architecture.ARM_64,
      bundling: { forcedDockerBundling: false },
      functionName: props.functionName,
      description: props.description,
      role: props.role,
      timeout: props.timeout,
      memorySize: props.memorySize,
      environment: props.environment,
      tracing: lambda.Tracing.ACTIVE,
      loggingFormat: lambda.LoggingFormat.JSON,
      logGroup: this.logGroup,
    });

    acknowledge(
      props.role,
      'AwsSolutions-IAM5[Resource::*]',
      'xray:PutTraceSegments and xray:PutTelemetryRecords (added by active tracing) do not ' +
        'support resource-level permissions; AWS documents Resource "*" for them.',
    );
  }
}
