//! The bit length tree: a port of zlib 1.3.2 `trees.c` (`scan_tree`,
//! `send_tree`, `build_bl_tree`), zlib license, Copyright (C) 1995-2024
//! Jean-loup Gailly and Mark Adler.

use super::block::BitWriter;
use super::trees::{Heap, Tree, BL_CODES, BL_ORDER, REPZ_11_138, REPZ_3_10, REP_3_6};

/// Counts the bit-length codes `send_tree` will use for `tree` (`scan_tree`).
pub(crate) fn scan_tree(bl: &mut Tree, tree: &mut Tree, max_code: usize) {
    tree.len[max_code + 1] = 0xffff;
    for_each_run(&tree.len, max_code, |run| match run {
        Run::Single(len, count) => bl.freq[len] += count as u16,
        Run::Rep(len, _, new) => {
            if new {
                bl.freq[len] += 1;
            }
            bl.freq[REP_3_6] += 1;
        }
        Run::Zeros(count) if count <= 10 => bl.freq[REPZ_3_10] += 1,
        Run::Zeros(_) => bl.freq[REPZ_11_138] += 1,
    });
}

/// One run of code lengths as `scan_tree`/`send_tree` group them.
pub(crate) enum Run {
    /// `count` copies of length `len`, sent one by one.
    Single(usize, usize),
    /// A repeat of length `len`, `count` times; `true` if `len` is sent first.
    Rep(usize, usize, bool),
    /// `count` zero lengths.
    Zeros(usize),
}

/// The run-length grouping shared by `scan_tree` and `send_tree`; `lens`
/// must hold the guard at `max_code + 1`.
pub(crate) fn for_each_run(lens: &[u16], max_code: usize, mut f: impl FnMut(Run)) {
    let mut prevlen: i32 = -1;
    let mut nextlen = i32::from(lens[0]);
    let mut count = 0usize;
    let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
    for n in 0..=max_code {
        let curlen = nextlen;
        nextlen = i32::from(lens[n + 1]);
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        } else if count < min_count {
            f(Run::Single(curlen as usize, count));
        } else if curlen != 0 {
            let new = curlen != prevlen;
            f(Run::Rep(
                curlen as usize,
                if new { count - 1 } else { count },
                new,
            ));
        } else {
            f(Run::Zeros(count));
        }
        count = 0;
        prevlen = curlen;
        (max_count, min_count) = if nextlen == 0 {
            (138, 3)
        } else if curlen == nextlen {
            (6, 3)
        } else {
            (7, 4)
        };
    }
}

/// Builds the bit length tree and returns the index in [`BL_ORDER`] of the
/// last bit length code to send (`build_bl_tree`).
pub(crate) fn build_bl_tree(heap: &mut Heap, l: &mut Tree, d: &mut Tree, bl: &mut Tree) -> usize {
    let (lmax, dmax) = (l.max_code, d.max_code);
    scan_tree(bl, l, lmax);
    scan_tree(bl, d, dmax);
    heap.build_tree(bl, None);
    let mut max_blindex = BL_CODES - 1;
    while max_blindex >= 3 {
        if bl.len[BL_ORDER[max_blindex]] != 0 {
            break;
        }
        max_blindex -= 1;
    }
    heap.opt_len = heap
        .opt_len
        .wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
    max_blindex
}

/// Sends `lens[..=max_code]` in compressed form with the bit length tree.
pub(crate) fn send_tree(w: &mut BitWriter, bl: &Tree, lens: &[u16], max_code: usize) {
    let code = |w: &mut BitWriter, n: usize| w.send(u32::from(bl.code[n]), u32::from(bl.len[n]));
    for_each_run(lens, max_code, |run| match run {
        Run::Single(len, count) => {
            for _ in 0..count {
                code(w, len);
            }
        }
        Run::Rep(len, count, new) => {
            if new {
                code(w, len);
            }
            code(w, REP_3_6);
            w.send(count as u32 - 3, 2);
        }
        Run::Zeros(count) if count <= 10 => {
            code(w, REPZ_3_10);
            w.send(count as u32 - 3, 3);
        }
        Run::Zeros(count) => {
            code(w, REPZ_11_138);
            w.send(count as u32 - 11, 7);
        }
    });
}
