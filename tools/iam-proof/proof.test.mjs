// The IAM proof's own tests (node --test): the intrinsic resolver, the implied KMS requests, and
// the evaluator denying what a deployment does not grant, on small templates of their own.

import assert from 'node:assert/strict'
import test from 'node:test'
import { Stack } from './cfn.mjs'
import { impliedKms, resources } from './deployment.mjs'
import { grants, simulate, without } from './evaluate.mjs'

const ACCOUNT = '123456789012'
const KEY_ARN = `arn:aws:kms:us-east-1:${ACCOUNT}:key/k1`

const template = {
  Parameters: {
    Buckets: { Type: 'CommaDelimitedList' },
    Prefix: { Type: 'String', Default: '' },
    KeyArns: { Type: 'CommaDelimitedList', Default: '' }
  },
  Conditions: {
    AllAlarms: { 'Fn::Equals': [{ Ref: 'Prefix' }, ''] },
    HasKeys: { 'Fn::Not': [{ 'Fn::Equals': [{ 'Fn::Join': [',', { Ref: 'KeyArns' }] }, ''] }] }
  },
  Resources: {
    Key: { Type: 'AWS::KMS::Key', Properties: { KeyPolicy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } }, Action: 'kms:*', Resource: '*' }] } } },
    Topic: { Type: 'AWS::SNS::Topic', Properties: { KmsMasterKeyId: { Ref: 'Key' } } },
    Source: { Type: 'AWS::S3::Bucket', Properties: { BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': ['Key', 'Arn'] } }, BucketKeyEnabled: true }] } } },
    Optional: { Type: 'AWS::SQS::Queue', Condition: 'HasKeys' }
  }
}

const stack = (parameters = { Buckets: 'a,b' }) =>
  new Stack('test', template, {
    region: 'us-east-1',
    parameters,
    resources: {
      Key: { Ref: 'k1', Arn: KEY_ARN },
      Topic: { Ref: `arn:aws:sns:us-east-1:${ACCOUNT}:pages` },
      Source: { Ref: 'src', Arn: 'arn:aws:s3:::src' }
    }
  }, ACCOUNT)

test('intrinsics resolve to the mapping: the template idiom for bucket ARN lists, Sub, If, NoValue', () => {
  const s = stack()
  // Split(",", Sub("arn:aws:s3:::${Names}/x/*", Names=Join("/x/*,arn:aws:s3:::", Buckets)))
  const idiom = { 'Fn::Split': [',', { 'Fn::Sub': ['arn:aws:s3:::${Names}/x/*', { Names: { 'Fn::Join': ['/x/*,arn:aws:s3:::', { Ref: 'Buckets' }] } }] }] }
  assert.deepEqual(s.resolve(idiom), ['arn:aws:s3:::a/x/*', 'arn:aws:s3:::b/x/*'])
  assert.equal(s.resolve({ 'Fn::Sub': '${Key.Arn}|${AWS::Region}|${!Literal}' }), `${KEY_ARN}|us-east-1|\${Literal}`)
  assert.deepEqual(s.resolve(['x', { 'Fn::If': ['HasKeys', 'y', { Ref: 'AWS::NoValue' }] }]), ['x'])
  assert.deepEqual(stack({ Buckets: 'a', KeyArns: KEY_ARN }).resolve({ 'Fn::If': ['HasKeys', { Ref: 'KeyArns' }, []] }), [KEY_ARN])
  assert.equal(s.resolve({ 'Fn::If': ['AllAlarms', 'all', 'some'] }), 'all')
  assert.equal(s.deployed('Optional'), false)
  assert.deepEqual(stack({}).missingParameters(), ['Buckets'])
})

test('a reference the mapping does not answer fails, naming what to add', () => {
  const s = new Stack('test', template, { region: 'us-east-1', parameters: { Buckets: 'a' }, resources: {} }, ACCOUNT)
  assert.throws(() => s.resolve({ 'Fn::GetAtt': ['Key', 'Arn'] }), /GetAtt Key\.Arn: add it to tools\/iam-proof\/local-stack\.mjs/)
  assert.throws(() => s.resolve({ Ref: 'Nothing' }), /neither a parameter nor a resource/)
  assert.throws(() => s.resolve({ 'Fn::ImportValue': 'x' }), /not supported/)
})

test('the encryption of the deployed bucket and topic implies KMS requests; HEAD implies none', () => {
  const deployment = resources({ test: stack() })
  const row = (operation, action, resource, context = {}) => ({ caller: 'c', operation, action, resource, region: 'us-east-1', context })
  const put = impliedKms(deployment, row('s3:PutObject', 's3:PutObject', 'arn:aws:s3:::src/replmon-canary/p'), ACCOUNT)
  assert.deepEqual(put.needs.map((n) => [n.action, n.resource, n.context['kms:ViaService'], n.context['kms:EncryptionContext:aws:s3:arn']]),
    [['kms:GenerateDataKey', KEY_ARN, 's3.us-east-1.amazonaws.com', 'arn:aws:s3:::src']])
  assert.deepEqual(impliedKms(deployment, row('s3:PutObject', 's3:PutObjectTagging', 'arn:aws:s3:::src/p'), ACCOUNT).needs, [])
  assert.deepEqual(impliedKms(deployment, row('s3:GetObject', 's3:GetObjectVersion', 'arn:aws:s3:::src/p'), ACCOUNT).needs.map((n) => n.action), ['kms:Decrypt'])
  assert.deepEqual(impliedKms(deployment, row('s3:HeadObject', 's3:GetObject', 'arn:aws:s3:::src/p'), ACCOUNT).needs, [])
  assert.deepEqual(impliedKms(deployment, row('s3:DeleteObject', 's3:DeleteObjectVersion', 'arn:aws:s3:::src/p'), ACCOUNT).needs, [])
  const publish = impliedKms(deployment, row('sns:Publish', 'sns:Publish', `arn:aws:sns:us-east-1:${ACCOUNT}:pages`), ACCOUNT)
  assert.deepEqual(publish.needs.map((n) => n.action), ['kms:GenerateDataKey', 'kms:Decrypt'])
  const unknown = impliedKms(deployment, row('s3:PutObject', 's3:PutObject', 'arn:aws:s3:::elsewhere/p', { 's3:x-amz-server-side-encryption': 'aws:kms' }), ACCOUNT)
  assert.match(unknown.problem, /no stack .* declares that bucket's key/)
})

test('the evaluator denies what the role does not grant, and removing a used grant denies', async () => {
  const deployment = resources({ test: stack() })
  const principal = {
    key: 'Role',
    arn: `arn:aws:sts::${ACCOUNT}:assumed-role/r/f`,
    roleArn: `arn:aws:iam::${ACCOUNT}:role/r`,
    userId: 'AROAX:f',
    policies: [{ name: 'p', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:PutObject', 's3:GetObject'], Resource: ['arn:aws:s3:::src/replmon-canary/*'] }] } }]
  }
  const put = { action: 's3:PutObject', resource: 'arn:aws:s3:::src/replmon-canary/p', region: 'us-east-1', context: {} }
  const allowed = await simulate(principal, put, principal.policies, deployment, ACCOUNT)
  assert.equal(allowed.result, 'Allowed')
  assert.deepEqual(allowed.used, [{ policy: 'p', identifier: '1', action: 's3:PutObject', resource: 'arn:aws:s3:::src/replmon-canary/*' }])
  const outside = await simulate(principal, { ...put, resource: 'arn:aws:s3:::src/data/p' }, principal.policies, deployment, ACCOUNT)
  assert.equal(outside.result, 'ImplicitlyDenied')
  // The key policy delegates to IAM, and the role has no KMS grant: the implied request is denied.
  const [dataKey] = impliedKms(deployment, { ...put, caller: 'c', operation: 's3:PutObject' }, ACCOUNT).needs
  const kms = await simulate(principal, { ...dataKey, region: 'us-east-1' }, principal.policies, deployment, ACCOUNT)
  assert.equal(kms.result, 'ImplicitlyDenied')
  assert.equal(kms.resourcePolicy, 'test.Key')
  const reduced = without(principal, allowed.used[0])
  assert.equal((await simulate(principal, put, reduced, deployment, ACCOUNT)).result, 'ImplicitlyDenied')
  assert.equal((await simulate(principal, { ...put, action: 's3:GetObject' }, reduced, deployment, ACCOUNT)).result, 'Allowed', 'the rest of the statement stays')
  assert.deepEqual(grants(principal).map((g) => g.action), ['s3:PutObject', 's3:GetObject'])
})
