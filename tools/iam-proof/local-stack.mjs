// The local stack as deployed stacks: the one place that says which local resource each
// template's logical ID stands for, and with which parameter values the templates are resolved.
//
// The IAM proof (prove.mjs) evaluates the requests the functions made against the local stack
// (moto: account 123456789012, table replmon-ledger, topic replmon-pages, source bucket
// replmon-demo-source in us-east-1, replica bucket replmon-demo-replica in us-west-2, the
// replication-events queue replmon-replication-events) against the policies the templates would
// deploy. For that, every `Ref`/`Fn::GetAtt` a policy reaches must name the local resource the
// requests name: this file gives those physical names and ARNs, per stack and logical ID. A
// reference this file does not answer fails the proof with the name to add here.
//
// Key IDs are stand-ins: moto's keys get random IDs per run, and its topic, queues and table
// are not encrypted. KMS permissions are derived from the templates (the encryption each
// deployed bucket, topic and queue declares), resolved through the key ARNs below, so the
// requests' own key IDs never matter.

export const ACCOUNT = '123456789012'
/** The monitor's region, and the source bucket's. */
export const REGION = 'us-east-1'
/** The replica bucket's region. */
export const REPLICA_REGION = 'us-west-2'

const SOURCE_BUCKET = 'replmon-demo-source'
const REPLICA_BUCKET = 'replmon-demo-replica'
const TABLE = 'replmon-ledger'
const TOPIC_ARN = `arn:aws:sns:${REGION}:${ACCOUNT}:replmon-pages`
const EVENTS_QUEUE = 'replmon-replication-events'
/** Re-drive manifests and reports (tests/src/bin/local-stack.rs provision). */
const REDRIVE_REPORTS = 'replmon-redrive-reports'

const key = (region, id) => ({ Ref: id, Arn: `arn:aws:kms:${region}:${ACCOUNT}:key/${id}`, KeyId: id })
const MONITOR_KEY = key(REGION, '00000000-0000-4000-8000-00000000a001')
const SOURCE_KEY = key(REGION, '00000000-0000-4000-8000-00000000a002')
const REPLICA_KEY = key(REPLICA_REGION, '00000000-0000-4000-8000-00000000a003')

const queue = (region, name) => ({
  Ref: `https://sqs.${region}.amazonaws.com/${ACCOUNT}/${name}`,
  Arn: `arn:aws:sqs:${region}:${ACCOUNT}:${name}`,
  QueueName: name,
  QueueUrl: `https://sqs.${region}.amazonaws.com/${ACCOUNT}/${name}`
})
const role = (name) => ({ Ref: name, Arn: `arn:aws:iam::${ACCOUNT}:role/${name}`, RoleId: `AROA${name.toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, 17)}` })
const fn = (region, name) => ({ Ref: name, Arn: `arn:aws:lambda:${region}:${ACCOUNT}:function:${name}` })
const bucket = (name) => ({ Ref: name, Arn: `arn:aws:s3:::${name}`, DomainName: `${name}.s3.amazonaws.com` })

const monitorRoles = {
  ReplicationEventsFunctionRole: role('replmon-ReplicationEventsFunctionRole'),
  AlarmEventsFunctionRole: role('replmon-AlarmEventsFunctionRole'),
  CanaryFunctionRole: role('replmon-CanaryFunctionRole'),
  RedriveFunctionRole: role('replmon-RedriveFunctionRole'),
  // The role re-drive jobs run as (REPLMON_REDRIVE_ROLE_ARN in the demo's environment).
  BatchReplicationRole: role('replmon-BatchReplicationRole')
}

/**
 * The deployed stacks: template (paths from the repository root; `sam` ones are translated with
 * aws-sam-translator first), region, parameter values (as CloudFormation takes them: strings;
 * lists comma-separated) and the physical resources by logical ID (`Ref` and attributes).
 */
/** A function's log group as the monitor template names it (`/replmon/<stack>/<function>`). */
function logGroup(region, name) {
  const group = `/replmon/replmon/${name}`;
  return { Ref: group, Arn: `arn:aws:logs:${region}:${ACCOUNT}:log-group:${group}:*` };
}

export const stacks = {
  monitor: {
    template: 'infra/template.yaml',
    sam: true,
    region: REGION,
    parameters: {
      WatchedSourceBuckets: SOURCE_BUCKET,
      ReplicaBuckets: REPLICA_BUCKET,
      ReplicaRegions: REPLICA_REGION,
      // The watched buckets' keys the canary may ask S3 to encrypt its probes with.
      CanaryBucketKeyArns: SOURCE_KEY.Arn
    },
    resources: {
      Ledger: { Ref: TABLE, Arn: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}` },
      PageTopic: { Ref: TOPIC_ARN, TopicArn: TOPIC_ARN, TopicName: 'replmon-pages' },
      // Not provisioned locally (only CloudWatch alarm actions publish there); named for the
      // template's references.
      OperationsTopic: {
        Ref: `arn:aws:sns:${REGION}:${ACCOUNT}:replmon-operations`,
        TopicArn: `arn:aws:sns:${REGION}:${ACCOUNT}:replmon-operations`,
        TopicName: 'replmon-operations'
      },
      ReplicationEventsLogGroup: logGroup(REGION, 'replication-events'),
      AlarmEventsLogGroup: logGroup(REGION, 'alarm-events'),
      CanaryLogGroup: logGroup(REGION, 'canary'),
      RedriveLogGroup: logGroup(REGION, 'redrive'),
      RedriveReports: bucket(REDRIVE_REPORTS),
      MonitorKey: MONITOR_KEY,
      // The local event source mapping's queue (tests/tests/replmon_cli.rs, scripts/demo).
      ReplicationEventsQueue: queue(REGION, EVENTS_QUEUE),
      ReplicationEventsDeadLetters: queue(REGION, 'replmon-replication-events-dlq'),
      FailedInvocations: queue(REGION, 'replmon-failed-invocations'),
      ReplicationEventsFunction: fn(REGION, 'replication-events'),
      AlarmEventsFunction: fn(REGION, 'alarm-events'),
      CanaryFunction: fn(REGION, 'canary'),
      RedriveFunction: fn(REGION, 'redrive'),
      ...monitorRoles
    }
  },
  // The documented replicated pair (infra/examples): the buckets the functions work on, their
  // keys (and key policies) and bucket policies.
  source: {
    template: 'infra/examples/source.yaml',
    region: REGION,
    parameters: {
      SourceBucketName: SOURCE_BUCKET,
      ReplicaBucketArn: `arn:aws:s3:::${REPLICA_BUCKET}`,
      ReplicaKeyArn: REPLICA_KEY.Arn,
      MonitorQueueArn: queue(REGION, EVENTS_QUEUE).Arn,
      AlarmTopicArn: TOPIC_ARN,
      CanaryRoleArn: monitorRoles.CanaryFunctionRole.Arn
    },
    resources: {
      SourceKey: SOURCE_KEY,
      SourceBucket: bucket(SOURCE_BUCKET),
      ReplicationRole: role('replmon-demo-replication')
    }
  },
  replica: {
    template: 'infra/examples/replica.yaml',
    region: REPLICA_REGION,
    parameters: {
      ReplicaBucketName: REPLICA_BUCKET,
      ApplicationPrincipalArn: `arn:aws:iam::${ACCOUNT}:role/replmon-demo-application`
    },
    resources: {
      ReplicaKey: REPLICA_KEY,
      ReplicaBucket: bucket(REPLICA_BUCKET),
      FailoverReadOnlyRole: role('replmon-demo-failover-read-only')
    }
  }
}

/**
 * Who made the recorded requests (the SDK app name in their user agent) and as which principal
 * AWS would authorize them: a function's execution role (found through the function's `Role`
 * in the template), or, for the command line, a principal with the policy the README documents.
 * Each caller must have made requests in the run: a caller with none fails the proof (the
 * recording, or the tag, broke).
 */
export const callers = {
  'replmon-replication-events': { stack: 'monitor', function: 'ReplicationEventsFunction' },
  // The local SQS event source mapping: on AWS, Lambda's poller, with the function's role.
  'replmon-replication-events-poller': { stack: 'monitor', function: 'ReplicationEventsFunction' },
  'replmon-alarm-events': { stack: 'monitor', function: 'AlarmEventsFunction' },
  'replmon-canary': { stack: 'monitor', function: 'CanaryFunction' },
  'replmon-redrive': { stack: 'monitor', function: 'RedriveFunction' },
  // README, "replmon: the command line": read access to the table (Query, GetItem), and for
  // `catalog-rebuild` (its help text) Scan and PutItem, for `migrate` UpdateItem, for `redrive`
  // PutItem, s3:CreateJob and iam:PassRole of the job role. An operator's role of the same account.
  'replmon-cli': {
    principal: `arn:aws:iam::${ACCOUNT}:role/replmon-operator`,
    policies: [
      {
        name: 'replmon-cli-documented',
        policy: {
          Version: '2012-10-17',
          Statement: [
            { Sid: 'ReadTheLedger', Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:GetItem'], Resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}` },
            { Sid: 'CatalogRebuild', Effect: 'Allow', Action: ['dynamodb:Scan', 'dynamodb:PutItem'], Resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}` },
            { Sid: 'Migrate', Effect: 'Allow', Action: ['dynamodb:UpdateItem'], Resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}` },
            // `replmon redrive`: the re-drive record (PutItem, as above), the job, the job role.
            { Sid: 'Redrive', Effect: 'Allow', Action: ['s3:CreateJob'], Resource: '*' },
            { Sid: 'PassTheBatchReplicationRole', Effect: 'Allow', Action: ['iam:PassRole'], Resource: monitorRoles.BatchReplicationRole.Arn, Condition: { StringEquals: { 'iam:PassedToService': 'batchoperations.s3.amazonaws.com' } } }
          ]
        }
      }
    ]
  }
}

/**
 * The AWS managed policies the translated template attaches (SAM adds them to function roles),
 * as AWS publishes them: the proof is offline, so their documents are kept here.
 */
export const awsManagedPolicies = {
  'arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole': {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'], Resource: '*' }]
  },
  'arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: '*'
      }
    ]
  }
}
