import { ArnFormat, CfnCondition, Fn, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export interface SpokeEventBusProps {
  readonly eventBusName: string;
  /** Account IDs allowed to put events (a CommaDelimitedList parameter's value; `['']` for none). */
  readonly spokeAccountIds: string[];
  /** Organization whose accounts may put events (a parameter's value; `''` for none). */
  readonly spokeOrganizationId: string;
  readonly logRetention: logs.RetentionDays;
}

/**
 * The bus spoke accounts forward their Auto Scaling and EKS change events to, and a rule that
 * records those events in a log group, the inventory's change feed.
 */
export class SpokeEventBus extends Construct {
  public readonly bus: events.EventBus;
  public readonly changeLog: logs.LogGroup;
  public readonly changes: events.Rule;

  constructor(scope: Construct, id: string, props: SpokeEventBusProps) {
    super(scope, id);
    const stack = Stack.of(this);

    this.bus = new events.EventBus(this, 'Bus', {
      eventBusName: props.eventBusName,
      description: 'Receives Auto Scaling and EKS change events forwarded by curfew spokes',
    });
    this.allowPutEvents(props.spokeAccountIds, props.spokeOrganizationId);

    this.changeLog = new logs.LogGroup(this, 'ChangeLog', { retention: props.logRetention });
    // A native resource policy rather than the events-targets construct, which installs a
    // custom-resource Lambda to write this policy.
    new logs.ResourcePolicy(this, 'ChangeLogPolicy', {
      policyStatements: [
        new iam.PolicyStatement({
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          principals: [
            new iam.ServicePrincipal('events.amazonaws.com'),
            new iam.ServicePrincipal('delivery.logs.amazonaws.com'),
          ],
          resources: [this.changeLog.logGroupArn],
        }),
      ],
    });
    const changeLogTarget = stack.formatArn({
      service: 'logs',
      resource: 'log-group',
      resourceName: this.changeLog.logGroupName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    this.changes = new events.Rule(this, 'Changes', {
      description: 'Records Auto Scaling and EKS changes in spoke accounts (inventory changes)',
      eventBus: this.bus,
      eventPattern: { source: ['aws.autoscaling', 'aws.eks'] },
      targets: [{ bind: () => ({ arn: changeLogTarget }) }],
    });
  }

  /**
   * Lets the listed accounts and/or the organization put events on the bus. Both are optional,
   * so each statement exists only when its value is set.
   */
  private allowPutEvents(accounts: string[], organization: string): void {
    const statement = (sid: string, condition: Record<string, unknown>) => ({
      Sid: sid,
      Effect: 'Allow',
      Principal: '*',
      Action: 'events:PutEvents',
      Resource: this.bus.eventBusArn,
      Condition: { StringEquals: condition },
    });
    const policies: [string, string, unknown, Record<string, unknown>][] = [
      // aws:PrincipalAccount rather than a principal list: it takes a list parameter as it is.
      ['HasSpokeAccounts', 'SpokeAccountsPutEvents', Fn.join('', accounts), { 'aws:PrincipalAccount': accounts }],
      ['HasSpokeOrganization', 'SpokeOrganizationPutEvents', organization, { 'aws:PrincipalOrgID': organization }],
    ];
    for (const [conditionId, sid, value, condition] of policies) {
      const isSet = new CfnCondition(this, conditionId, {
        expression: Fn.conditionNot(Fn.conditionEquals(value, '')),
      });
      isSet.overrideLogicalId(conditionId);
      const policy = new events.CfnEventBusPolicy(this, sid, {
        eventBusName: this.bus.eventBusName,
        statementId: sid,
        statement: statement(sid, condition),
      });
      policy.cfnOptions.condition = isSet;
    }
  }
}
