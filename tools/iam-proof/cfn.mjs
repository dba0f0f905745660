// CloudFormation intrinsic functions resolved against a stack of the mapping (local-stack.mjs):
// Ref (parameters, pseudo parameters, resources), Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Split,
// Fn::Select, Fn::If with the template's conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
// Condition), Fn::FindInMap, AWS::NoValue. Anything it cannot resolve throws, naming what the
// mapping lacks: the proof never evaluates a policy it only partly understood.

const NO_VALUE = Symbol('AWS::NoValue')

export class Stack {
  /**
   * @param {string} name the mapping's stack name
   * @param {object} template the CloudFormation template (JSON)
   * @param {{region: string, parameters: object, resources: object}} deployed the mapping's stack
   * @param {string} account
   */
  constructor(name, template, deployed, account) {
    this.name = name
    this.template = template
    this.region = deployed.region
    this.account = account
    this.resources = deployed.resources ?? {}
    this.parameterValues = deployed.parameters ?? {}
    this.conditionCache = new Map()
  }

  where(what) {
    return `${this.name} stack (${this.template.__path ?? 'template'}): ${what}`
  }

  /** Parameters without a default that the mapping does not give: a deployment would fail. */
  missingParameters() {
    return Object.entries(this.template.Parameters ?? {})
      .filter(([name, p]) => p.Default === undefined && this.parameterValues[name] === undefined)
      .map(([name]) => name)
  }

  /** Mapping parameters the template does not declare (ignored, reported). */
  unknownParameters() {
    return Object.keys(this.parameterValues).filter((name) => !(name in (this.template.Parameters ?? {})))
  }

  parameter(name) {
    const declared = this.template.Parameters?.[name]
    if (!declared) throw new Error(this.where(`Ref to ${name}: neither a parameter nor a resource`))
    const raw = this.parameterValues[name] ?? declared.Default
    if (raw === undefined) throw new Error(this.where(`parameter ${name} has no value: add it to tools/iam-proof/local-stack.mjs`))
    const text = String(raw)
    if (declared.Type === 'CommaDelimitedList' || String(declared.Type).startsWith('List<')) {
      return text === '' ? [] : text.split(',').map((s) => s.trim())
    }
    return text
  }

  pseudo(name) {
    switch (name) {
      case 'AWS::AccountId': return this.account
      case 'AWS::Region': return this.region
      case 'AWS::Partition': return 'aws'
      case 'AWS::URLSuffix': return 'amazonaws.com'
      case 'AWS::StackName': return `replmon-${this.name}`
      case 'AWS::StackId': return `arn:aws:cloudformation:${this.region}:${this.account}:stack/replmon-${this.name}/00000000-0000-4000-8000-000000000000`
      case 'AWS::NoValue': return NO_VALUE
      default: throw new Error(this.where(`unknown pseudo parameter ${name}`))
    }
  }

  ref(name) {
    if (name.startsWith('AWS::')) return this.pseudo(name)
    if (this.template.Resources?.[name]) {
      const value = this.resources[name]?.Ref
      if (value === undefined) throw new Error(this.where(`Ref to resource ${name}: add its physical name to tools/iam-proof/local-stack.mjs`))
      return value
    }
    return this.parameter(name)
  }

  getAtt(name, attribute) {
    if (!this.template.Resources?.[name]) throw new Error(this.where(`GetAtt of unknown resource ${name}`))
    const value = this.resources[name]?.[attribute]
    if (value === undefined) throw new Error(this.where(`GetAtt ${name}.${attribute}: add it to tools/iam-proof/local-stack.mjs`))
    return value
  }

  condition(name) {
    if (!this.conditionCache.has(name)) {
      const definition = this.template.Conditions?.[name]
      if (definition === undefined) throw new Error(this.where(`unknown condition ${name}`))
      this.conditionCache.set(name, Boolean(this.resolve(definition)))
    }
    return this.conditionCache.get(name)
  }

  /** Whether a resource is deployed (its `Condition`, if any, holds). */
  deployed(logicalId) {
    const resource = this.template.Resources?.[logicalId]
    return Boolean(resource) && (resource.Condition === undefined || this.condition(resource.Condition))
  }

  sub(text, variables) {
    return text.replace(/\$\{([^}]*)\}/g, (whole, inner) => {
      if (inner.startsWith('!')) return '${' + inner.slice(1) + '}'
      let value
      if (variables && inner in variables) value = this.resolve(variables[inner])
      else if (inner.includes('.') && !inner.startsWith('AWS::')) {
        const dot = inner.indexOf('.')
        value = this.getAtt(inner.slice(0, dot), inner.slice(dot + 1))
      } else value = this.ref(inner)
      if (typeof value !== 'string') throw new Error(this.where(`Fn::Sub \${${inner}} is not a string`))
      return value
    })
  }

  /** The value with every intrinsic function resolved (NoValue entries dropped). */
  resolve(value) {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v)).filter((v) => v !== NO_VALUE)
    if (value === null || typeof value !== 'object') return value
    const keys = Object.keys(value)
    if (keys.length === 1) {
      const [fn] = keys
      const arg = value[fn]
      switch (fn) {
        case 'Ref': return this.ref(arg)
        case 'Fn::GetAtt': {
          const [name, attribute] = Array.isArray(arg) ? arg : String(arg).split(/\.(.*)/s)
          return this.getAtt(name, this.resolve(attribute))
        }
        case 'Fn::Sub': return Array.isArray(arg) ? this.sub(arg[0], arg[1]) : this.sub(arg)
        case 'Fn::Join': {
          const [separator, list] = arg
          const items = this.resolve(list)
          if (!Array.isArray(items)) throw new Error(this.where('Fn::Join of a non-list'))
          return items.flat().join(separator)
        }
        case 'Fn::Split': {
          const [separator, text] = arg
          const resolved = this.resolve(text)
          if (typeof resolved !== 'string') throw new Error(this.where('Fn::Split of a non-string'))
          return resolved.split(separator)
        }
        case 'Fn::Select': {
          const [index, list] = arg
          const items = this.resolve(list)
          const i = Number(this.resolve(index))
          if (!Array.isArray(items) || !(i in items)) throw new Error(this.where(`Fn::Select ${i} out of range`))
          return items[i]
        }
        case 'Fn::FindInMap': {
          const [map, top, second] = arg.map((a) => this.resolve(a))
          const found = this.template.Mappings?.[map]?.[top]?.[second]
          if (found === undefined) throw new Error(this.where(`Fn::FindInMap ${map}.${top}.${second} not found`))
          return found
        }
        case 'Fn::If': {
          const [condition, whenTrue, whenFalse] = arg
          return this.resolve(this.condition(condition) ? whenTrue : whenFalse)
        }
        case 'Fn::Equals': {
          const [a, b] = arg.map((x) => this.resolve(x))
          return JSON.stringify(a) === JSON.stringify(b)
        }
        case 'Fn::Not': return !this.resolve(arg[0])
        case 'Fn::And': return arg.every((c) => this.resolve(c))
        case 'Fn::Or': return arg.some((c) => this.resolve(c))
        case 'Condition': if (typeof arg === 'string') return this.condition(arg)
          break
        default:
          if (fn.startsWith('Fn::')) throw new Error(this.where(`${fn} is not supported by the IAM proof's resolver`))
      }
    }
    const out = {}
    for (const [k, v] of Object.entries(value)) {
      const resolved = this.resolve(v)
      if (resolved !== NO_VALUE) out[k] = resolved
    }
    return out
  }

  /** Deployed resources of a type, as [logicalId, resource]. */
  ofType(type) {
    return Object.entries(this.template.Resources ?? {}).filter(([id, r]) => r.Type === type && this.deployed(id))
  }
}
