import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/** The single-table layout the Rust state store (`curfew-aws`) reads and writes. */
export const TABLE_LAYOUT = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /**
   * Schedules by next fire time: the poller queries only the due ones (never a Scan). The same
   * index holds the baseline items of the earlier layout under `ASLEEP#<account>#<region>`
   * (still read, never written).
   */
  schedulesByNextFire: { indexName: 'gsi1', partitionKey: 'gsi1pk', sortKey: 'gsi1sk' },
  /** Operations, newest first. */
  operationsByTime: { indexName: 'gsi2', partitionKey: 'gsi2pk', sortKey: 'gsi2sk' },
  /**
   * The targets held asleep, under `ASLEEP#<account>#<region>`: each target's lease item while
   * it carries a baseline; and the audit chains' heads, under `AUDITHEADS#<bucket>` (keys only).
   * It projects only `baseline`, so neither the lease's own writes nor an audit append rewrite
   * an entry (a write that changes no projected attribute costs the index nothing). The
   * router's drift-check shards query it; `curfew audit verify` lists the heads from it.
   */
  asleepTargets: {
    indexName: 'gsi3', partitionKey: 'gsi3pk', sortKey: 'gsi3sk', nonKeyAttributes: ['baseline'],
  },
  /** Epoch seconds after which DynamoDB may delete an item (leases, finished tasks, fire keys). */
  ttlAttribute: 'expires_at',
} as const;

export interface StateTableProps {
  /**
   * Refuse `DeleteTable` (and keep the table when the stack is deleted). Turn it off only for
   * throw-away environments.
   * @default true
   */
  readonly deletionProtection?: boolean;
}

/** curfew's state: schedules, operations, tasks, baselines, leases, accounts and inventory. */
export class StateTable extends Construct {
  public readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: StateTableProps = {}) {
    super(scope, id);
    const deletionProtection = props.deletionProtection ?? true;
    const s = dynamodb.AttributeType.STRING;

    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE_LAYOUT.partitionKey, type: s },
      sortKey: { name: TABLE_LAYOUT.sortKey, type: s },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: TABLE_LAYOUT.ttlAttribute,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection,
      // Baselines are the only record of the sizes a stopped fleet wakes up to: losing the table
      // with the stack would strand every stopped group at zero.
      removalPolicy: deletionProtection ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });

    for (const index of [TABLE_LAYOUT.schedulesByNextFire, TABLE_LAYOUT.operationsByTime]) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.indexName,
        partitionKey: { name: index.partitionKey, type: s },
        sortKey: { name: index.sortKey, type: s },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    }
    const asleep = TABLE_LAYOUT.asleepTargets;
    this.table.addGlobalSecondaryIndex({
      indexName: asleep.indexName,
      partitionKey: { name: asleep.partitionKey, type: s },
      sortKey: { name: asleep.sortKey, type: s },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...asleep.nonKeyAttributes],
    });
  }

  /** ARN of one of the table's indexes (an explicit ARN, so policies need no `index/*`). */
  public indexArn(indexName: string): string {
    return `${this.table.tableArn}/index/${indexName}`;
  }

  /**
   * Grants `actions` (DynamoDB action names without the `dynamodb:` prefix) on the table and on
   * the named indexes, by explicit ARN: no `index/*`, no Scan unless asked for.
   */
  public grant(role: iam.IRole, indexes: string[], actions: string[]): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'StateTable',
        actions: actions.map((a) => `dynamodb:${a}`),
        resources: [this.table.tableArn, ...indexes.map((i) => this.indexArn(i))],
      }),
    );
  }
}
