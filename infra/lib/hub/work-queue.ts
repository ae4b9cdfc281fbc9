import { Duration } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/**
 * AWS's guidance for SQS event sources: the queue's visibility timeout should be at least six
 * times the consuming function's timeout, so a message is not redelivered while a batch is still
 * being retried by the poller.
 * https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
 */
export const VISIBILITY_PER_CONSUMER_TIMEOUT = 6;

/** Receives before a message is moved to the dead-letter queue. */
export const MAX_RECEIVE_COUNT = 5;

export interface WorkQueueProps {
  /** Timeout of the Lambda function that consumes this queue. */
  readonly consumerTimeout: Duration;
}

/** A queue consumed by one Lambda function, with a dead-letter queue behind it. */
export class WorkQueue extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  /** Receives before SQS moves a message to `deadLetterQueue` (the redrive policy's maxReceiveCount). */
  public readonly maxReceiveCount: number;

  constructor(scope: Construct, id: string, props: WorkQueueProps) {
    super(scope, id);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // The longest SQS allows: time to look at what failed and redrive it.
      retentionPeriod: Duration.days(14),
    });

    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(
        props.consumerTimeout.toSeconds() * VISIBILITY_PER_CONSUMER_TIMEOUT,
      ),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: MAX_RECEIVE_COUNT },
    });
    this.maxReceiveCount = MAX_RECEIVE_COUNT;
  }
}
