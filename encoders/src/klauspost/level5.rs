//! Level 5 match finder (klauspost/compress `flate/level5.go` `fastEncL5`
//! and `fast_encoder.go` `fastGen`): one 4-byte hash table and one 7-byte
//! table with two candidates per slot, over a history buffer that keeps the
//! last 32 KiB when it is compacted.
//!
//! Positions are `i32` offsets biased by `cur`, as in Go, so the same
//! entries are in and out of reach after `reset` and buffer compaction.

use super::token::{Tokens, MAX_STORE_BLOCK_SIZE};
use super::Version;

/// Hash table size from klauspost 1.10.2 on (`tableBits` 15).
pub(super) const TABLE_SIZE: usize = 1 << 15;
/// Hash table size up to klauspost 1.10.1 (`tableBits` 16).
pub(super) const TABLE_SIZE_1_10_1: usize = 1 << 16;
const MAX_MATCH_OFFSET: i32 = 1 << 15;
const MAX_MATCH_LENGTH: i32 = 258;
const ALLOC_HISTORY: usize = MAX_STORE_BLOCK_SIZE * 5;
const BUFFER_RESET: i32 = i32::MAX - ALLOC_HISTORY as i32 - MAX_STORE_BLOCK_SIZE as i32 - 1;
const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN as usize;
const PRIME4: u32 = 2654435761;
const PRIME7: u64 = 58295818150454627;

#[inline(always)]
fn hash4<const N: usize>(u: u64) -> usize {
    ((u as u32).wrapping_mul(PRIME4) >> (32 - N.trailing_zeros())) as usize
}

#[inline(always)]
fn hash7<const N: usize>(u: u64) -> usize {
    ((u << 8).wrapping_mul(PRIME7) >> (64 - N.trailing_zeros())) as usize
}

/// The history buffer is a power of two larger than `ALLOC_HISTORY`, plus
/// 8 bytes: a position masked with `HIST_MASK` can be loaded as 8 bytes
/// without a bounds check. Every position the encoder reads is below the
/// history length (the Go code would panic otherwise), so the mask never
/// changes an index; bytes past the length are only read by `match_len`,
/// which clamps its result.
const HIST_MASK: usize = (1 << 19) - 1;
const HIST_BUF: usize = HIST_MASK + 1 + 8;
const _: () = assert!(ALLOC_HISTORY <= HIST_MASK + 1);

type Hist = [u8; HIST_BUF];

#[inline(always)]
fn load64(b: &Hist, i: i32) -> u64 {
    let i = i as usize & HIST_MASK;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn load32(b: &Hist, i: i32) -> u32 {
    load64(b, i) as u32
}

/// Common prefix length of the `max` bytes from `a` and those from `b`
/// (`max` bytes from either are within the history).
#[inline(always)]
fn match_len(src: &Hist, a: i32, b: i32, max: i32) -> i32 {
    let mut n = 0i32;
    while n < max {
        let diff = load64(src, a + n) ^ load64(src, b + n);
        if diff != 0 {
            return (n + (diff.trailing_zeros() >> 3) as i32).min(max);
        }
        n += 8;
    }
    max
}

/// At most 254 bytes from `s` (klauspost `matchlen`).
#[inline(always)]
fn matchlen(s: i32, t: i32, src: &Hist, len: i32) -> i32 {
    match_len(src, s, t, (MAX_MATCH_LENGTH - 4).min(len - s))
}

/// Up to the end of the history (klauspost `matchlenLong`).
#[inline(always)]
fn matchlen_long(s: i32, t: i32, src: &Hist, len: i32) -> i32 {
    match_len(src, s, t, len - s)
}

/// A zeroed fixed-size array on the heap, never built on the stack.
fn zeroed<T: Copy + Default, const N: usize>() -> Box<[T; N]> {
    match vec![T::default(); N].into_boxed_slice().try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("the vector has N elements"),
    }
}

/// klauspost `fastEncL5`.
pub(super) struct FastEncL5<const N: usize> {
    hist: Box<Hist>,
    hist_len: usize,
    cur: i32,
    tables: Box<Tables<N>>,
    /// Whether a short match is checked for being the end of a longer one
    /// (klauspost 1.12.2 and later).
    end_check: bool,
    /// Leading bytes allowed to mismatch in that check (2 from klauspost
    /// 1.15.10, 0 before).
    skip_beginning: i32,
}

/// The two hash tables of `N` slots (`N` a power of two) in one allocation,
/// so the hot loop keeps one base pointer for them; fixed-size arrays let
/// the compiler drop bounds checks on hash indexes.
struct Tables<const N: usize> {
    table: [i32; N],
    /// `[Cur, Prev]` per slot.
    b_table: [[i32; 2]; N],
}

impl<const N: usize> FastEncL5<N> {
    pub fn new(version: Version) -> Self {
        FastEncL5 {
            end_check: version >= Version::V1_12_2,
            skip_beginning: if version >= Version::V1_15_10 { 2 } else { 0 },
            hist: zeroed(),
            hist_len: 0,
            cur: MAX_STORE_BLOCK_SIZE as i32,
            // 384 KiB (768 KiB for 2^16 slots): optimised builds allocate
            // it zeroed on the heap, unoptimised ones pass it through the
            // stack, which worker threads' 2 MiB hold.
            tables: Box::new(Tables {
                table: [0; N],
                b_table: [[0; 2]; N],
            }),
        }
    }

    /// Moves `cur` past everything stored so old entries are out of reach.
    pub fn reset(&mut self) {
        if self.cur <= BUFFER_RESET {
            self.cur += MAX_MATCH_OFFSET + self.hist_len as i32;
        }
        self.hist_len = 0;
    }

    fn add_block(&mut self, src: &[u8]) -> i32 {
        if self.hist_len + src.len() > ALLOC_HISTORY {
            // Keep the last 32 KiB as history.
            let offset = self.hist_len - MAX_MATCH_OFFSET as usize;
            self.hist.copy_within(offset..self.hist_len, 0);
            self.hist_len = MAX_MATCH_OFFSET as usize;
            self.cur += offset as i32;
        }
        let s = self.hist_len;
        self.hist[s..s + src.len()].copy_from_slice(src);
        self.hist_len += src.len();
        s as i32
    }

    /// Rebases the tables before `cur` could overflow (output-neutral).
    fn protect_wraparound(&mut self) {
        while self.cur >= BUFFER_RESET {
            if self.hist_len == 0 {
                self.tables.table.fill(0);
                self.tables.b_table.fill([0; 2]);
                self.cur = MAX_MATCH_OFFSET;
                break;
            }
            let cur = self.cur;
            let min_off = cur + self.hist_len as i32 - MAX_MATCH_OFFSET;
            for v in self.tables.table.iter_mut() {
                *v = if *v <= min_off {
                    0
                } else {
                    *v - cur + MAX_MATCH_OFFSET
                };
            }
            for v in self.tables.b_table.iter_mut() {
                if v[0] <= min_off {
                    *v = [0, 0];
                } else {
                    v[0] = v[0] - cur + MAX_MATCH_OFFSET;
                    v[1] = if v[1] <= min_off {
                        0
                    } else {
                        v[1] - cur + MAX_MATCH_OFFSET
                    };
                }
            }
            self.cur = MAX_MATCH_OFFSET;
        }
    }

    /// Appends the tokens for `src` (at most 64 KiB) to `dst`.
    pub fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        self.protect_wraparound();
        let mut s = self.add_block(src);
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            // klauspost sets the token count to len(src) without tokens and lets
            // the caller store the block; only a tiny preset dictionary gets here,
            // and its tokens are discarded.
            return;
        }
        let cur = self.cur;
        let src = &*self.hist;
        let len = self.hist_len as i32;
        let Tables { table, b_table } = &mut *self.tables;
        let mut next_emit = s;
        let s_limit = len - INPUT_MARGIN;
        let mut cv = load64(src, s);

        'outer: loop {
            const SKIP_LOG: i32 = 6;
            let mut next_s = s;
            let mut l: i32 = 0;
            let mut t: i32;
            loop {
                let next_hash_s = hash4::<N>(cv);
                let next_hash_l = hash7::<N>(cv);
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'outer;
                }
                let s_candidate = table[next_hash_s];
                let l_candidate = b_table[next_hash_l];
                let next = load64(src, next_s);
                let entry = s + cur;
                table[next_hash_s] = entry;
                b_table[next_hash_l] = [entry, l_candidate[0]];

                // All three candidates are tested first without branching (in
                // text most positions match none of them, and one predictable
                // branch replaces six that are not); the masked loads make
                // reading a candidate that is out of reach harmless. The
                // decisions below then follow klauspost's order exactly.
                // `s - t` with `t = candidate - cur` is `entry - candidate`.
                let cv4 = cv as u32;
                let l0_in = entry - l_candidate[0] < MAX_MATCH_OFFSET;
                let l1_in = entry - l_candidate[1] < MAX_MATCH_OFFSET;
                let s_in = entry - s_candidate < MAX_MATCH_OFFSET;
                // A candidate out of reach reads `s` instead (cached, and the
                // result is ignored), not a stale far-away position.
                let at = |inside: bool, candidate: i32| if inside { candidate - cur } else { s };
                let l0_hit = l0_in & (load32(src, at(l0_in, l_candidate[0])) == cv4);
                let l1_hit = l1_in & (load32(src, at(l1_in, l_candidate[1])) == cv4);
                let s_hit = s_in & (load32(src, at(s_in, s_candidate)) == cv4);
                if !(l0_hit | l1_hit | s_hit) {
                    cv = next;
                    continue;
                }

                let next_hash_s = hash4::<N>(next);
                let next_hash_l = hash7::<N>(next);
                let next_entry = next_s + cur;

                if l0_in {
                    if l0_hit {
                        t = l_candidate[0] - cur;
                        table[next_hash_s] = next_entry;
                        let e = &mut b_table[next_hash_l];
                        *e = [next_entry, e[0]];
                        let t2 = l_candidate[1] - cur;
                        if l1_hit {
                            l = matchlen(s + 4, t + 4, src, len) + 4;
                            let ml1 = matchlen(s + 4, t2 + 4, src, len) + 4;
                            if ml1 > l {
                                t = t2;
                                l = ml1;
                                break;
                            }
                        }
                        break;
                    }
                    if l1_hit {
                        t = l_candidate[1] - cur;
                        table[next_hash_s] = next_entry;
                        let e = &mut b_table[next_hash_l];
                        *e = [next_entry, e[0]];
                        break;
                    }
                }

                if s_hit {
                    t = s_candidate - cur;
                    // A 4-byte match; the long candidates at next_s may be longer.
                    l = matchlen(s + 4, t + 4, src, len) + 4;
                    let l_candidate = b_table[next_hash_l];
                    table[next_hash_s] = next_entry;
                    let e = &mut b_table[next_hash_l];
                    *e = [next_entry, e[0]];
                    // The second candidate counts only if the first is in reach,
                    // as in klauspost; both tested without branching.
                    let t2 = l_candidate[0] - cur;
                    let t3 = l_candidate[1] - cur;
                    let next4 = next as u32;
                    let in_reach = next_s - t2 < MAX_MATCH_OFFSET;
                    let hit2 = in_reach & (load32(src, t2) == next4);
                    let hit3 =
                        in_reach & (next_s - t3 < MAX_MATCH_OFFSET) & (load32(src, t3) == next4);
                    if hit2 {
                        let ml = matchlen(next_s + 4, t2 + 4, src, len) + 4;
                        if ml > l {
                            t = t2;
                            s = next_s;
                            l = ml;
                            break;
                        }
                    }
                    if hit3 {
                        let ml = matchlen(next_s + 4, t3 + 4, src, len) + 4;
                        if ml > l {
                            t = t3;
                            s = next_s;
                            l = ml;
                            break;
                        }
                    }
                    break;
                }
                cv = next;
            }

            if l == 0 {
                l = matchlen_long(s + 4, t + 4, src, len) + 4;
            } else if l == MAX_MATCH_LENGTH {
                l += matchlen_long(s + l, t + l, src, len);
            }

            // A short match may be a later part of a longer one: look up the
            // long hash at its end, allowing two mismatching leading bytes.
            let s_at = s + l;
            if self.end_check && l < 30 && s_at < s_limit {
                let e_long = b_table[hash7::<N>(load64(src, s_at))][0];
                let t2 = e_long - cur - l + self.skip_beginning;
                let s2 = s + self.skip_beginning;
                let off = s2 - t2;
                if (t2 >= 0) & (off < MAX_MATCH_OFFSET) & (off > 0) {
                    let l2 = matchlen_long(s2, t2, src, len);
                    if l2 > l {
                        t = t2;
                        l = l2;
                        s = s2;
                    }
                }
            }

            while t > 0
                && s > next_emit
                && src[(t - 1) as usize & HIST_MASK] == src[(s - 1) as usize & HIST_MASK]
            {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                break 'outer;
            }

            // Index every third position inside the match.
            let mut i = s - l + 1;
            if i < s - 1 {
                let mut cv = load64(src, i);
                let mut te = i + cur;
                table[hash4::<N>(cv)] = te;
                let e = &mut b_table[hash7::<N>(cv)];
                *e = [te, e[0]];
                cv >>= 8;
                te += 1;
                let e = &mut b_table[hash7::<N>(cv)];
                *e = [te, e[0]];
                cv >>= 8;
                te += 1;
                table[hash4::<N>(cv)] = te;
                i += 4;
                while i < s - 1 {
                    let cv = load64(src, i);
                    let te = i + cur;
                    let e = &mut b_table[hash7::<N>(cv)];
                    *e = [te, e[0]];
                    table[hash4::<N>(cv >> 8)] = te + 1;
                    i += 3;
                }
            }

            let x = load64(src, s - 1);
            let o = cur + s - 1;
            table[hash4::<N>(x)] = o;
            let e = &mut b_table[hash7::<N>(x)];
            *e = [o, e[0]];
            cv = x >> 8;
        }

        if next_emit < len {
            // Without any match the caller stores the block as is.
            if dst.n() == 0 {
                return;
            }
            dst.add_literals(&src[next_emit as usize..len as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::token::MATCH_TYPE;
    use super::*;

    /// Compressible bytes: words from a small vocabulary, some random bytes.
    fn sample(n: usize) -> Vec<u8> {
        let mut x = 12345u32;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if x >> 28 == 0 {
                out.push((x >> 16) as u8);
            } else {
                let word = (x >> 20) % 200;
                out.extend_from_slice(format!("w{word} ").as_bytes());
            }
        }
        out.truncate(n);
        out
    }

    /// Runs `windows` through `enc` the way `Compressor` does for one block
    /// (reset, then windows without reset) and returns every window's tokens.
    fn tokens_of(enc: &mut FastEncL5<TABLE_SIZE>, windows: &[&[u8]]) -> Vec<Vec<u32>> {
        let mut tokens = Tokens::new(Version::V1_15_10);
        enc.reset();
        windows
            .iter()
            .map(|w| {
                tokens.reset();
                enc.encode(&mut tokens, w);
                tokens.tokens().to_vec()
            })
            .collect()
    }

    #[test]
    fn rebasing_before_wraparound_does_not_change_tokens() {
        let data = sample(12 * MAX_STORE_BLOCK_SIZE);
        let windows: Vec<&[u8]> = data.chunks(MAX_STORE_BLOCK_SIZE).collect();
        let mut fresh = FastEncL5::<TABLE_SIZE>::new(Version::V1_15_10);
        let want = tokens_of(&mut fresh, &windows);
        assert!(want.iter().any(|t| t.iter().any(|&t| t >= MATCH_TYPE)));
        // Just below the limit: the first encode clears the tables (empty
        // history). Further below: history compaction crosses the limit in
        // the middle of the block, and the tables are rebased with history.
        for below in [10, 400_000] {
            let mut late = FastEncL5::<TABLE_SIZE>::new(Version::V1_15_10);
            late.cur = BUFFER_RESET - below;
            for round in 0..2 {
                let got = tokens_of(&mut late, &windows);
                assert!(got == want, "{below} below, round {round}");
            }
            assert!(late.cur < BUFFER_RESET / 2, "the tables were rebased");
        }
    }
}
