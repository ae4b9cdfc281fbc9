import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { DELETION_PROTECTION_CONTEXT, INVENTORY_MINUTES_CONTEXT, SPOKE_ROLE_NAME_CONTEXT } from '../lib/app';
import { CurfewHub, DEFAULT_LEASE, LEASE_MARGIN, POLLER_LAG_ALARM_SECONDS, TIMEOUTS } from '../lib/hub-stack';
import { FUNCTION_NAMES, HUB_EVENT_BUS_NAME, HUB_ROUTER_ROLE_NAME, HUB_WORKER_ROLE_NAME } from '../lib/names';
import { actionsOf, buildForTest, render, resource, resourcesOf, statementsOfRole, templates } from './support';

const hub = () => templates().hub;
const json = () => hub().toJSON();

function functionNamed(name: string) {
  const [id, body] = Object.entries(hub().findResources('AWS::Lambda::Function', {
    Properties: { FunctionName: name },
  }))[0] ?? [];
  assert.ok(id, `no function named ${name}`);
  return { id: id as string, body: body as any };
}

function roleIdOf(fn: { body: any }): string {
  return fn.body.Properties.Role['Fn::GetAtt'][0];
}

function mappingFor(functionId: string) {
  const found = Object.values(hub().findResources('AWS::Lambda::EventSourceMapping')).filter(
    (m: any) => m.Properties.FunctionName.Ref === functionId,
  );
  assert.equal(found.length, 1, `expected one event source mapping for ${functionId}`);
  return (found[0] as any).Properties;
}

describe('state table', () => {
  test('is keyed by pk and sk (strings), on demand, with the expires_at TTL', () => {
    hub().hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
    });
  });

  test('has gsi1 (schedules by next fire) and gsi2 (operations by time), projecting all attributes, and gsi3 (targets asleep), projecting only the baseline', () => {
    hub().hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: [
        {
          IndexName: 'gsi1',
          KeySchema: [
            { AttributeName: 'gsi1pk', KeyType: 'HASH' },
            { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
        {
          IndexName: 'gsi2',
          KeySchema: [
            { AttributeName: 'gsi2pk', KeyType: 'HASH' },
            { AttributeName: 'gsi2sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
        {
          IndexName: 'gsi3',
          KeySchema: [
            { AttributeName: 'gsi3pk', KeyType: 'HASH' },
            { AttributeName: 'gsi3sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['baseline'] },
        },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'gsi1pk', AttributeType: 'S' },
        { AttributeName: 'gsi1sk', AttributeType: 'S' },
        { AttributeName: 'gsi2pk', AttributeType: 'S' },
        { AttributeName: 'gsi2sk', AttributeType: 'S' },
        { AttributeName: 'gsi3pk', AttributeType: 'S' },
        { AttributeName: 'gsi3sk', AttributeType: 'S' },
      ]),
    });
  });

  test('has point-in-time recovery on', () => {
    hub().hasResourceProperties('AWS::DynamoDB::Table', {
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  test('is protected from deletion by default and kept when the stack is deleted', () => {
    hub().hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({ DeletionProtectionEnabled: true }),
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  test('deletion protection can be turned off with context for throw-away environments', () => {
    const { hub: stack } = buildForTest({ [DELETION_PROTECTION_CONTEXT]: 'false' });
    Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({ DeletionProtectionEnabled: false }),
      DeletionPolicy: 'Delete',
    });
  });
});

describe('queues', () => {
  const consumers = [
    ['router', FUNCTION_NAMES.router],
    ['worker', FUNCTION_NAMES.worker],
  ] as const;

  for (const [label, name] of consumers) {
    test(`the ${label}'s queue hides a message for at least 6x the ${label}'s timeout`, () => {
      const fn = functionNamed(name);
      const queueId = mappingFor(fn.id).EventSourceArn['Fn::GetAtt'][0];
      const queue = json().Resources[queueId].Properties;
      assert.ok(
        queue.VisibilityTimeout >= 6 * fn.body.Properties.Timeout,
        `visibility ${queue.VisibilityTimeout}s < 6 x ${fn.body.Properties.Timeout}s`,
      );
    });

    test(`the ${label}'s queue redrives to its own DLQ after 5 receives`, () => {
      const fn = functionNamed(name);
      const queueId = mappingFor(fn.id).EventSourceArn['Fn::GetAtt'][0];
      const redrive = json().Resources[queueId].Properties.RedrivePolicy;
      assert.equal(redrive.maxReceiveCount, 5);
      const dlqId = redrive.deadLetterTargetArn['Fn::GetAtt'][0];
      const dlq = json().Resources[dlqId];
      assert.equal(dlq.Type, 'AWS::SQS::Queue');
      assert.notEqual(dlqId, queueId);
      assert.equal(dlq.Properties.MessageRetentionPeriod, 14 * 24 * 3600);
    });
  }

  test('every queue is encrypted and refuses plain HTTP', () => {
    const queues = hub().findResources('AWS::SQS::Queue');
    assert.equal(Object.keys(queues).length, 4);
    for (const [id, q] of Object.entries(queues)) {
      assert.equal((q as any).Properties.SqsManagedSseEnabled, true, `${id} not encrypted`);
      hub().hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
  });
});

describe('functions', () => {
  for (const name of Object.values(FUNCTION_NAMES)) {
    test(`${name} is an arm64 provided.al2023 bootstrap with active tracing and JSON logs`, () => {
      hub().hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: name,
        Architectures: ['arm64'],
        Runtime: 'provided.al2023',
        Handler: 'bootstrap',
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: Match.anyValue() } },
      });
    });

    test(`${name} gets the table, both queue URLs and RUST_LOG=info`, () => {
      const env = functionNamed(name).body.Properties.Environment.Variables;
      assert.deepEqual(env.CURFEW_TABLE, { Ref: resource(hub(), 'AWS::DynamoDB::Table', 'State').id });
      assert.match(env.CURFEW_ROUTER_QUEUE_URL.Ref, /^RouterQueue[0-9A-F]{8}$/);
      assert.match(env.CURFEW_TASK_QUEUE_URL.Ref, /^TaskQueue[0-9A-F]{8}$/);
      assert.equal(env.RUST_LOG, 'info');
    });
  }

  test('the poller has its catch-up window and drift interval, the worker its lease, the router and worker their inventory age and the topic', () => {
    const env = (name: string) => functionNamed(name).body.Properties.Environment.Variables;
    assert.equal(env(FUNCTION_NAMES.poller).CURFEW_CATCHUP_MINUTES, '60');
    assert.equal(env(FUNCTION_NAMES.poller).CURFEW_DRIFT_MINUTES, '60');
    assert.equal(env(FUNCTION_NAMES.worker).CURFEW_LEASE_SECONDS, '900');
    assert.equal(env(FUNCTION_NAMES.router).CURFEW_INVENTORY_MINUTES, '15');
    assert.equal(env(FUNCTION_NAMES.worker).CURFEW_INVENTORY_MINUTES, '15');
    const topic = { Ref: resource(hub(), 'AWS::SNS::Topic', 'Notifications').id };
    assert.deepEqual(env(FUNCTION_NAMES.router).CURFEW_NOTIFY_TOPIC_ARN, topic);
    assert.deepEqual(env(FUNCTION_NAMES.worker).CURFEW_NOTIFY_TOPIC_ARN, topic);
    assert.equal(env(FUNCTION_NAMES.poller).CURFEW_NOTIFY_TOPIC_ARN, undefined);
  });

  test('the router trusts the inventory cache as long as the context says, and refuses nonsense', () => {
    const { hub: stack } = buildForTest({ [INVENTORY_MINUTES_CONTEXT]: '1440' });
    const router = Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function')).find(
      (f: any) => f.Properties.FunctionName === FUNCTION_NAMES.router,
    ) as any;
    assert.equal(router.Properties.Environment.Variables.CURFEW_INVENTORY_MINUTES, '1440');
    for (const bad of ['-1', '10081', '1.5', 'a day']) {
      assert.throws(() => buildForTest({ [INVENTORY_MINUTES_CONTEXT]: bad }), /curfew:inventoryMinutes/);
    }
  });

  test('the worker knows its timeout, and its lease outlasts that timeout by the margin', () => {
    const env = functionNamed(FUNCTION_NAMES.worker).body.Properties.Environment.Variables;
    const timeout = functionNamed(FUNCTION_NAMES.worker).body.Properties.Timeout;
    assert.equal(env.CURFEW_WORKER_TIMEOUT_SECONDS, String(timeout));
    assert.equal(env.CURFEW_WORKER_TIMEOUT_SECONDS, String(TIMEOUTS.worker.toSeconds()));
    assert.equal(LEASE_MARGIN.toSeconds(), 60);
    assert.ok(DEFAULT_LEASE.toSeconds() >= TIMEOUTS.worker.toSeconds() + LEASE_MARGIN.toSeconds());
    assert.ok(Number(env.CURFEW_LEASE_SECONDS) >= timeout + LEASE_MARGIN.toSeconds());
  });

  test("the worker's CURFEW_TASK_MAX_RECEIVES is its task queue's maxReceiveCount", () => {
    const fn = functionNamed(FUNCTION_NAMES.worker);
    const queueId = mappingFor(fn.id).EventSourceArn['Fn::GetAtt'][0];
    const redrive = json().Resources[queueId].Properties.RedrivePolicy;
    assert.equal(fn.body.Properties.Environment.Variables.CURFEW_TASK_MAX_RECEIVES, String(redrive.maxReceiveCount));
  });

  test('the worker reads the audit key from its secret, may read only that one, and names its role as actor', () => {
    const env = functionNamed(FUNCTION_NAMES.worker).body.Properties.Environment.Variables;
    const secret = resource(hub(), 'AWS::SecretsManager::Secret', 'AuditKey');
    assert.deepEqual(env.CURFEW_AUDIT_KEY_SECRET, { Ref: secret.id });
    assert.equal(env.CURFEW_AUDIT_KEY, undefined, 'the key itself is never in the configuration');
    assert.deepEqual(env.CURFEW_AUDIT_ACTOR['Fn::GetAtt'][1], 'Arn');
    const reads = Object.values(json().Resources as Record<string, any>)
      .filter((r) => r.Type === 'AWS::IAM::Policy')
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((st: any) => [st.Action].flat().includes('secretsmanager:GetSecretValue'));
    assert.equal(reads.length, 1);
    assert.deepEqual(reads[0].Resource, { Ref: secret.id });
    for (const name of [FUNCTION_NAMES.poller, FUNCTION_NAMES.router]) {
      assert.equal(functionNamed(name).body.Properties.Environment.Variables.CURFEW_AUDIT_KEY_SECRET, undefined);
    }
  });

  test('a lease shorter than the worker timeout plus the margin is refused at synth', () => {
    const app = () => new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    assert.throws(() => new CurfewHub(app(), 'ShortLease', { leaseSeconds: 120 }), /at least 180/);
    assert.doesNotThrow(() => new CurfewHub(app(), 'JustLongEnough', { leaseSeconds: 180 }));
  });

  test('timeouts are 60s (poller), 300s (router) and 120s (worker)', () => {
    assert.equal(functionNamed(FUNCTION_NAMES.poller).body.Properties.Timeout, 60);
    assert.equal(functionNamed(FUNCTION_NAMES.router).body.Properties.Timeout, 300);
    assert.equal(functionNamed(FUNCTION_NAMES.worker).body.Properties.Timeout, 120);
  });

  test('every log group has a retention period', () => {
    const groups = Object.values(hub().findResources('AWS::Logs::LogGroup'));
    assert.equal(groups.length, 4);
    for (const g of groups) assert.ok((g as any).Properties.RetentionInDays > 0);
  });
});

describe('event sources', () => {
  test('the worker takes one task chunk at a time, reports item failures and is capped by WorkerMaxConcurrency', () => {
    const mapping = mappingFor(functionNamed(FUNCTION_NAMES.worker).id);
    assert.equal(mapping.BatchSize, 1);
    assert.deepEqual(mapping.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.deepEqual(mapping.ScalingConfig, { MaximumConcurrency: { Ref: 'WorkerMaxConcurrency' } });
  });

  test('WorkerMaxConcurrency defaults to 50 and allows 2..1000', () => {
    hub().hasParameter('WorkerMaxConcurrency', { Type: 'Number', Default: 50, MinValue: 2, MaxValue: 1000 });
  });

  test('the router takes batches of 10 from its queue and reports item failures', () => {
    const mapping = mappingFor(functionNamed(FUNCTION_NAMES.router).id);
    assert.equal(mapping.BatchSize, 10);
    assert.deepEqual(mapping.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.match(mapping.EventSourceArn['Fn::GetAtt'][0], /^RouterQueue[0-9A-F]{8}$/);
  });

  test('the poller runs on an EventBridge rate(1 minute) rule', () => {
    hub().hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [functionNamed(FUNCTION_NAMES.poller).id, 'Arn'] } })],
    });
    hub().hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [functionNamed(FUNCTION_NAMES.poller).id, 'Arn'] },
    });
  });
});

describe('hub roles', () => {
  const roleOf = (name: string) => roleIdOf(functionNamed(name));

  test('the router and worker roles have the fixed names spokes trust', () => {
    assert.equal(json().Resources[roleOf(FUNCTION_NAMES.router)].Properties.RoleName, HUB_ROUTER_ROLE_NAME);
    assert.equal(json().Resources[roleOf(FUNCTION_NAMES.worker)].Properties.RoleName, HUB_WORKER_ROLE_NAME);
  });

  test('only the router and worker may assume spoke roles, and only roles named curfew-spoke', () => {
    for (const name of Object.values(FUNCTION_NAMES)) {
      const assume = statementsOfRole(hub(), roleOf(name)).filter((s) => actionsOf(s).includes('sts:AssumeRole'));
      if (name === FUNCTION_NAMES.poller) {
        assert.equal(assume.length, 0);
        continue;
      }
      assert.equal(assume.length, 1);
      assert.deepEqual(resourcesOf(assume[0]).map(render), ['arn:${AWS::Partition}:iam::*:role/curfew-spoke']);
    }
  });

  test('the spoke role name the hub may assume follows the context setting', () => {
    const { hub: stack } = buildForTest({ [SPOKE_ROLE_NAME_CONTEXT]: 'ops-curfew' });
    const t = Template.fromStack(stack);
    const roleId = Object.keys(t.findResources('AWS::IAM::Role', { Properties: { RoleName: HUB_WORKER_ROLE_NAME } }))[0];
    const assume = statementsOfRole(t, roleId).find((s) => actionsOf(s).includes('sts:AssumeRole'));
    assert.deepEqual(resourcesOf(assume).map(render), ['arn:${AWS::Partition}:iam::*:role/ops-curfew']);
  });

  test('no hub policy grants a wildcard action, dynamodb:Scan or table-wide index access', () => {
    for (const [id, policy] of Object.entries(hub().findResources('AWS::IAM::Policy'))) {
      for (const s of (policy as any).Properties.PolicyDocument.Statement) {
        for (const action of actionsOf(s)) {
          assert.ok(!action.includes('*'), `${id} grants ${action}`);
          assert.notEqual(action, 'dynamodb:Scan', `${id} grants dynamodb:Scan`);
        }
        for (const r of resourcesOf(s).map(render)) assert.ok(!r.endsWith('/index/*'), `${id} grants ${r}`);
      }
    }
  });

  test('the poller reads gsi1 (due schedules) and gsi2 (enforced schedules) and sends only to the router queue', () => {
    const statements = statementsOfRole(hub(), roleOf(FUNCTION_NAMES.poller));
    const table = statements.find((s) => s.Sid === 'StateTable');
    assert.deepEqual(
      resourcesOf(table).map(render).map((r) => r.replace(/^\$\{StateTable[0-9A-F]{8}\.Arn\}/, 'TABLE')),
      ['TABLE', 'TABLE/index/gsi1', 'TABLE/index/gsi2'],
    );
    assert.ok(actionsOf(table).includes('dynamodb:Query'));
    const send = statements.filter((s) => actionsOf(s).includes('sqs:SendMessage'));
    assert.deepEqual(send.flatMap(resourcesOf).map(render).map((r) => r.replace(/[0-9A-F]{8}\.Arn/, '.Arn')), [
      '${RouterQueue.Arn}',
    ]);
  });

  test('the router reads the targets held asleep from gsi3, and the earlier layout\'s baselines from gsi1', () => {
    const table = statementsOfRole(hub(), roleOf(FUNCTION_NAMES.router)).find((s) => s.Sid === 'StateTable');
    assert.deepEqual(
      resourcesOf(table).map(render).map((r) => r.replace(/^\$\{StateTable[0-9A-F]{8}\.Arn\}/, 'TABLE')),
      ['TABLE', 'TABLE/index/gsi1', 'TABLE/index/gsi2', 'TABLE/index/gsi3'],
    );
  });

  test('the worker, which plans accounts, reads the targets held asleep from gsi3 and gsi1, and no other index', () => {
    const table = statementsOfRole(hub(), roleOf(FUNCTION_NAMES.worker)).find((s) => s.Sid === 'StateTable');
    assert.deepEqual(
      resourcesOf(table).map(render).map((r) => r.replace(/^\$\{StateTable[0-9A-F]{8}\.Arn\}/, 'TABLE')),
      ['TABLE', 'TABLE/index/gsi1', 'TABLE/index/gsi3'],
    );
    for (const action of ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:ConditionCheckItem', 'dynamodb:BatchWriteItem']) {
      assert.ok(actionsOf(table).includes(action), `the worker's fenced transactions and planning need ${action}`);
    }
  });

  test('every function that reads an operation may BatchGetItem its counter stripes', () => {
    for (const name of [FUNCTION_NAMES.poller, FUNCTION_NAMES.router, FUNCTION_NAMES.worker]) {
      const table = statementsOfRole(hub(), roleOf(name)).find((s) => s.Sid === 'StateTable');
      assert.ok(actionsOf(table).includes('dynamodb:BatchGetItem'), `${name} lacks dynamodb:BatchGetItem`);
    }
  });

  test('the router and worker may publish to the notification topic only; the poller may not publish', () => {
    const topic = `\${${resource(hub(), 'AWS::SNS::Topic', 'Notifications').id}}`;
    for (const name of Object.values(FUNCTION_NAMES)) {
      const publish = statementsOfRole(hub(), roleOf(name)).filter((s) => actionsOf(s).includes('sns:Publish'));
      if (name === FUNCTION_NAMES.poller) {
        assert.equal(publish.length, 0);
        continue;
      }
      assert.equal(publish.length, 1, name);
      assert.deepEqual(actionsOf(publish[0]), ['sns:Publish']);
      assert.deepEqual(resourcesOf(publish[0]).map(render), [topic]);
    }
  });

  test('the router may batch-write and send to both queues; the worker sends only to the task queue', () => {
    const router = statementsOfRole(hub(), roleOf(FUNCTION_NAMES.router));
    assert.ok(actionsOf(router.find((s) => s.Sid === 'StateTable')).includes('dynamodb:BatchWriteItem'));
    const routerSends = router.filter((s) => actionsOf(s).includes('sqs:SendMessage')).flatMap(resourcesOf).map(render);
    assert.equal(routerSends.length, 2);
    const worker = statementsOfRole(hub(), roleOf(FUNCTION_NAMES.worker));
    const workerSends = worker.filter((s) => actionsOf(s).includes('sqs:SendMessage')).flatMap(resourcesOf).map(render);
    assert.deepEqual(workerSends.map((r) => r.replace(/[0-9A-F]{8}\.Arn/, '.Arn')), ['${TaskQueue.Arn}']);
  });
});

describe('spoke events, notifications and alarms', () => {
  test('the hub bus is named curfew-hub and records spoke Auto Scaling and EKS events', () => {
    const bus = resource(hub(), 'AWS::Events::EventBus', 'SpokeEvents');
    assert.equal(bus.body.Properties.Name, HUB_EVENT_BUS_NAME);
    hub().hasResourceProperties('AWS::Events::Rule', {
      EventBusName: { Ref: bus.id },
      EventPattern: { source: ['aws.autoscaling', 'aws.eks'] },
    });
  });

  test('spoke changes on the hub bus are sent to the router, which invalidates the inventory', () => {
    const bus = resource(hub(), 'AWS::Events::EventBus', 'SpokeEvents');
    const router = resource(hub(), 'AWS::Lambda::Function', 'Router');
    hub().hasResourceProperties('AWS::Events::Rule', {
      EventBusName: { Ref: bus.id },
      EventPattern: { source: ['aws.autoscaling', 'aws.eks'] },
      Targets: Match.arrayWith([Match.objectLike({ Arn: { 'Fn::GetAtt': [router.id, 'Arn'] } })]),
    });
    hub().hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [router.id, 'Arn'] },
    });
  });

  test('spoke accounts and an organization may put events on the bus only when their parameter is set', () => {
    const policies = hub().findResources('AWS::Events::EventBusPolicy');
    const conditions = Object.values(policies).map((p: any) => p.Condition).sort();
    assert.deepEqual(conditions, ['HasSpokeAccounts', 'HasSpokeOrganization']);
    hub().hasResourceProperties('AWS::Events::EventBusPolicy', {
      Statement: Match.objectLike({
        Action: 'events:PutEvents',
        Condition: { StringEquals: { 'aws:PrincipalAccount': { Ref: 'SpokeAccountIds' } } },
      }),
    });
    hub().hasResourceProperties('AWS::Events::EventBusPolicy', {
      Statement: Match.objectLike({
        Action: 'events:PutEvents',
        Condition: { StringEquals: { 'aws:PrincipalOrgID': { Ref: 'SpokeOrganizationId' } } },
      }),
    });
  });

  test('the notification topic is encrypted with a rotating key and refuses plain HTTP', () => {
    const key = resource(hub(), 'AWS::KMS::Key', 'NotificationsKey');
    assert.equal(key.body.Properties.EnableKeyRotation, true);
    hub().hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [key.id, 'Arn'] } });
    hub().hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });

  test('each DLQ has a depth alarm that notifies the topic', () => {
    const topic = { Ref: resource(hub(), 'AWS::SNS::Topic', 'Notifications').id };
    for (const prefix of ['RouterQueueDeadLetters', 'TaskQueueDeadLetters']) {
      const dlq = resource(hub(), 'AWS::SQS::Queue', prefix);
      hub().hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlq.id, 'QueueName'] } }],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
        AlarmActions: [topic],
      });
    }
  });

  test('worker errors raise an alarm that notifies the topic', () => {
    hub().hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionNamed(FUNCTION_NAMES.worker).id } }],
      Threshold: 0,
      AlarmActions: [{ Ref: resource(hub(), 'AWS::SNS::Topic', 'Notifications').id }],
    });
  });

  test('broken schedules in the poller log are counted and raise an alarm that notifies the topic', () => {
    const pollerLogs = resource(hub(), 'AWS::Logs::LogGroup', 'PollerLogs');
    hub().hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: { Ref: pollerLogs.id },
      FilterPattern: '{ $.fields.metric = "BrokenSchedule" }',
      MetricTransformations: [{ MetricNamespace: 'curfew', MetricName: 'BrokenSchedules', MetricValue: '1' }],
    });
    hub().hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'curfew',
      MetricName: 'BrokenSchedules',
      Threshold: 0,
      AlarmActions: [{ Ref: resource(hub(), 'AWS::SNS::Topic', 'Notifications').id }],
    });
  });

  test('failed targets and a late poller raise alarms on the EMF metrics that notify the topic', () => {
    const topic = { Ref: resource(hub(), 'AWS::SNS::Topic', 'Notifications').id };
    const alarms = Object.values(hub().findResources('AWS::CloudWatch::Alarm')) as any[];
    const named = (part: string) => alarms.find((a) => a.Properties.AlarmDescription.includes(part));
    const failures = named('Targets failed or were dead-lettered');
    assert.ok(failures, 'a failure alarm');
    assert.deepEqual(failures.Properties.AlarmActions, [topic]);
    const failed = failures.Properties.Metrics.filter((q: any) => q.MetricStat);
    assert.equal(failed.length, 8, 'failed and dead-lettered, by action and kind');
    for (const q of failed) {
      assert.equal(q.MetricStat.Metric.Namespace, 'curfew');
      assert.deepEqual(q.MetricStat.Metric.Dimensions.map((d: any) => d.Name).sort(), ['Action', 'Kind']);
    }
    const lag = named('The poller fired a schedule more than');
    assert.equal(lag.Properties.Threshold, POLLER_LAG_ALARM_SECONDS);
    assert.deepEqual(lag.Properties.AlarmActions, [topic]);
    const lagged = lag.Properties.Metrics.filter((q: any) => q.MetricStat);
    assert.deepEqual(lagged.map((q: any) => q.MetricStat.Metric.MetricName), ['PollerLag', 'PollerLag']);
  });

  test('a dashboard graphs the EMF metrics the Lambdas write, by the names they use', () => {
    const [dashboard] = Object.values(hub().findResources('AWS::CloudWatch::Dashboard')) as any[];
    assert.ok(dashboard, 'a dashboard');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const name of ['TargetsStopped', 'TargetsStarted', 'TargetsSkipped', 'TargetsFailed', 'TargetsDeadLettered',
      'OperationDuration', 'PollerLag', 'ThrottleRetries', 'StsCacheHits', 'StsCacheMisses']) {
      assert.ok(body.includes(name), `the dashboard shows ${name}`);
    }
  });

  test('outputs give a user the table, queues, router function, bus and topic', () => {
    const outputs = Object.keys(json().Outputs);
    for (const name of ['TableName', 'RouterQueueUrl', 'TaskQueueUrl', 'TaskDeadLetterQueueUrl', 'RouterFunctionName', 'HubEventBusArn', 'NotificationTopicArn']) {
      assert.ok(outputs.includes(name), `missing output ${name}`);
    }
    hub().hasOutput('RouterFunctionName', { Value: { Ref: functionNamed(FUNCTION_NAMES.router).id } });
  });

  test("the task DLQ output is the worker's queue's DLQ, named for curfew dlq", () => {
    const workerQueueId = mappingFor(functionNamed(FUNCTION_NAMES.worker).id).EventSourceArn['Fn::GetAtt'][0];
    const dlqId = json().Resources[workerQueueId].Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0];
    const output = json().Outputs.TaskDeadLetterQueueUrl;
    assert.deepEqual(output.Value, { Ref: dlqId });
    assert.match(output.Description, /CURFEW_TASK_DLQ_URL/);
  });
});
