/**
 * `--shard K/N`: run one part of a sweep, so a large matrix can be spread over
 * several machines and put back together with `xensim merge`.
 *
 * Cell i (its index in the full expansion, expandSweep's order) belongs to
 * shard (i mod N) + 1. Round-robin rather than contiguous blocks: the first
 * sweep axis varies slowest, so blocks would hand one shard all the cells of
 * one setting (often the slow ones) while round-robin mixes them. Every cell
 * is in exactly one shard, and the assignment depends on nothing but i and N,
 * so every machine computes the same split.
 */
import { InvalidArgumentError } from 'commander';
import { err, ok, type Result } from '../../shared/result.ts';
import type { ShardInfo } from './results.ts';

export type ShardError =
  | { readonly kind: 'bad-shard-syntax'; readonly text: string; readonly message: string }
  | { readonly kind: 'bad-shard-range'; readonly k: number; readonly n: number; readonly message: string }
  | { readonly kind: 'too-many-shards'; readonly n: number; readonly cells: number; readonly message: string };

/** Most shards accepted: no sweep may have more cells (scenario.ts max_sweep_points). */
export const MAX_SHARDS = 10_000;

/** [parseShard text] reads "K/N" (1 ≤ K ≤ N): shard K of N, 1-based as in `--shard 1/4`. */
export function parseShard(text: string): Result<ShardInfo, ShardError> {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (m === null) {
    return err({ kind: 'bad-shard-syntax', text, message: `--shard: expected K/N such as 1/4 (shard K of N, K from 1 to N), got ${JSON.stringify(text)}` });
  }
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || n > MAX_SHARDS) return err({ kind: 'bad-shard-range', k, n, message: `--shard ${k}/${n}: N must be from 1 to ${MAX_SHARDS}` });
  if (k < 1 || k > n) return err({ kind: 'bad-shard-range', k, n, message: `--shard ${k}/${n}: K must be from 1 to N (${n}); shards are numbered from 1` });
  return ok({ k, n });
}

/** [shardOf index n] is the 1-based shard that cell `index` belongs to. */
export function shardOf(index: number, n: number): number {
  return (index % n) + 1;
}

/**
 * [shardCells cells shard] is the cells of one shard, in their sweep order,
 * with their indices in the full sweep. Refuses more shards than cells (some
 * shards would run nothing, which is almost always a mistake in a CI matrix).
 */
export function shardCells<T>(cells: readonly T[], shard: ShardInfo): Result<{ index: number; cell: T }[], ShardError> {
  if (shard.n > cells.length) {
    return err({
      kind: 'too-many-shards',
      n: shard.n,
      cells: cells.length,
      message: `--shard ${shard.k}/${shard.n}: the sweep has ${cells.length} cell(s), so ${shard.n} shards would leave ${shard.n - cells.length} of them empty; use N of at most ${cells.length}`,
    });
  }
  const out: { index: number; cell: T }[] = [];
  for (let i = shard.k - 1; i < cells.length; i += shard.n) out.push({ index: i, cell: cells[i] as T });
  return ok(out);
}

/**
 * [shardOption text] is parseShard for a commander option parser: run and
 * bench declare `.option('--shard <K/N>', '…', shardOption)`.
 */
export function shardOption(text: string): ShardInfo {
  const r = parseShard(text);
  if (!r.ok) throw new InvalidArgumentError(r.error.message.replace(/^--shard:? ?/, '').replace(/^(\d+\/\d+): /, ''));
  return r.value;
}
