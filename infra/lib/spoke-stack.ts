import {
  Aws, BootstraplessSynthesizer, CfnCondition, CfnOutput, CfnParameter, CfnResource, Fn, Stack, StackProps,
} from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledge } from './acknowledge';
import { DEFAULT_SPOKE_ROLE_NAME, HUB_ROUTER_ROLE_NAME, HUB_WORKER_ROLE_NAME } from './names';

/**
 * The API calls, recorded by CloudTrail, that change what curfew's inventory cache holds in a
 * spoke: groups and node groups appearing, disappearing or being retagged. Forwarding only these
 * keeps instance launch/terminate chatter and resizes off the hub bus: the cache holds no sizes,
 * so a resize (curfew's own stops and starts among them) must not make the next wave list the
 * account live again. `curfew_core::spoke_event` makes the same call for events from older
 * spoke stacks.
 */
export const FORWARDED_EVENT_NAMES = {
  autoscaling: [
    'CreateAutoScalingGroup',
    'DeleteAutoScalingGroup',
    'CreateOrUpdateTags',
    'DeleteTags',
  ],
  eks: [
    'CreateCluster',
    'DeleteCluster',
    'CreateNodegroup',
    'DeleteNodegroup',
    'TagResource',
    'UntagResource',
  ],
} as const;

/**
 * `UpdateAutoScalingGroup` is forwarded only with one of these request parameters: they decide
 * the instance types discovery records. Other updates only resize.
 */
export const INSTANCE_TYPE_PARAMETERS = ['mixedInstancesPolicy', 'launchTemplate', 'launchConfigurationName'] as const;

/**
 * Where those parameters carry a value, as paths into CloudTrail's `requestParameters`.
 * EventBridge's `exists` matches leaves only (an object such as `launchTemplate` never matches),
 * so each parameter is named by the leaves an update of it carries; an array of objects
 * (`overrides`) is matched through its elements, as EventBridge flattens arrays. Checked once
 * against moto's matcher with sample CloudTrail records (resizes not forwarded; creates, tags,
 * launch template and launch configuration updates forwarded); moto does not look inside arrays,
 * so the `overrides` leaf was not confirmed there. An update this misses costs only instance
 * types until the cache's next listing.
 */
export const INSTANCE_TYPE_LEAVES: readonly (readonly string[])[] = [
  ['launchConfigurationName'],
  ['launchTemplate', 'launchTemplateId'],
  ['launchTemplate', 'launchTemplateName'],
  ['mixedInstancesPolicy', 'launchTemplate', 'launchTemplateSpecification', 'launchTemplateId'],
  ['mixedInstancesPolicy', 'launchTemplate', 'launchTemplateSpecification', 'launchTemplateName'],
  ['mixedInstancesPolicy', 'launchTemplate', 'overrides', 'instanceType'],
];

/** `{a: {b: [{exists: true}]}}` for the path `[a, b]`. */
function existsAt(path: readonly string[]): Record<string, unknown> {
  return path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), [{ exists: true }]) as Record<string, unknown>;
}

/** The forwarding rule's `detail` pattern: the calls above, or an update of a group's instances. */
export function forwardedDetail(): Record<string, unknown> {
  return {
    eventSource: ['autoscaling.amazonaws.com', 'eks.amazonaws.com'],
    $or: [
      { eventName: [...FORWARDED_EVENT_NAMES.autoscaling, ...FORWARDED_EVENT_NAMES.eks] },
      ...INSTANCE_TYPE_LEAVES.map((path) => ({
        eventName: ['UpdateAutoScalingGroup'],
        requestParameters: existsAt(path),
      })),
    ],
  };
}

export interface CurfewSpokeProps extends StackProps {
  /** Default of the SpokeRoleName parameter. @default curfew-spoke */
  readonly spokeRoleName?: string;
  /** The hub's router role name (trusted). @default curfew-hub-router */
  readonly hubRouterRoleName?: string;
  /** The hub's worker role name (trusted). @default curfew-hub-worker */
  readonly hubWorkerRoleName?: string;
}

/**
 * One managed (spoke) account: the role the hub assumes, and a rule forwarding Auto Scaling and
 * EKS change events to the hub bus. The template is self-contained (no assets, no CDK bootstrap
 * check), so it deploys with plain CloudFormation and with service-managed StackSets org-wide.
 *
 * The role is global (IAM) while the rule is regional: deploy the same template to every region
 * curfew manages and set RoleRegion to the one region that should own the role.
 */
export class CurfewSpoke extends Stack {
  public readonly role: iam.Role;
  public readonly forwardingRule: events.Rule;

  constructor(scope: Construct, id: string, props: CurfewSpokeProps = {}) {
    super(scope, id, {
      description: 'curfew spoke: the role the curfew hub assumes, and change-event forwarding',
      synthesizer: new BootstraplessSynthesizer(),
      ...props,
    });

    const hubAccountId = new CfnParameter(this, 'HubAccountId', {
      type: 'String',
      allowedPattern: '^\\d{12}$',
      constraintDescription: 'a 12-digit AWS account ID',
      description: 'The account running the curfew hub stack',
    });
    const externalId = new CfnParameter(this, 'ExternalId', {
      type: 'String',
      noEcho: true,
      minLength: 2,
      maxLength: 1224,
      allowedPattern: '^[\\w+=,.@:/-]+$',
      description: 'Shared secret the hub presents when assuming the role (curfew account add --external-id)',
    });
    const hubEventBusArn = new CfnParameter(this, 'HubEventBusArn', {
      type: 'String',
      allowedPattern: '^arn:aws[a-z-]*:events:[a-z0-9-]+:\\d{12}:event-bus/.+$',
      description: 'The hub stack output HubEventBusArn',
    });
    const spokeRoleName = new CfnParameter(this, 'SpokeRoleName', {
      type: 'String',
      default: props.spokeRoleName ?? DEFAULT_SPOKE_ROLE_NAME,
      allowedPattern: '^[\\w+=,.@-]{1,64}$',
      description: 'Name of the role the hub assumes (must match the hub stack spokeRoleName)',
    });
    const roleRegion = new CfnParameter(this, 'RoleRegion', {
      type: 'String',
      default: '',
      allowedPattern: '^([a-z]{2}(-[a-z]+)+-\\d)?$',
      description:
        'Region whose stack instance creates the (global) IAM role; other regions only forward ' +
        'events. Leave empty when deploying to a single region.',
    });

    const createsRole = new CfnCondition(this, 'CreatesRole', {
      expression: Fn.conditionOr(
        Fn.conditionEquals(roleRegion.valueAsString, ''),
        Fn.conditionEquals(roleRegion.valueAsString, Aws.REGION),
      ),
    });

    const hubRole = (name: string) => `arn:${Aws.PARTITION}:iam::${hubAccountId.valueAsString}:role/${name}`;
    const principals = [
      new iam.ArnPrincipal(hubRole(props.hubRouterRoleName ?? HUB_ROUTER_ROLE_NAME)),
      new iam.ArnPrincipal(hubRole(props.hubWorkerRoleName ?? HUB_WORKER_ROLE_NAME)),
    ];
    this.role = new iam.Role(this, 'HubAccessRole', {
      roleName: spokeRoleName.valueAsString,
      description: 'Assumed by the curfew hub to describe and resize Auto Scaling groups and EKS node groups',
      assumedBy: new iam.CompositePrincipal(...principals).withConditions({
        StringEquals: { 'sts:ExternalId': externalId.valueAsString },
      }),
      inlinePolicies: { ScaleManagedGroups: scalePolicy() },
    });
    (this.role.node.defaultChild as CfnResource).cfnOptions.condition = createsRole;

    acknowledge(
      this.role,
      'AwsSolutions-IAM5[Resource::*]',
      'autoscaling:DescribeAutoScalingGroups, autoscaling:DescribeScalingActivities and ' +
        'eks:ListClusters do not support resource-level ' +
        'permissions (the Service Authorization Reference lists no resource type for them).',
    );
    for (const arn of [
      'arn:<AWS::Partition>:autoscaling:*:<AWS::AccountId>:autoScalingGroup:*:autoScalingGroupName/*',
      'arn:<AWS::Partition>:eks:*:<AWS::AccountId>:cluster/*',
      'arn:<AWS::Partition>:eks:*:<AWS::AccountId>:nodegroup/*/*/*',
    ]) {
      acknowledge(
        this.role,
        `AwsSolutions-IAM5[Resource::${arn}]`,
        'Scoped to this account and resource type; which groups, clusters and regions curfew ' +
          'manages is chosen at run time by schedule selectors, so names cannot be listed here.',
      );
    }

    // Cross-account targets need a role in the sending account allowed to put events on the bus.
    const hubBus = events.EventBus.fromEventBusArn(this, 'HubBus', hubEventBusArn.valueAsString);
    const forwardingRole = new iam.Role(this, 'ForwardingRole', {
      assumedBy: new iam.ServicePrincipal('events.amazonaws.com'),
      description: 'Lets EventBridge forward Auto Scaling and EKS change events to the curfew hub bus',
    });
    this.forwardingRule = new events.Rule(this, 'ForwardChanges', {
      description: 'Forwards Auto Scaling and EKS changes to the curfew hub event bus',
      eventPattern: {
        source: ['aws.autoscaling', 'aws.eks'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: forwardedDetail(),
      },
      targets: [new targets.EventBus(hubBus, { role: forwardingRole })],
    });

    new CfnOutput(this, 'SpokeRoleArn', {
      value: this.role.roleArn,
      description: 'curfew account add <account> --role <this> --external-id <ExternalId> --regions ...',
      condition: createsRole,
    });

    // The cluster-wide hold modes (ca-deployment, karpenter, workloads) reach each cluster's
    // Kubernetes API as this role: a cluster owner grants it an EKS access entry in the group
    // `curfew-hold` and binds only the RBAC of the modes the cluster uses (docs/KUBERNETES.md).
    // The stack does not create the access entry: which clusters opt in is their owners' call.
    new CfnOutput(this, 'HoldAccessEntryCommand', {
      value: Fn.join('', [
        'aws eks create-access-entry --cluster-name <cluster> --principal-arn ',
        this.role.roleArn,
        ' --type STANDARD --kubernetes-groups curfew-hold',
      ]),
      description:
        'For clusters tagged curfew/hold with ca-deployment, karpenter or workloads: run this, then apply the RBAC in docs/KUBERNETES.md',
      condition: createsRole,
    });
  }
}

/**
 * Describe and resize Auto Scaling groups and EKS managed node groups, hold asleep ASGs' scaling
 * processes, and move Cluster Autoscaler's own tags on node groups' ASGs; nothing else, no `*`
 * action.
 */
function scalePolicy(): iam.PolicyDocument {
  const arn = (service: string, resource: string) =>
    `arn:${Aws.PARTITION}:${service}:*:${Aws.ACCOUNT_ID}:${resource}`;
  const clusters = arn('eks', 'cluster/*');
  const nodegroups = arn('eks', 'nodegroup/*/*/*');
  return new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        sid: 'DescribeAutoScalingGroups',
        // DescribeScalingActivities: a drift record says what Auto Scaling last did and why.
        actions: ['autoscaling:DescribeAutoScalingGroups', 'autoscaling:DescribeScalingActivities'],
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'ResizeAutoScalingGroups',
        actions: ['autoscaling:UpdateAutoScalingGroup'],
        resources: [arn('autoscaling', 'autoScalingGroup:*:autoScalingGroupName/*')],
      }),
      // A stop suspends ScheduledActions and AlarmNotification so nothing scales the group back
      // up; the start resumes exactly those.
      new iam.PolicyStatement({
        sid: 'HoldScalingProcesses',
        actions: ['autoscaling:SuspendProcesses', 'autoscaling:ResumeProcesses'],
        resources: [arn('autoscaling', 'autoScalingGroup:*:autoScalingGroupName/*')],
      }),
      // ca-tags mode: only Cluster Autoscaler's auto-discovery tags may be removed and put back.
      new iam.PolicyStatement({
        sid: 'MoveClusterAutoscalerTags',
        actions: ['autoscaling:DeleteTags', 'autoscaling:CreateOrUpdateTags'],
        resources: [arn('autoscaling', 'autoScalingGroup:*:autoScalingGroupName/*')],
        conditions: { 'ForAllValues:StringLike': { 'aws:TagKeys': ['k8s.io/cluster-autoscaler/*'] } },
      }),
      new iam.PolicyStatement({
        sid: 'ListClusters',
        actions: ['eks:ListClusters'],
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'ReadClusters',
        actions: ['eks:DescribeCluster', 'eks:ListNodegroups', 'eks:DescribeUpdate'],
        resources: [clusters],
      }),
      new iam.PolicyStatement({
        sid: 'ResizeNodegroups',
        actions: ['eks:DescribeNodegroup', 'eks:UpdateNodegroupConfig', 'eks:DescribeUpdate'],
        resources: [nodegroups],
      }),
    ],
  });
}
