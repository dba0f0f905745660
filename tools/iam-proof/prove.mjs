#!/usr/bin/env node
// The IAM proof: every AWS request the functions (and the replmon command line) made during the
// tests and the demo, recorded by moto and turned into authorizations by the `iam-requests` tool
// (tests/src/iam_record/), is evaluated with a real IAM policy evaluator
// (@cloud-copilot/iam-simulate) against the policies the templates deploy, resolved to the local
// stack through tools/iam-proof/local-stack.mjs: the caller's role policies (SAM-generated and
// AWS managed ones included), the resource policies (KMS key, SQS queue, SNS topic, S3 bucket),
// and the KMS requests the encryption of the deployed buckets, topic and queues implies.
//
//   node tools/iam-proof/prove.mjs --requests .local/iam/requests.json
//        [--justifications tools/iam-proof/unused-grants.json] [--template STACK=FILE]
//        [--python .venv/bin/python] [--report .local/iam/report.json]
//
// It fails (exit 1) on: a request the policies would deny (but for the reviewed
// expected_denials: a test asking for a wrong resource on purpose); a request it cannot judge
// (an operation without an IAM mapping, a document cut short that carries a caller's tag); a
// caller of the mapping without any request (the recording or the tag broke); a granted
// (action, resource) no request used and that unused-grants.json does not justify; a
// justification for a grant that no longer exists. It also removes each used grant in turn and
// re-evaluates the requests that used it: a grant whose removal denies nothing is reported as
// granted twice (another statement, or the resource policy, allows the same), so the figures
// show the evaluator denying.
// --template STACK=FILE evaluates another template for one stack (try a policy change).

import path from 'node:path'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as mapping from './local-stack.mjs'
import { asList, impliedKms, loadStacks, principals, readJson, resources } from './deployment.mjs'
import { grantKey, grants, simulate, without } from './evaluate.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')

function options(argv) {
  const out = { justifications: path.join(here, 'unused-grants.json'), python: path.join(root, '.venv/bin/python'), overrides: {} }
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${name} expects a value`)
    if (name === '--requests') out.requests = value
    else if (name === '--justifications') out.justifications = value
    else if (name === '--python') out.python = value
    else if (name === '--report') out.report = value
    else if (name === '--template') {
      const [stack, file] = value.split(/=(.*)/s)
      out.overrides[stack] = path.resolve(file)
    } else throw new Error(`unknown option ${name}`)
  }
  if (!out.requests) throw new Error('usage: prove.mjs --requests FILE [--justifications FILE] [--template STACK=FILE] [--python PATH] [--report FILE]')
  return out
}

async function main() {
  const opts = options(process.argv.slice(2))
  const failures = []
  const notes = []
  const stacks = loadStacks(mapping, { root, python: opts.python, overrides: opts.overrides })
  for (const stack of Object.values(stacks)) {
    for (const name of stack.missingParameters()) failures.push(stack.where(`parameter ${name} has no value: add it to tools/iam-proof/local-stack.mjs`))
    for (const name of stack.unknownParameters()) notes.push(stack.where(`mapping parameter ${name} is not a parameter of the template (ignored)`))
  }
  const callers = principals(stacks, mapping)
  const deployment = resources(stacks)
  const recorded = readJson(opts.requests)

  // The evaluations: recorded authorizations and the KMS requests they imply, deduplicated.
  const evaluations = new Map()
  const notEvaluated = {}
  let noPermission = 0
  let implied = 0
  const add = (evaluation) => {
    const key = JSON.stringify([evaluation.caller, evaluation.action, evaluation.resource, evaluation.region, evaluation.context])
    const known = evaluations.get(key)
    if (known) known.requests += evaluation.requests
    else evaluations.set(key, { ...evaluation })
  }
  for (const row of recorded.authorizations) {
    if (!callers[row.caller]) { notEvaluated[row.caller] = (notEvaluated[row.caller] ?? 0) + row.requests; continue }
    if (row.problem) { failures.push(`${row.caller}: ${row.operation || 'request'} in ${row.region || '?'}: ${row.problem}`); continue }
    if (!row.action) { noPermission += row.requests; continue }
    add({ caller: row.caller, action: row.action, resource: row.resource, region: row.region, context: row.context, requests: row.requests, why: row.operation })
    const kms = impliedKms(deployment, row, mapping.ACCOUNT)
    if (kms.problem) failures.push(kms.problem)
    for (const need of kms.needs) {
      implied += row.requests
      add({ caller: row.caller, action: need.action, resource: need.resource, region: row.region, context: need.context, requests: row.requests, why: need.why })
    }
  }
  for (const doc of recorded.unreadable) {
    const mine = doc.callers.filter((c) => callers[c])
    if (mine.length) failures.push(`${doc.file}:${doc.line}: an unreadable recorded request of ${mine.join(', ')} (a request may be missing)`)
    else notes.push(`${doc.file}:${doc.line}: an unreadable recorded request without a caller's tag (harness)`)
  }
  for (const caller of Object.keys(callers)) {
    if (!recorded.requests_by_caller[caller]) failures.push(`${caller}: no recorded request at all (is the recording on, and the SDK app name set?)`)
  }

  // Evaluate.
  const denied = []
  const used = new Map()
  for (const evaluation of evaluations.values()) {
    const principal = callers[evaluation.caller]
    const outcome = await simulate(principal, evaluation, principal.policies, deployment, mapping.ACCOUNT)
    evaluation.outcome = outcome
    if (outcome.error) { failures.push(`${evaluation.caller}: ${evaluation.action} on ${evaluation.resource}: the evaluator refused it: ${outcome.error}`); continue }
    if (outcome.result !== 'Allowed') { denied.push(evaluation); continue }
    for (const grant of outcome.used) {
      const key = `${principal.key}|${grantKey(grant)}`
      if (!used.has(key)) used.set(key, { principal, grant, evaluations: [] })
      used.get(key).evaluations.push(evaluation)
    }
  }
  // Denials: none allowed, but for the reviewed requests a test makes on purpose.
  const reviewed = readJson(opts.justifications)
  const expected = reviewed.expected_denials ?? []
  const isExpected = (e) => expected.some((x) => x.caller === e.caller && x.action === e.action && x.resource === e.resource)
  const expectedDenied = denied.filter(isExpected)
  const unexpected = denied.filter((d) => !isExpected(d))
  for (const d of unexpected) {
    failures.push(`DENIED ${d.caller} (${callers[d.caller].key}): ${d.action} on ${d.resource} in ${d.region} (${d.outcome.result}; ${d.requests} request(s); for ${d.why}; resource policy: ${d.outcome.resourcePolicy ?? 'none'})`)
  }
  for (const x of expected) {
    if (!x.reason || !String(x.reason).trim()) failures.push(`expected denial without a reason: ${x.caller} ${x.action} ${x.resource}`)
    const made = [...evaluations.values()].filter((e) => e.caller === x.caller && e.action === x.action && e.resource === x.resource)
    if (made.some((e) => e.outcome?.result === 'Allowed')) failures.push(`expected denial is allowed: ${x.caller} ${x.action} on ${x.resource}`)
    if (!made.length) notes.push(`expected denial not made in this run: ${x.caller} ${x.action} on ${x.resource}`)
  }

  // Granted but unused, against the justifications.
  const justified = reviewed.grants ?? []
  const justification = (role, action, resource) => justified.find((j) => j.role === role && j.action === action && asList(j.resources).includes(resource))
  const usedPairs = new Set([...used.values()].map(({ principal, grant }) => `${principal.key}|${grant.action}|${grant.resource}`))
  const unused = new Map()
  const granted = new Set()
  for (const principal of new Map(Object.values(callers).map((p) => [p.key, p])).values()) {
    for (const grant of grants(principal)) {
      const pair = `${principal.key}|${grant.action}|${grant.resource}`
      granted.add(pair)
      if (!usedPairs.has(pair)) unused.set(pair, { role: principal.key, action: grant.action, resource: grant.resource })
    }
  }
  const unjustified = [...unused.values()].filter((u) => !justification(u.role, u.action, u.resource))
  for (const u of unjustified) failures.push(`UNUSED and not justified: ${u.role} is granted ${u.action} on ${u.resource}: justify it in ${path.relative(root, opts.justifications)} or remove it from the template`)
  for (const j of justified) {
    if (!j.reason || !String(j.reason).trim()) failures.push(`justification without a reason: ${j.role} ${j.action}`)
    for (const resource of asList(j.resources)) {
      const pair = `${j.role}|${j.action}|${resource}`
      if (!granted.has(pair)) failures.push(`stale justification: ${j.role} is not granted ${j.action} on ${resource} (any more): remove it from ${path.relative(root, opts.justifications)}`)
      else if (!unused.has(pair)) notes.push(`justified grant now exercised by the tests: ${j.role} ${j.action} on ${resource}`)
    }
  }

  // Each used grant removed in turn: the requests that used it must now be denied.
  let loadBearing = 0
  const redundant = []
  for (const { principal, grant, evaluations: users } of used.values()) {
    const policies = without(principal, grant)
    let denials = 0
    for (const evaluation of users.slice(0, 3)) {
      const outcome = await simulate(principal, evaluation, policies, deployment, mapping.ACCOUNT)
      if (outcome.result !== 'Allowed') denials += 1
    }
    if (denials > 0) loadBearing += 1
    else redundant.push(`${principal.key}: ${grant.action} on ${grant.resource} (${grant.policy} statement ${grant.identifier})`)
  }

  // Figures.
  const requests = Object.keys(callers).reduce((n, c) => n + (recorded.requests_by_caller[c] ?? 0), 0)
  const pairs = new Set([...evaluations.values()].map((e) => `${e.action} ${e.resource}`))
  console.log(`iam proof: ${requests} requests of the functions and the CLI recorded (${recorded.requests} in all, ${recorded.untagged} of them the test harness's, not evaluated)`)
  console.log(`  by caller: ${Object.keys(callers).map((c) => `${c} ${recorded.requests_by_caller[c] ?? 0}`).join(', ')}`)
  if (Object.keys(notEvaluated).length) console.log(`  tagged but no principal in the mapping (not evaluated): ${JSON.stringify(notEvaluated)}`)
  console.log(`  authorizations evaluated: ${evaluations.size} distinct (${implied} implied KMS requests), ${noPermission} requests needing no permission`)
  console.log(`  distinct (action, resource) pairs: ${pairs.size}`)
  console.log(`  denied: ${unexpected.length}${expectedDenied.length ? ` (and ${expectedDenied.length} request(s) a test makes on purpose, denied as expected)` : ''}`)
  console.log(`  granted but unused: ${unused.size} (${unused.size - unjustified.length} justified in ${path.relative(root, opts.justifications)})`)
  console.log(`  used grants whose removal denies a recorded request: ${loadBearing} of ${used.size}${redundant.length ? `; granted twice (another statement or the resource policy allows it too): ${redundant.join('; ')}` : ''}`)
  const byRole = {}
  for (const { principal, grant } of used.values()) (byRole[principal.key] ??= new Set()).add(grant.action)
  for (const [role, actions] of Object.entries(byRole)) console.log(`  ${role} used: ${[...actions].sort().join(' ')}`)
  for (const note of notes) console.log(`  note: ${note}`)
  if (opts.report) {
    writeFileSync(opts.report, JSON.stringify({
      requests, pairs: pairs.size, denied: unexpected.length, expectedDenials: expectedDenied.length, unused: [...unused.values()], redundant, failures, notes,
      evaluations: [...evaluations.values()].map(({ outcome, ...e }) => ({ ...e, result: outcome?.result ?? 'error', resourcePolicy: outcome?.resourcePolicy }))
    }, null, 1))
  }
  for (const failure of failures) console.error(`FAIL ${failure}`)
  if (failures.length) {
    console.error(`iam proof FAILED (${failures.length} problem(s))`)
    process.exit(1)
  }
  console.log('iam proof ok: every recorded request is allowed by the deployed policies')
}

main().catch((error) => {
  console.error(`iam proof FAILED: ${error.message}`)
  process.exit(1)
})
