import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** The period every curfew alarm looks at. */
export const ALARM_PERIOD = Duration.minutes(5);

export interface NotificationsProps {
  /** Keep the topic's key when the stack is deleted. @default true */
  readonly retainKey?: boolean;
}

/** The topic operators subscribe to (alarms, operation notices), encrypted with its own key. */
export class Notifications extends Construct {
  public readonly key: kms.Key;
  public readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: NotificationsProps = {}) {
    super(scope, id);
    // A customer managed key, because CloudWatch alarms cannot publish to a topic encrypted with
    // the AWS managed aws/sns key (whose key policy cannot be changed to let CloudWatch in).
    this.key = new kms.Key(this, 'Key', {
      description: 'Encrypts the curfew notification topic',
      enableKeyRotation: true,
      removalPolicy: props.retainKey === false ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    );
    this.topic = new sns.Topic(this, 'Topic', { displayName: 'curfew', masterKey: this.key, enforceSSL: true });
  }

  /**
   * What `topic.grantPublish` gives, without its `kms:GenerateDataKey*` wildcard: publishing to
   * an encrypted topic needs the data key calls on this key only.
   */
  public grantPublish(role: iam.IRole): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'Notify', actions: ['sns:Publish'], resources: [this.topic.topicArn] }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'NotifyEncrypted',
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.key.keyArn],
      }),
    );
  }

  /** An alarm, notifying this topic when raised and when cleared, on any positive value of `metric`. */
  public alarmWhenPositive(scope: Construct, id: string, description: string, metric: cloudwatch.IMetric): cloudwatch.Alarm {
    return this.alarmAbove(scope, id, description, metric, 0);
  }

  /** An alarm, notifying this topic when raised and when cleared, on a value of `metric` above `threshold`. */
  public alarmAbove(scope: Construct, id: string, description: string, metric: cloudwatch.IMetric, threshold: number): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(scope, id, {
      alarmDescription: description,
      metric,
      threshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const action = new cwActions.SnsAction(this.topic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    return alarm;
  }
}
