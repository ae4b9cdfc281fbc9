import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The dimensions the Lambdas' EMF metrics carry (curfew_core::metrics): low-cardinality only. */
export const ACTIONS = ['stop', 'start'] as const;
export const KINDS = ['asg', 'nodegroup'] as const;

/** The period the dashboard and the metric alarms look at. */
const PERIOD = Duration.minutes(5);

export interface CurfewMetricsProps {
  /** The namespace the Lambdas write their EMF metrics to. */
  readonly namespace: string;
}

/**
 * The EMF metrics the poller, router and worker write (docs/OPERATIONS.md "Metrics"), as
 * CloudWatch metric objects: the same names, units and dimension sets the Rust code emits.
 */
export class CurfewMetrics {
  constructor(private readonly props: CurfewMetricsProps) {}

  /** `name` with the given dimensions, summed (counts) or as `statistic`. */
  public metric(name: string, dimensions: Record<string, string>, statistic = 'Sum', label?: string): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: this.props.namespace,
      metricName: name,
      dimensionsMap: dimensions,
      statistic,
      period: PERIOD,
      label,
    });
  }

  /** A per-target count (TargetsStopped, TargetsFailed, ...) of one action, summed over the kinds. */
  public targets(name: string, action: string, label?: string): cloudwatch.IMetric {
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    KINDS.forEach((kind, i) => (usingMetrics[`${action}${i}`] = this.metric(name, { Action: action, Kind: kind })));
    return new cloudwatch.MathExpression({
      expression: `FILL(${Object.keys(usingMetrics).join(', 0) + FILL(')}, 0)`,
      usingMetrics,
      period: PERIOD,
      label: label ?? `${name} (${action})`,
    });
  }

  /** Tasks that FAILED or were dead-lettered, every action and kind. */
  public failures(): cloudwatch.IMetric {
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    let i = 0;
    for (const name of ['TargetsFailed', 'TargetsDeadLettered']) {
      for (const action of ACTIONS) {
        for (const kind of KINDS) usingMetrics[`f${i++}`] = this.metric(name, { Action: action, Kind: kind });
      }
    }
    return new cloudwatch.MathExpression({
      expression: Object.keys(usingMetrics).map((id) => `FILL(${id}, 0)`).join(' + '),
      usingMetrics,
      period: PERIOD,
      label: 'Targets failed or dead-lettered',
    });
  }

  /** The poller's largest lag behind a fire time, either action, in seconds. */
  public pollerLag(): cloudwatch.IMetric {
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    ACTIONS.forEach((action, i) => (usingMetrics[`lag${i}`] = this.metric('PollerLag', { Action: action }, 'Maximum')));
    return new cloudwatch.MathExpression({
      expression: `MAX([${Object.keys(usingMetrics).map((id) => `FILL(${id}, 0)`).join(', ')}])`,
      usingMetrics,
      period: PERIOD,
      label: 'Poller lag (s)',
    });
  }
}

export interface HubDashboardProps {
  readonly metrics: CurfewMetrics;
  readonly dashboardName: string;
  readonly taskQueue: sqs.IQueue;
  readonly taskDeadLetters: sqs.IQueue;
  readonly routerDeadLetters: sqs.IQueue;
}

/** One dashboard: what the waves did, how long they took, the poller, the queues, AWS's pushback. */
export class HubDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: HubDashboardProps) {
    super(scope, id);
    const m = props.metrics;
    const unDimensioned = (name: string, label: string) => m.metric(name, {}, 'Sum', label);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: props.dashboardName });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Targets put to sleep and woken',
        left: [m.targets('TargetsStopped', 'stop', 'stopped'), m.targets('TargetsStarted', 'start', 'started')],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Targets skipped, failed, dead-lettered',
        left: [
          ...ACTIONS.map((a) => m.targets('TargetsSkipped', a)),
          m.failures(),
        ],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Operation duration (s)',
        left: ACTIONS.map((a) => m.metric('OperationDuration', { Action: a }, 'Maximum', `${a} (max)`)),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Poller lag behind the fire time (s)',
        left: [m.pollerLag()],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Throttle retries and STS session cache',
        left: [unDimensioned('ThrottleRetries', 'throttle retries')],
        right: [unDimensioned('StsCacheHits', 'STS cache hits'), unDimensioned('StsCacheMisses', 'AssumeRole calls')],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Queues',
        left: [props.taskQueue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum', label: 'task queue' })],
        right: [
          props.taskDeadLetters.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum', label: 'task DLQ' }),
          props.routerDeadLetters.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum', label: 'router DLQ' }),
        ],
        width: 24,
      }),
    );
  }
}
