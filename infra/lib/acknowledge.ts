import { Validations } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * Acknowledges one cdk-nag finding on `scope` (and everything under it), with the reason it is
 * accepted. cdk-nag v3 matches findings one by one, so a rule that reports several offending
 * values (AwsSolutions-IAM5) needs one acknowledgement per value, e.g.
 * `AwsSolutions-IAM5[Resource::*]`. A reason is mandatory: it is what a reviewer reads.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  if (reason.trim().length < 20) {
    throw new Error(`acknowledging ${id} needs a real reason, got ${JSON.stringify(reason)}`);
  }
  Validations.of(scope).acknowledge({ id, reason });
}
