// One request evaluated with @cloud-copilot/iam-simulate, and the grants of a principal: each
// Allow statement's (action, resource) pairs, which the evaluator's explanations mark as used.

import { runSimulation } from '@cloud-copilot/iam-simulate'
import { asList, resourcePolicy } from './deployment.mjs'


/** Statements of a policy with the identifier iam-simulate gives them (Sid, else 1-based index). */
const statements = (policy) => asList(policy.Statement).map((s, i) => ({ statement: s, identifier: s.Sid ?? String(i + 1) }))

export async function simulate(principal, evaluation, identityPolicies, deployment, account) {
  const now = new Date()
  const contextVariables = {
    'aws:PrincipalArn': principal.roleArn,
    'aws:PrincipalAccount': account,
    'aws:PrincipalType': 'AssumedRole',
    'aws:userid': principal.userId,
    'aws:RequestedRegion': evaluation.region,
    'aws:SecureTransport': 'true',
    'aws:CurrentTime': now.toISOString(),
    'aws:EpochTime': String(Math.floor(now.getTime() / 1000)),
    'aws:ViaAWSService': 'false',
    'aws:PrincipalIsAWSService': 'false',
    ...evaluation.context
  }
  const applying = resourcePolicy(deployment, evaluation.resource)
  const response = await runSimulation({
    request: { principal: principal.arn, action: evaluation.action, resource: { resource: evaluation.resource, accountId: evaluation.resource.split(':')[4] || account }, contextVariables },
    identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: applying?.policy,
    permissionBoundaryPolicies: principal.boundary
  }, {})
  if (response.resultType === 'error') return { error: JSON.stringify(response.errors) }
  const analyses = response.resultType === 'single' ? [response.result] : response.results
  const used = []
  for (const result of analyses) {
    for (const allow of result.analysis?.identityAnalysis?.allowStatements ?? []) {
      const explain = allow.explain
      const actions = asList(explain.actions).filter((a) => a.matches).map((a) => a.action)
      const resourcesMatched = asList(explain.resources).filter((r) => r.matches).map((r) => r.resource)
      for (const action of actions) for (const resource of resourcesMatched) used.push({ policy: allow.policyId, identifier: explain.identifier, action, resource })
    }
  }
  return { result: response.overallResult, used, resourcePolicy: applying?.source }
}

/** Each Allow statement's (action, resource) pairs, per policy. */
export function grants(principal) {
  const out = []
  for (const { name, policy } of principal.policies) {
    for (const { statement, identifier } of statements(policy)) {
      if (statement.Effect !== 'Allow') continue
      const actions = statement.Action === undefined ? [`NotAction:${JSON.stringify(statement.NotAction)}`] : asList(statement.Action)
      const resourcesGranted = statement.Resource === undefined ? [`NotResource:${JSON.stringify(statement.NotResource)}`] : asList(statement.Resource)
      for (const action of actions) for (const resource of resourcesGranted) out.push({ policy: name, identifier, action, resource })
    }
  }
  return out
}

/** The principal's policies without one (action, resource) of one statement. */
export function without(principal, grant) {
  return principal.policies.map(({ name, policy }) => {
    if (name !== grant.policy) return { name, policy }
    const kept = []
    for (const { statement, identifier } of statements(policy)) {
      if (identifier !== grant.identifier) { kept.push(statement); continue }
      const { Sid, ...rest } = statement
      const otherActions = asList(statement.Action).filter((a) => a !== grant.action)
      const otherResources = asList(statement.Resource).filter((r) => r !== grant.resource)
      if (otherActions.length) kept.push({ ...rest, Action: otherActions })
      if (otherResources.length) kept.push({ ...rest, Action: [grant.action], Resource: otherResources })
    }
    return { name, policy: { ...policy, Statement: kept } }
  })
}

export const grantKey = (g) => `${g.policy}|${g.identifier}|${g.action}|${g.resource}`

