// The deployed policies, read from the templates resolved through the mapping: each caller's
// principal and identity policies (a function's execution role, with SAM's generated and AWS
// managed policies), the resource policies (KMS key policies, SQS queue, SNS topic and S3 bucket
// policies), and the encryption each deployed bucket, topic and queue declares, from which the
// KMS permissions a request implies follow (impliedKms).

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Stack } from './cfn.mjs'

/** The stacks of the mapping, their templates translated to JSON (tools/iam-proof/translate.py). */
export function loadStacks(mapping, { root, python, overrides = {} }) {
  const stacks = {}
  for (const [name, deployed] of Object.entries(mapping.stacks)) {
    const file = overrides[name] ?? path.join(root, deployed.template)
    const args = [path.join(root, 'tools/iam-proof/translate.py'), ...(deployed.sam ? ['--sam'] : []), file]
    const out = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 64 << 20 })
    if (out.status !== 0) throw new Error(`translating ${file}: ${out.stderr || out.error}`)
    const template = JSON.parse(out.stdout)
    template.__path = path.relative(root, file)
    stacks[name] = new Stack(name, template, deployed, mapping.ACCOUNT)
  }
  return stacks
}

export const asList = (value) => (value === undefined ? [] : Array.isArray(value) ? value : [value])

/** The identity policies of a role: inline, managed (AWS or the stack's), and AWS::IAM::Policy. */
function rolePolicies(stack, roleId, mapping) {
  const role = stack.template.Resources[roleId]
  const props = role.Properties ?? {}
  const policies = []
  for (const inline of asList(props.Policies)) {
    const resolved = stack.resolve(inline)
    policies.push({ name: resolved.PolicyName, policy: resolved.PolicyDocument })
  }
  const managed = (arn) => {
    if (mapping.awsManagedPolicies[arn]) return { name: arn.split('/').pop(), policy: mapping.awsManagedPolicies[arn] }
    const own = stack.ofType('AWS::IAM::ManagedPolicy').find(([id]) => stack.ref(id) === arn)
    if (own) return { name: own[0], policy: stack.resolve(own[1].Properties.PolicyDocument) }
    throw new Error(stack.where(`${roleId} attaches managed policy ${arn}: add its document to awsManagedPolicies in tools/iam-proof/local-stack.mjs`))
  }
  for (const arn of asList(stack.resolve(props.ManagedPolicyArns ?? []))) policies.push(managed(arn))
  const roleName = stack.ref(roleId)
  for (const [id, policy] of stack.ofType('AWS::IAM::Policy')) {
    if (asList(stack.resolve(policy.Properties.Roles ?? [])).includes(roleName)) {
      policies.push({ name: id, policy: stack.resolve(policy.Properties.PolicyDocument) })
    }
  }
  const boundary = props.PermissionsBoundary === undefined ? undefined : [managed(stack.resolve(props.PermissionsBoundary))]
  return { policies, boundary }
}

/**
 * Every caller of the mapping as the principal AWS authorizes: `key` (the role's logical ID, or
 * the caller for a principal of its own), the session ARN, the identity policies.
 */
export function principals(stacks, mapping) {
  const out = {}
  for (const [caller, spec] of Object.entries(mapping.callers)) {
    if (spec.principal) {
      out[caller] = { caller, key: caller, arn: spec.principal, roleArn: spec.principal, userId: `AROAOPERATOR:${caller}`, policies: spec.policies, boundary: undefined }
      continue
    }
    const stack = stacks[spec.stack]
    const fn = stack.template.Resources?.[spec.function]
    if (!fn || fn.Type !== 'AWS::Lambda::Function') throw new Error(stack.where(`caller ${caller}: no function ${spec.function}`))
    const role = fn.Properties.Role
    const roleId = Array.isArray(role?.['Fn::GetAtt']) ? role['Fn::GetAtt'][0] : undefined
    if (!roleId || stack.template.Resources[roleId]?.Type !== 'AWS::IAM::Role') {
      throw new Error(stack.where(`caller ${caller}: ${spec.function}'s Role is not a role of the stack`))
    }
    const roleName = stack.ref(roleId)
    const functionName = stack.ref(spec.function)
    const { policies, boundary } = rolePolicies(stack, roleId, mapping)
    out[caller] = {
      caller,
      key: roleId,
      arn: `arn:aws:sts::${mapping.ACCOUNT}:assumed-role/${roleName}/${functionName}`,
      roleArn: stack.getAtt(roleId, 'Arn'),
      userId: `${stack.resources[roleId]?.RoleId ?? 'AROA'}:${functionName}`,
      policies,
      boundary
    }
  }
  return out
}

/** KMS key references (ID, ARN) of every stack -> the key's ARN and stack. */
function keyIndex(stacks) {
  const keys = new Map()
  for (const stack of Object.values(stacks)) {
    for (const [id] of stack.ofType('AWS::KMS::Key')) {
      const arn = stack.getAtt(id, 'Arn')
      const entry = { arn, stack, id }
      keys.set(arn, entry)
      keys.set(stack.ref(id), entry)
    }
  }
  return keys
}

/**
 * Resource policies by resource ARN (S3: by bucket ARN), encryption by bucket name, topic ARN
 * and queue ARN.
 */
export function resources(stacks) {
  const keys = keyIndex(stacks)
  const keyArn = (stack, reference, what) => {
    if (typeof reference === 'string' && reference.startsWith('alias/aws/')) return { awsManaged: reference }
    const entry = keys.get(reference)
    if (!entry) throw new Error(stack.where(`${what}: key ${reference} is not a key of the stacks (tools/iam-proof/local-stack.mjs)`))
    return { arn: entry.arn }
  }
  const policies = new Map()
  const add = (arn, policy, source) => {
    const known = policies.get(arn)
    policies.set(arn, known ? { policy: { Version: '2012-10-17', Statement: [...asList(known.policy.Statement), ...asList(policy.Statement)] }, source: `${known.source}, ${source}` } : { policy, source })
  }
  const buckets = new Map()
  const topics = new Map()
  const queues = new Map()
  for (const stack of Object.values(stacks)) {
    for (const [id, key] of stack.ofType('AWS::KMS::Key')) add(stack.getAtt(id, 'Arn'), stack.resolve(key.Properties.KeyPolicy), `${stack.name}.${id}`)
    const queueArn = (url) => {
      const found = stack.ofType('AWS::SQS::Queue').find(([id]) => stack.ref(id) === url)
      if (!found) throw new Error(stack.where(`queue ${url} of a queue policy is not a queue of the stack`))
      return stack.getAtt(found[0], 'Arn')
    }
    for (const [id, p] of stack.ofType('AWS::SQS::QueuePolicy')) {
      for (const url of asList(stack.resolve(p.Properties.Queues))) add(queueArn(url), stack.resolve(p.Properties.PolicyDocument), `${stack.name}.${id}`)
    }
    for (const [id, p] of stack.ofType('AWS::SNS::TopicPolicy')) {
      for (const arn of asList(stack.resolve(p.Properties.Topics))) add(arn, stack.resolve(p.Properties.PolicyDocument), `${stack.name}.${id}`)
    }
    for (const [id, p] of stack.ofType('AWS::S3::BucketPolicy')) {
      add(`arn:aws:s3:::${stack.resolve(p.Properties.Bucket)}`, stack.resolve(p.Properties.PolicyDocument), `${stack.name}.${id}`)
    }
    for (const [id, b] of stack.ofType('AWS::S3::Bucket')) {
      const name = stack.ref(id)
      const declared = b.Properties?.BucketName === undefined ? name : stack.resolve(b.Properties.BucketName)
      if (declared !== name) throw new Error(stack.where(`bucket ${id} is named ${declared} by the template but ${name} by tools/iam-proof/local-stack.mjs`))
      const rule = asList(stack.resolve(b.Properties?.BucketEncryption?.ServerSideEncryptionConfiguration ?? []))[0]
      const byDefault = rule?.ServerSideEncryptionByDefault ?? { SSEAlgorithm: 'AES256' }
      const kms = String(byDefault.SSEAlgorithm).startsWith('aws:kms')
      buckets.set(name, {
        region: stack.region,
        source: `${stack.name}.${id}`,
        key: kms ? keyArn(stack, byDefault.KMSMasterKeyID ?? 'alias/aws/s3', `bucket ${id}`) : undefined,
        bucketKey: rule?.BucketKeyEnabled === true || rule?.BucketKeyEnabled === 'true'
      })
    }
    for (const [id, t] of stack.ofType('AWS::SNS::Topic')) {
      const reference = t.Properties?.KmsMasterKeyId
      topics.set(stack.ref(id), { key: reference === undefined ? undefined : keyArn(stack, stack.resolve(reference), `topic ${id}`) })
    }
    for (const [id, q] of stack.ofType('AWS::SQS::Queue')) {
      const reference = q.Properties?.KmsMasterKeyId
      queues.set(stack.getAtt(id, 'Arn'), { key: reference === undefined ? undefined : keyArn(stack, stack.resolve(reference), `queue ${id}`) })
    }
  }
  return { policies, buckets, topics, queues }
}

/** The resource policy that applies to a resource ARN (S3 objects: their bucket's). */
export function resourcePolicy(deployment, resource) {
  if (resource.startsWith('arn:aws:s3:::')) {
    const bucket = resource.slice('arn:aws:s3:::'.length).split('/')[0]
    return deployment.policies.get(`arn:aws:s3:::${bucket}`)
  }
  return deployment.policies.get(resource)
}

/**
 * The KMS requests AWS makes on the caller's behalf (forward access: the caller needs the
 * permission, with kms:ViaService naming the service) for one authorization:
 * - S3 into a bucket whose deployed default encryption is SSE-KMS: PUT -> kms:GenerateDataKey,
 *   GET -> kms:Decrypt; HEAD and DELETE need neither (S3 user guide, "Using SSE-KMS").
 * - SNS Publish to a topic with a customer managed key: kms:GenerateDataKey and kms:Decrypt.
 * - SQS: SendMessage -> kms:GenerateDataKey and kms:Decrypt; ReceiveMessage -> kms:Decrypt.
 * Not here: DynamoDB and Lambda environment variables use grants made when the table or the
 * function is created, not the caller's permissions; AWS managed keys (alias/aws/*) allow every
 * principal of the account through their service.
 * Returns { needs: [{action, resource, context, why}], problem }.
 */
export function impliedKms(deployment, row, account) {
  const needs = []
  const via = (service, keyRef, actions, encryptionContext, why) => {
    if (!keyRef || keyRef.awsManaged) return
    for (const action of actions) {
      const key = Object.keys(encryptionContext)
      needs.push({
        action,
        resource: keyRef.arn,
        why,
        context: {
          'kms:ViaService': `${service}.${row.region}.amazonaws.com`,
          'kms:CallerAccount': account,
          'kms:EncryptionContextKeys': key,
          ...Object.fromEntries(Object.entries(encryptionContext).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])),
          'aws:ViaAWSService': 'true',
          'aws:CalledVia': [`${service}.amazonaws.com`],
          'aws:CalledViaFirst': `${service}.amazonaws.com`,
          'aws:CalledViaLast': `${service}.amazonaws.com`
        }
      })
    }
  }
  const { action, resource, operation } = row
  if (action?.startsWith('s3:') && resource?.startsWith('arn:aws:s3:::')) {
    const [bucketName, ...key] = resource.slice('arn:aws:s3:::'.length).split('/')
    const bucket = deployment.buckets.get(bucketName)
    const header = row.context?.['s3:x-amz-server-side-encryption']
    if (header?.startsWith('aws:kms') && !bucket?.key) {
      return { needs, problem: `${row.caller} wrote SSE-KMS into ${bucketName}, but no stack of tools/iam-proof/local-stack.mjs declares that bucket's key` }
    }
    if (bucket?.key && key.length > 0) {
      const context = { 'aws:s3:arn': bucket.bucketKey ? `arn:aws:s3:::${bucketName}` : resource }
      if (operation === 's3:PutObject' && action === 's3:PutObject') via('s3', bucket.key, ['kms:GenerateDataKey'], context, `${operation} into SSE-KMS bucket ${bucketName}`)
      if (operation === 's3:GetObject') via('s3', bucket.key, ['kms:Decrypt'], context, `${operation} from SSE-KMS bucket ${bucketName}`)
    }
  }
  if (action === 'sns:Publish') {
    via('sns', deployment.topics.get(resource)?.key, ['kms:GenerateDataKey', 'kms:Decrypt'], { 'aws:sns:topicArn': resource }, `${operation} to the KMS-encrypted topic`)
  }
  if (action === 'sqs:SendMessage' || action === 'sqs:ReceiveMessage') {
    const actions = action === 'sqs:SendMessage' ? ['kms:GenerateDataKey', 'kms:Decrypt'] : ['kms:Decrypt']
    via('sqs', deployment.queues.get(resource)?.key, actions, { 'aws:sqs:arn': resource }, `${operation} on the KMS-encrypted queue`)
  }
  return { needs, problem: undefined }
}

export function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'))
}
