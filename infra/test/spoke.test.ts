import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { FORWARDED_EVENT_NAMES, INSTANCE_TYPE_LEAVES, INSTANCE_TYPE_PARAMETERS } from '../lib/spoke-stack';
import { actionsOf, render, resource, resourcesOf, statementsOfRole, templates } from './support';

const spoke = () => templates().spoke;
const hubAccessRole = () => resource(spoke(), 'AWS::IAM::Role', 'HubAccessRole');

/** Every action the spoke role grants, mapped to the resources it applies to. */
function grants(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of statementsOfRole(spoke(), hubAccessRole().id)) {
    assert.equal(s.Effect, 'Allow');
    for (const a of actionsOf(s)) out.set(a, [...(out.get(a) ?? []), ...resourcesOf(s).map(render)]);
  }
  return out;
}

describe('spoke role trust', () => {
  test('trusts exactly the hub router and worker roles, named in the HubAccountId account', () => {
    const trust = hubAccessRole().body.Properties.AssumeRolePolicyDocument.Statement;
    assert.equal(trust.length, 1);
    assert.equal(trust[0].Effect, 'Allow');
    assert.equal(trust[0].Action, 'sts:AssumeRole');
    assert.deepEqual(Object.keys(trust[0].Principal), ['AWS']);
    assert.deepEqual(trust[0].Principal.AWS.map(render), [
      'arn:${AWS::Partition}:iam::${HubAccountId}:role/curfew-hub-router',
      'arn:${AWS::Partition}:iam::${HubAccountId}:role/curfew-hub-worker',
    ]);
  });

  test('demands the ExternalId (StringEquals sts:ExternalId) and nothing looser', () => {
    const [statement] = hubAccessRole().body.Properties.AssumeRolePolicyDocument.Statement;
    assert.deepEqual(statement.Condition, { StringEquals: { 'sts:ExternalId': { Ref: 'ExternalId' } } });
  });

  test('the ExternalId and hub account are parameters; the ExternalId is never echoed', () => {
    spoke().hasParameter('ExternalId', { Type: 'String', NoEcho: true, MinLength: 2 });
    spoke().hasParameter('HubAccountId', { Type: 'String', AllowedPattern: '^\\d{12}$' });
  });

  test('is named by the SpokeRoleName parameter, curfew-spoke by default', () => {
    assert.deepEqual(hubAccessRole().body.Properties.RoleName, { Ref: 'SpokeRoleName' });
    spoke().hasParameter('SpokeRoleName', { Default: 'curfew-spoke' });
  });

  test('is created only where RoleRegion is empty or names the region (IAM is global)', () => {
    assert.equal(hubAccessRole().body.Condition, 'CreatesRole');
    assert.deepEqual(spoke().toJSON().Conditions.CreatesRole, {
      'Fn::Or': [
        { 'Fn::Equals': [{ Ref: 'RoleRegion' }, ''] },
        { 'Fn::Equals': [{ Ref: 'RoleRegion' }, { Ref: 'AWS::Region' }] },
      ],
    });
  });
});

describe('spoke role permissions', () => {
  test('no action in the spoke role has a wildcard', () => {
    for (const action of grants().keys()) assert.ok(!action.includes('*'), `wildcard action ${action}`);
  });

  test('grants only describing and updating Auto Scaling groups and EKS node groups', () => {
    assert.deepEqual([...grants().keys()].sort(), [
      'autoscaling:CreateOrUpdateTags',
      'autoscaling:DeleteTags',
      'autoscaling:DescribeAutoScalingGroups',
      'autoscaling:DescribeScalingActivities',
      'autoscaling:ResumeProcesses',
      'autoscaling:SuspendProcesses',
      'autoscaling:UpdateAutoScalingGroup',
      'eks:DescribeCluster',
      'eks:DescribeNodegroup',
      'eks:DescribeUpdate',
      'eks:ListClusters',
      'eks:ListNodegroups',
      'eks:UpdateNodegroupConfig',
    ]);
  });

  test('Resource "*" only where the service has no resource-level permissions', () => {
    const star = [...grants()].filter(([, resources]) => resources.includes('*')).map(([a]) => a).sort();
    assert.deepEqual(star, [
      'autoscaling:DescribeAutoScalingGroups',
      'autoscaling:DescribeScalingActivities',
      'eks:ListClusters',
    ]);
  });

  test('updates are scoped to this account\'s Auto Scaling groups and node groups', () => {
    const g = grants();
    assert.deepEqual(g.get('autoscaling:UpdateAutoScalingGroup'), [
      'arn:${AWS::Partition}:autoscaling:*:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/*',
    ]);
    const nodegroups = 'arn:${AWS::Partition}:eks:*:${AWS::AccountId}:nodegroup/*/*/*';
    const clusters = 'arn:${AWS::Partition}:eks:*:${AWS::AccountId}:cluster/*';
    assert.deepEqual(g.get('eks:UpdateNodegroupConfig'), [nodegroups]);
    assert.deepEqual(g.get('eks:DescribeNodegroup'), [nodegroups]);
    assert.deepEqual(g.get('eks:DescribeCluster'), [clusters]);
    assert.deepEqual(g.get('eks:ListNodegroups'), [clusters]);
    assert.deepEqual(g.get('eks:DescribeUpdate')?.sort(), [clusters, nodegroups]);
  });

  test('the tags the spoke role may move are only Cluster Autoscaler\'s', () => {
    const tags: any = statementsOfRole(spoke(), hubAccessRole().id).find((s) =>
      actionsOf(s).includes('autoscaling:DeleteTags'),
    );
    assert.deepEqual(tags.Condition, { 'ForAllValues:StringLike': { 'aws:TagKeys': ['k8s.io/cluster-autoscaler/*'] } });
    assert.deepEqual(actionsOf(tags).sort(), ['autoscaling:CreateOrUpdateTags', 'autoscaling:DeleteTags']);
  });
});

describe('Kubernetes access for the cluster-wide hold modes', () => {
  test('an output gives the access entry command for the spoke role in the curfew-hold group', () => {
    const outputs = spoke().toJSON().Outputs;
    const entry = outputs.HoldAccessEntryCommand;
    assert.equal(entry.Condition, 'CreatesRole');
    const text = render(entry.Value);
    assert.match(text, /^aws eks create-access-entry --cluster-name <cluster> --principal-arn /);
    assert.match(text, /HubAccessRole/);
    assert.match(text, /--type STANDARD --kubernetes-groups curfew-hold$/);
    assert.match(entry.Description, /docs\/KUBERNETES\.md/);
  });
});

describe('change-event forwarding', () => {
  test('forwards Auto Scaling and EKS change events to the hub bus through a role', () => {
    const role = resource(spoke(), 'AWS::IAM::Role', 'ForwardingRole');
    spoke().hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.autoscaling', 'aws.eks'],
        detail: {
          $or: [
            { eventName: [...FORWARDED_EVENT_NAMES.autoscaling, ...FORWARDED_EVENT_NAMES.eks] },
            ...INSTANCE_TYPE_LEAVES.map((path) => ({
              eventName: ['UpdateAutoScalingGroup'],
              requestParameters: path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), [{ exists: true }]),
            })),
          ],
        },
      },
      Targets: [Match.objectLike({ Arn: { Ref: 'HubEventBusArn' }, RoleArn: { 'Fn::GetAtt': [role.id, 'Arn'] } })],
    });
  });

  test('resizes are not forwarded: the inventory cache holds no sizes', () => {
    const rule = resource(spoke(), 'AWS::Events::Rule', 'ForwardChanges');
    const pattern = JSON.stringify(rule.body.Properties.EventPattern);
    for (const call of ['SetDesiredCapacity', 'UpdateNodegroupConfig']) {
      assert.ok(!pattern.includes(call), `${call} is forwarded`);
    }
    const updates = rule.body.Properties.EventPattern.detail.$or.filter((p: any) =>
      p.eventName.includes('UpdateAutoScalingGroup'),
    );
    // EventBridge's `exists` matches leaves only: every update pattern ends in one, under one
    // of the parameters that decide instance types, and every such parameter has one.
    const roots = new Set<string>();
    for (const update of updates) {
      let node: any = update.requestParameters;
      const path: string[] = [];
      while (!Array.isArray(node)) {
        const keys = Object.keys(node);
        assert.equal(keys.length, 1, JSON.stringify(update));
        path.push(keys[0]);
        node = node[keys[0]];
      }
      assert.deepEqual(node, [{ exists: true }], path.join('.'));
      assert.ok(!['launchTemplate', 'mixedInstancesPolicy'].includes(path[path.length - 1]), `${path.join('.')} is not a leaf`);
      roots.add(path[0]);
    }
    assert.deepEqual([...roots].sort(), [...INSTANCE_TYPE_PARAMETERS].sort());
  });

  test('the forwarding role may only put events on the hub bus', () => {
    const role = resource(spoke(), 'AWS::IAM::Role', 'ForwardingRole');
    assert.deepEqual(role.body.Properties.AssumeRolePolicyDocument.Statement[0].Principal, {
      Service: 'events.amazonaws.com',
    });
    const statements = statementsOfRole(spoke(), role.id);
    assert.deepEqual(statements.map((s) => [actionsOf(s), resourcesOf(s)]), [
      [['events:PutEvents'], [{ Ref: 'HubEventBusArn' }]],
    ]);
  });
});

describe('StackSets readiness', () => {
  test('the template needs no CDK bootstrap and no assets', () => {
    const t = spoke().toJSON();
    assert.equal(t.Parameters.BootstrapVersion, undefined);
    assert.equal(t.Rules, undefined);
    const types = new Set(Object.values(t.Resources).map((r: any) => r.Type));
    assert.deepEqual([...types].sort(), ['AWS::Events::Rule', 'AWS::IAM::Policy', 'AWS::IAM::Role']);
  });
});
