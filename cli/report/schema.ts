/**
 * Validation of result documents against the published schema
 * (schemas/xensim-results.schema.json, JSON Schema draft 2020-12, checked by
 * ajv), then the rules a schema cannot say: cell indices unique and inside
 * the sweep, each cell's point the one its index names, shard files holding
 * only their shard's cells.
 *
 * Every problem is reported with where it is, in the document's own terms:
 *   cells[0].block[1].fio.jobs[0].read.bw_bytes: must be a number, got string "fast"
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { closest } from '../config/xlcfg.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { pointLabel, sweepPointAt, type XensimResults } from './results.ts';

export const SCHEMA_URL = new URL('../../schemas/xensim-results.schema.json', import.meta.url);

export interface ResultsIssue {
  /** Where, e.g. `cells[2].xentop.domains[0].cpu_ns`; '' for the document itself. */
  readonly path: string;
  readonly message: string;
}
export interface ResultsError {
  readonly kind: 'invalid-results';
  readonly issues: readonly ResultsIssue[];
  /** Printable: one issue per line (at most MAX_LISTED, then a count of the rest). */
  readonly message: string;
}

const MAX_LISTED = 20;

let compiled: ValidateFunction | null = null;

/** [resultsSchema] is the published schema as parsed JSON. */
export function resultsSchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, unknown>;
}

function validator(): ValidateFunction {
  if (compiled === null) {
    const ajv = new Ajv2020({ allErrors: true, strict: true, verbose: true });
    compiled = ajv.compile(resultsSchema());
  }
  return compiled;
}

/** JSON pointer (/cells/0/fio/jobs) → cells[0].fio.jobs */
function pathOf(pointer: string): string {
  if (pointer === '') return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function join(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? (path === '' ? key : `${path}.${key}`) : `${path}[${JSON.stringify(key)}]`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false', object: 'an object', array: 'a list', null: 'null',
};
function typeWords(t: unknown): string {
  const ts = Array.isArray(t) ? t : [t];
  return ts.map((x) => TYPE_WORDS[String(x)] ?? String(x)).join(' or ');
}

function issueOf(e: ErrorObject): ResultsIssue {
  const path = pathOf(e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { path: join(path, String(p['missingProperty'])), message: 'is missing (required)' };
    case 'additionalProperties': {
      const key = String(p['additionalProperty']);
      const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
      const guess = props === undefined ? null : closest(key, Object.keys(props));
      return { path: join(path, key), message: `is not a known key${guess === null ? '' : `; did you mean ${guess}?`}` };
    }
    case 'type':
      return { path, message: `must be ${typeWords(p['type'])}, got ${describe(e.data)}` };
    case 'enum':
      return { path, message: `must be one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${describe(e.data)}` };
    case 'const':
      return { path, message: `must be ${JSON.stringify(p['allowedValue'])}, got ${describe(e.data)}` };
    case 'pattern': {
      const what = /T\[0-9\]\{2\}:/.test(String(p['pattern']))
        ? 'an ISO 8601 date and time such as 2026-01-31T12:00:00.000Z'
        : /\{64\}/.test(String(p['pattern'])) ? '64 lower-case hex digits (a sha256)'
          : `text matching /${String(p['pattern'])}/`;
      return { path, message: `must be ${what}, got ${describe(e.data)}` };
    }
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum': {
      const op = { minimum: '>=', maximum: '<=', exclusiveMinimum: '>', exclusiveMaximum: '<' }[e.keyword];
      return { path, message: `must be ${op} ${String(p['limit'])}, got ${describe(e.data)}` };
    }
    case 'minItems':
      return { path, message: `must have at least ${String(p['limit'])} item(s)` };
    case 'minLength':
      return { path, message: p['limit'] === 1 ? 'must not be empty' : `must be at least ${String(p['limit'])} characters` };
    case 'propertyNames':
      return { path: join(path, String(p['propertyName'])), message: 'is not an allowed key here' };
    default:
      return { path, message: e.message ?? e.keyword };
  }
}

/**
 * Keeps the errors a reader can act on: drops `if`/`anyOf` summaries when a
 * more specific error explains them, and the "must be null" half of a
 * nullable field when its other half has an error at the same place.
 */
function usefulErrors(errors: readonly ErrorObject[]): ErrorObject[] {
  const specific = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'if');
  const out = errors.filter((e) => {
    if (e.keyword === 'if') return false;
    if (e.keyword === 'anyOf') return !specific.some((s) => s.instancePath.startsWith(e.instancePath));
    if (e.keyword === 'type' && (e.params as { type?: unknown }).type === 'null') {
      return !specific.some((s) => s !== e && s.instancePath === e.instancePath);
    }
    return true;
  });
  const seen = new Set<string>();
  return out.filter((e) => {
    const key = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function resultsError(issues: readonly ResultsIssue[], what: string): ResultsError {
  const lines = issues.slice(0, MAX_LISTED).map((i) => `  ${i.path === '' ? '(document)' : i.path}: ${i.message}`);
  if (issues.length > MAX_LISTED) lines.push(`  … and ${issues.length - MAX_LISTED} more`);
  return { kind: 'invalid-results', issues, message: `${what} is not a valid xensim results document:\n${lines.join('\n')}` };
}

/** The checks a schema cannot express. */
function semanticIssues(doc: XensimResults): ResultsIssue[] {
  const issues: ResultsIssue[] = [];
  const sc = doc.scenario;
  const product = sc.sweep.reduce((n, a) => n * a.values.length, 1);
  if (product !== sc.cell_count) issues.push({ path: 'scenario.cell_count', message: `is ${sc.cell_count}, but the sweep axes make ${product} cell(s)` });
  const paths = sc.sweep.map((a) => a.path);
  if (new Set(paths).size !== paths.length) issues.push({ path: 'scenario.sweep', message: 'names a path twice' });
  if (doc.shard !== undefined && doc.shard.k > doc.shard.n) issues.push({ path: 'shard.k', message: `is ${doc.shard.k}, more than the ${doc.shard.n} shards` });
  if (doc.shard !== undefined && doc.merged_from !== undefined) issues.push({ path: 'shard', message: 'a merged document holds every shard; it cannot be one' });
  const seen = new Map<number, number>();
  doc.cells.forEach((c, i) => {
    const at = `cells[${i}]`;
    const prev = seen.get(c.index);
    if (prev !== undefined) issues.push({ path: `${at}.index`, message: `${c.index} is also the index of cells[${prev}]` });
    seen.set(c.index, i);
    if (c.index >= sc.cell_count) {
      issues.push({ path: `${at}.index`, message: `is ${c.index}, but the sweep has only ${sc.cell_count} cell(s) (0..${sc.cell_count - 1})` });
      return;
    }
    const want = sweepPointAt(sc.sweep, c.index);
    if (want !== null && JSON.stringify(want) !== JSON.stringify(c.point)) {
      issues.push({ path: `${at}.point`, message: `is {${pointLabel(c.point)}}, but cell ${c.index} of this sweep is {${pointLabel(want)}}` });
    }
    if (doc.shard !== undefined && c.index % doc.shard.n !== doc.shard.k - 1) {
      issues.push({ path: `${at}.index`, message: `cell ${c.index} belongs to shard ${(c.index % doc.shard.n) + 1}/${doc.shard.n}, not ${doc.shard.k}/${doc.shard.n}` });
    }
    if (c.source !== undefined && (doc.merged_from === undefined || c.source >= doc.merged_from.length)) {
      issues.push({ path: `${at}.source`, message: `is ${c.source}, but merged_from has ${doc.merged_from?.length ?? 0} entries` });
    }
  });
  return issues;
}

/**
 * [validateResults doc what] checks a parsed JSON value against the schema
 * and the rules above. `what` names it in the message (a file name).
 */
export function validateResults(doc: unknown, what = 'the document'): Result<XensimResults, ResultsError> {
  const v = validator();
  if (!v(doc)) return err(resultsError(usefulErrors(v.errors ?? []).map(issueOf), what));
  const results = doc as XensimResults;
  const semantic = semanticIssues(results);
  if (semantic.length > 0) return err(resultsError(semantic, what));
  return ok(results);
}

export type ReadResultsError = ResultsError | { readonly kind: 'unreadable'; readonly file: string; readonly message: string };

/** [readResultsFile file] reads, parses and validates a results file. */
export function readResultsFile(file: string): Result<XensimResults, ReadResultsError> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (x) {
    return err({ kind: 'unreadable', file, message: `${file}: cannot read it: ${(x as NodeJS.ErrnoException).code ?? String(x)}` });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (x) {
    return err({ kind: 'unreadable', file, message: `${file}: not JSON: ${x instanceof Error ? x.message : String(x)}` });
  }
  return validateResults(doc, file);
}
