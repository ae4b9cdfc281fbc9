import { CfnOutput, CfnParameter, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { acknowledge } from './acknowledge';
import { CurfewMetrics, HubDashboard } from './hub/dashboard';
import { ALARM_PERIOD, Notifications } from './hub/notifications';
import { RustLambda } from './hub/rust-lambda';
import { SpokeEventBus } from './hub/spoke-event-bus';
import { StateTable, TABLE_LAYOUT } from './hub/state-table';
import { WorkQueue } from './hub/work-queue';
import {
  DEFAULT_SPOKE_ROLE_NAME,
  FUNCTION_NAMES,
  HUB_EVENT_BUS_NAME,
  HUB_ROUTER_ROLE_NAME,
  HUB_WORKER_ROLE_NAME,
  LAMBDA_CRATES,
} from './names';
import { findRepoRoot } from './repo';

/** Timeouts of the three functions; each queue's visibility timeout is derived from its consumer's. */
export const TIMEOUTS = {
  poller: Duration.seconds(60),
  router: Duration.seconds(300),
  worker: Duration.seconds(120),
} as const;

/**
 * How much longer than the worker's timeout its per-target lease must last (the worker refuses
 * to start otherwise, see `settings_from_env` in crates/aws/src/hub.rs): a lease that expired
 * while its worker still ran would let a second worker act on the same target.
 */
export const LEASE_MARGIN = Duration.seconds(60);

/** The worker's per-target lease unless `leaseSeconds` says otherwise. */
export const DEFAULT_LEASE = Duration.seconds(900);

/** Namespace of the metrics curfew derives from its logs. */
export const METRIC_NAMESPACE = 'curfew';
/** The poller runs every minute: a fire more than five minutes late means it was down or stuck. */
export const POLLER_LAG_ALARM_SECONDS = 300;

/** Messages per SQS batch for the router (SendMessageBatch's own maximum is 10). */
export const SQS_BATCH_SIZE = 10;

/**
 * Messages per batch for the worker: one task chunk of up to 100 targets of one account
 * (`TASK_BATCH_SIZE` in crates/core/src/service/mod.rs), so invocations stay about the same size.
 */
export const TASK_BATCH_SIZE = 1;

/** How often the poller looks for due schedules. */
export const POLL_SCHEDULE = events.Schedule.rate(Duration.minutes(1));

export interface CurfewHubProps extends StackProps {
  /** Repository root holding `lambdas/`. @default found by walking up from this file */
  readonly repoRoot?: string;
  /** Name of the role in every spoke account; the hub may assume only roles with this name. */
  readonly spokeRoleName?: string;
  /** DynamoDB deletion protection (and RETAIN on stack deletion). @default true */
  readonly deletionProtection?: boolean;
  /** Retention of the functions' and the spoke-change log groups. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /** Poller catch-up window after downtime, in minutes (`CURFEW_CATCHUP_MINUTES`). @default 60 */
  readonly catchupMinutes?: number;
  /**
   * How often the poller starts a drift check of the targets curfew holds asleep, in minutes
   * (`CURFEW_DRIFT_MINUTES`; 0 turns it off). @default 60
   */
  readonly driftMinutes?: number;
  /**
   * How often the poller starts a pass of each `--enforce` window schedule in its asleep time,
   * in minutes (`CURFEW_ENFORCE_MINUTES`; 0 turns enforcement off). Each pass reads every
   * target of the schedule's selector. @default 1
   */
  readonly enforceMinutes?: number;
  /**
   * How long the router trusts an account and region's inventory cache, in minutes
   * (`CURFEW_INVENTORY_MINUTES`, at most 10080) before it lists them live again. The spokes'
   * change events clear an entry at once, so with CloudTrail in every spoke and the spoke stack in
   * every managed region this only bounds a missed event: raise it above the time between waves
   * (1440) and a wave lists live only where something changed, elsewhere assuming each spoke role
   * once, in the worker. Without change events, it is how late a new group can be seen.
   * @default 15
   */
  readonly inventoryMinutes?: number;
  /**
   * Worker per-target lease, in seconds (`CURFEW_LEASE_SECONDS`): at least the worker's timeout
   * plus `LEASE_MARGIN` (180 s). @default 900
   */
  readonly leaseSeconds?: number;
  /**
   * CPU architecture of the three functions. arm64 (Graviton) is cheaper per GB-second; x86_64
   * is there for build machines without the aarch64 Rust target.
   * @default ARM_64
   */
  readonly architecture?: lambda.Architecture;
}

/**
 * The hub: the state table, the router and task queues (each with a DLQ), the poller, router and
 * worker Lambdas, the event bus spokes forward change events to, the notification topic and the
 * alarms that publish to it.
 */
export class CurfewHub extends Stack {
  public readonly stateTable: StateTable;
  public readonly routerQueue: WorkQueue;
  public readonly taskQueue: WorkQueue;
  public readonly notifications: Notifications;
  public readonly poller: RustLambda;
  public readonly router: RustLambda;
  public readonly worker: RustLambda;
  public readonly spokeEvents: SpokeEventBus;
  /** The key that signs the audit trail's chain heads; the worker reads it at cold start. */
  public readonly auditKey: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: CurfewHubProps = {}) {
    super(scope, id, {
      description: 'curfew hub: schedules EKS node groups and Auto Scaling groups to sleep and wake',
      ...props,
    });
    const spokeRoleName = props.spokeRoleName ?? DEFAULT_SPOKE_ROLE_NAME;
    const leaseSeconds = props.leaseSeconds ?? DEFAULT_LEASE.toSeconds();
    const minLeaseSeconds = TIMEOUTS.worker.toSeconds() + LEASE_MARGIN.toSeconds();
    if (!(leaseSeconds >= minLeaseSeconds)) {
      // The worker would refuse it at cold start; say so at synth instead.
      throw new Error(
        `leaseSeconds ${leaseSeconds} is shorter than the worker may run: it must be at least ` +
          `${minLeaseSeconds} (the worker's ${TIMEOUTS.worker.toSeconds()} s timeout plus ${LEASE_MARGIN.toSeconds()} s)`,
      );
    }
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    const workerMaxConcurrency = new CfnParameter(this, 'WorkerMaxConcurrency', {
      type: 'Number',
      default: 50,
      minValue: 2,
      maxValue: 1000,
      description:
        'Most worker invocations running at once (SQS event source maximum concurrency). ' +
        'Bounds the rate of Auto Scaling/EKS API calls across all spokes.',
    });
    const spokeAccountIds = new CfnParameter(this, 'SpokeAccountIds', {
      type: 'CommaDelimitedList',
      default: '',
      description:
        'Spoke account IDs allowed to forward change events to the hub bus (comma-separated). ' +
        'Leave empty when SpokeOrganizationId covers them.',
    });
    const spokeOrganizationId = new CfnParameter(this, 'SpokeOrganizationId', {
      type: 'String',
      default: '',
      allowedPattern: '^(o-[a-z0-9]{10,32})?$',
      description: 'AWS Organizations ID whose accounts may forward change events to the hub bus (optional).',
    });

    this.stateTable = new StateTable(this, 'State', { deletionProtection: props.deletionProtection });
    this.routerQueue = new WorkQueue(this, 'RouterQueue', { consumerTimeout: TIMEOUTS.router });
    this.taskQueue = new WorkQueue(this, 'TaskQueue', { consumerTimeout: TIMEOUTS.worker });
    this.notifications = new Notifications(this, 'Notifications', { retainKey: props.deletionProtection !== false });
    const table = this.stateTable.table;

    // --- Roles ------------------------------------------------------------------------------
    const lambdaPrincipal = new iam.ServicePrincipal('lambda.amazonaws.com');
    const pollerRole = new iam.Role(this, 'PollerRole', {
      assumedBy: lambdaPrincipal,
      description: 'curfew poller: fires due schedules',
    });
    const routerRole = new iam.Role(this, 'RouterRole', {
      roleName: HUB_ROUTER_ROLE_NAME,
      assumedBy: lambdaPrincipal,
      description: 'curfew router: resolves operations to targets and fans out tasks',
    });
    const workerRole = new iam.Role(this, 'WorkerRole', {
      roleName: HUB_WORKER_ROLE_NAME,
      assumedBy: lambdaPrincipal,
      description: 'curfew worker: scales one target per task in a spoke account',
    });

    // No dynamodb:Scan for any function: every hot-path read is a GetItem or a Query. There is no
    // TransactWriteItems action either: a transaction is authorized by the actions inside it
    // (PutItem, UpdateItem, DeleteItem, ConditionCheckItem).
    const { schedulesByNextFire: gsi1, operationsByTime: gsi2, asleepTargets: gsi3 } = TABLE_LAYOUT;
    // BatchGetItem: reading a running operation sums its counter stripes in one call. The poller
    // queries gsi1 for the due schedules and gsi2 for the enforced ones (`ENFORCE`).
    this.stateTable.grant(pollerRole, [gsi1.indexName, gsi2.indexName],
      ['GetItem', 'BatchGetItem', 'Query', 'PutItem', 'UpdateItem', 'ConditionCheckItem']);
    // The router's drift-check shards query gsi3 for the targets held asleep (and gsi1 for
    // baseline items of the earlier layout).
    this.stateTable.grant(routerRole, [gsi1.indexName, gsi2.indexName, gsi3.indexName],
      ['GetItem', 'BatchGetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'ConditionCheckItem']);
    // The worker plans each account it is sent (an account plan: it lists the account, writes
    // the tasks and caches the listing with BatchWriteItem), so it needs what the router's
    // planning needs: gsi3 (and gsi1) for a drift check's targets held asleep. Its per-target
    // work reads and writes items by key only; once per process and account-region it asks
    // gsi1 whether any baseline item of the earlier layout is left there.
    this.stateTable.grant(workerRole, [gsi1.indexName, gsi3.indexName],
      ['GetItem', 'BatchGetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'ConditionCheckItem']);

    this.routerQueue.queue.grantSendMessages(pollerRole);
    this.routerQueue.queue.grantSendMessages(routerRole);
    this.taskQueue.queue.grantSendMessages(routerRole);
    // A worker that plans an account sends the account's other chunks on.
    this.taskQueue.queue.grantSendMessages(workerRole);
    // The router and the worker settle operations and meet refused spoke roles, and the worker
    // gives tasks up and waits on UPDATING node groups: both publish notices
    // (docs/NOTIFICATIONS.md). The poller publishes none.
    this.notifications.grantPublish(routerRole);
    this.notifications.grantPublish(workerRole);

    // Spoke accounts are registered at run time (`curfew account add`), so the account is a
    // wildcard; the role name is fixed and each spoke's trust policy demands an ExternalId.
    const spokeRoleArn = this.formatArn({
      service: 'iam',
      region: '',
      account: '*',
      resource: 'role',
      resourceName: spokeRoleName,
    });
    for (const role of [routerRole, workerRole]) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: 'AssumeSpokeRole', actions: ['sts:AssumeRole'], resources: [spokeRoleArn] }),
      );
      acknowledge(
        role,
        `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::*:role/${spokeRoleName}]`,
        'Spoke accounts are added at run time (curfew account add), so the account cannot be ' +
          'listed at deploy time; the role name is fixed and every spoke trusts only this role ' +
          'with an ExternalId.',
      );
    }

    // --- Functions --------------------------------------------------------------------------
    const environment = {
      CURFEW_TABLE: table.tableName,
      CURFEW_ROUTER_QUEUE_URL: this.routerQueue.queue.queueUrl,
      CURFEW_TASK_QUEUE_URL: this.taskQueue.queue.queueUrl,
      RUST_LOG: 'info',
    };
    const common = { repoRoot: props.repoRoot ?? findRepoRoot(), logRetention, architecture: props.architecture };

    this.poller = new RustLambda(this, 'Poller', {
      ...common,
      ...LAMBDA_CRATES.poller,
      functionName: FUNCTION_NAMES.poller,
      description: 'curfew poller: every minute, turns due schedules into operations',
      role: pollerRole,
      timeout: TIMEOUTS.poller,
      memorySize: 256,
      environment: {
        ...environment,
        CURFEW_CATCHUP_MINUTES: String(props.catchupMinutes ?? 60),
        CURFEW_DRIFT_MINUTES: String(props.driftMinutes ?? 60),
        CURFEW_ENFORCE_MINUTES: String(props.enforceMinutes ?? 1),
      },
    });
    this.router = new RustLambda(this, 'Router', {
      ...common,
      ...LAMBDA_CRATES.router,
      functionName: FUNCTION_NAMES.router,
      description: 'curfew router: operation -> targets -> task messages; also invoked directly',
      role: routerRole,
      timeout: TIMEOUTS.router,
      memorySize: 512,
      environment: {
        ...environment,
        CURFEW_NOTIFY_TOPIC_ARN: this.notifications.topic.topicArn,
        CURFEW_INVENTORY_MINUTES: String(props.inventoryMinutes ?? 15),
      },
    });
    this.worker = new RustLambda(this, 'Worker', {
      ...common,
      ...LAMBDA_CRATES.worker,
      functionName: FUNCTION_NAMES.worker,
      description: 'curfew worker: assume spoke role, save/read baseline, scale, record',
      role: workerRole,
      timeout: TIMEOUTS.worker,
      memorySize: 256,
      environment: {
        ...environment,
        CURFEW_LEASE_SECONDS: String(leaseSeconds),
        // The worker refuses a lease shorter than this plus the margin.
        CURFEW_WORKER_TIMEOUT_SECONDS: String(TIMEOUTS.worker.toSeconds()),
        // On this receive of a task message the worker gives a still-waiting task up
        // (DEAD_LETTERED) so its operation can end: SQS moves the message to the DLQ next.
        CURFEW_TASK_MAX_RECEIVES: String(this.taskQueue.maxReceiveCount),
        CURFEW_NOTIFY_TOPIC_ARN: this.notifications.topic.topicArn,
        // The worker plans accounts (their targets from the inventory cache while it is fresh).
        CURFEW_INVENTORY_MINUTES: String(props.inventoryMinutes ?? 15),
      },
    });

    // --- Audit trail -------------------------------------------------------------------------
    // The worker records each target change in the audit trail under its own role, and signs
    // each chain's head with this key (HMAC-SHA256; docs/OPERATIONS.md "Audit trail"). It reads
    // the key once at cold start, so the key is never in the function's configuration.
    this.auditKey = new secretsmanager.Secret(this, 'AuditKey', {
      description: 'curfew: the key that signs the audit trail chain heads (HMAC-SHA256)',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    this.auditKey.grantRead(workerRole);
    this.worker.function.addEnvironment('CURFEW_AUDIT_KEY_SECRET', this.auditKey.secretArn);
    this.worker.function.addEnvironment('CURFEW_AUDIT_ACTOR', workerRole.roleArn);
    acknowledge(
      this.auditKey,
      'AwsSolutions-SMG4',
      'The audit key signs chain heads; a rotated key could no longer verify heads signed before, ' +
        'so it is replaced deliberately (docs/OPERATIONS.md), never on a timer',
    );

    new events.Rule(this, 'PollerSchedule', {
      description: 'Runs the curfew poller every minute',
      schedule: POLL_SCHEDULE,
      // A missed tick is harmless: the next one catches up on missed fire times.
      targets: [
        new targets.LambdaFunction(this.poller.function, { retryAttempts: 2, maxEventAge: Duration.minutes(5) }),
      ],
    });
    this.router.function.addEventSource(
      new SqsEventSource(this.routerQueue.queue, { batchSize: SQS_BATCH_SIZE, reportBatchItemFailures: true }),
    );
    this.worker.function.addEventSource(
      new SqsEventSource(this.taskQueue.queue, {
        batchSize: TASK_BATCH_SIZE,
        reportBatchItemFailures: true,
        maxConcurrency: workerMaxConcurrency.valueAsNumber,
      }),
    );

    // --- Spoke change events ----------------------------------------------------------------
    this.spokeEvents = new SpokeEventBus(this, 'SpokeEvents', {
      eventBusName: HUB_EVENT_BUS_NAME,
      spokeAccountIds: spokeAccountIds.valueAsList,
      spokeOrganizationId: spokeOrganizationId.valueAsString,
      logRetention,
    });
    // A spoke's Auto Scaling or EKS change invalidates that account-region's inventory cache:
    // the router's next operation there lists it live, so new groups are never missed.
    new events.Rule(this, 'SpokeChangesToRouter', {
      description: 'Sends spoke Auto Scaling and EKS changes to the router (inventory invalidation)',
      eventBus: this.spokeEvents.bus,
      eventPattern: { source: ['aws.autoscaling', 'aws.eks'] },
      targets: [new targets.LambdaFunction(this.router.function, { retryAttempts: 4, maxEventAge: Duration.hours(1) })],
    });

    // --- Alarms -----------------------------------------------------------------------------
    const alarm = this.notifications.alarmWhenPositive.bind(this.notifications, this);
    alarm('RouterDeadLettersAlarm', 'Operations the router gave up on are waiting in its DLQ',
      this.routerQueue.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: ALARM_PERIOD, statistic: 'Maximum' }));
    alarm('TaskDeadLettersAlarm', 'Tasks the worker gave up on are waiting in its DLQ',
      this.taskQueue.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: ALARM_PERIOD, statistic: 'Maximum' }));
    alarm('WorkerErrorsAlarm', 'The worker function failed (crash or timeout, not a reported item failure)',
      this.worker.function.metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' }));
    alarm('PollerErrorsAlarm', 'The poller function failed: schedules may not fire until it recovers',
      this.poller.function.metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' }));
    // A broken schedule does not fail the tick (the others must fire): the poller logs it with
    // `metric = "BrokenSchedule"` on every tick until it is deleted, and this counts those lines.
    const brokenSchedules = new logs.MetricFilter(this, 'BrokenSchedulesMetric', {
      logGroup: this.poller.logGroup,
      metricNamespace: METRIC_NAMESPACE,
      metricName: 'BrokenSchedules',
      filterPattern: logs.FilterPattern.stringValue('$.fields.metric', '=', 'BrokenSchedule'),
      metricValue: '1',
    });
    alarm('BrokenSchedulesAlarm', 'A stored schedule no longer reads as a schedule and does not fire: see the poller log (metric BrokenSchedule) or curfew schedule list',
      brokenSchedules.metric({ period: ALARM_PERIOD, statistic: 'Sum' }));

    // --- Metrics: the Lambdas' EMF lines (curfew_core::metrics) ---------------------------
    const metrics = new CurfewMetrics({ namespace: METRIC_NAMESPACE });
    alarm('TargetFailuresAlarm', 'Targets failed or were dead-lettered (curfew ops show / curfew dlq list say which and why)',
      metrics.failures());
    this.notifications.alarmAbove(this, 'PollerLagAlarm',
      `The poller fired a schedule more than ${POLLER_LAG_ALARM_SECONDS} s after its fire time: it was down or throttled (curfew health)`,
      metrics.pollerLag(), POLLER_LAG_ALARM_SECONDS);
    new HubDashboard(this, 'Dashboard', {
      metrics,
      dashboardName: `curfew-${this.stackName}`,
      taskQueue: this.taskQueue.queue,
      taskDeadLetters: this.taskQueue.deadLetterQueue,
      routerDeadLetters: this.routerQueue.deadLetterQueue,
    });

    // --- Outputs ----------------------------------------------------------------------------
    const outputs: [string, string, string][] = [
      ['TableName', table.tableName, 'export CURFEW_TABLE=<this>'],
      ['RouterQueueUrl', this.routerQueue.queue.queueUrl, 'export CURFEW_ROUTER_QUEUE_URL=<this>'],
      ['TaskQueueUrl', this.taskQueue.queue.queueUrl, 'export CURFEW_TASK_QUEUE_URL=<this>'],
      ['RouterDeadLetterQueueUrl', this.routerQueue.deadLetterQueue.queueUrl, 'Router DLQ (redrive from here)'],
      ['TaskDeadLetterQueueUrl', this.taskQueue.deadLetterQueue.queueUrl, 'export CURFEW_TASK_DLQ_URL=<this> (curfew dlq list | redrive)'],
      ['RouterFunctionName', this.router.function.functionName, 'aws lambda invoke --function-name <this> ...'],
      ['NotificationTopicArn', this.notifications.topic.topicArn, 'Subscribe for alarms and notices (docs/NOTIFICATIONS.md)'],
      ['HubEventBusArn', this.spokeEvents.bus.eventBusArn, 'The spoke stacks\' HubEventBusArn parameter'],
      ['RouterRoleArn', routerRole.roleArn, 'Trusted by every spoke role'],
      ['WorkerRoleArn', workerRole.roleArn, 'Trusted by every spoke role'],
      ['SpokeRoleName', spokeRoleName, 'The role name every spoke must use'],
      ['AuditKeySecretArn', this.auditKey.secretArn, 'export CURFEW_AUDIT_KEY=$(aws secretsmanager get-secret-value --secret-id <this> --query SecretString --output text) for curfew audit verify'],
    ];
    for (const [name, value, description] of outputs) new CfnOutput(this, name, { value, description });
  }
}
