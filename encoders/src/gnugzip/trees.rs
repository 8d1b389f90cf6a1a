//! Huffman tree construction: a port of zlib 1.3.2 `trees.c`
//! (`tr_static_init`, `pqdownheap`, `gen_bitlen`, `build_tree`, `gen_codes`),
//! zlib license, Copyright (C) 1995-2024 Jean-loup Gailly and Mark Adler.

/// Number of length codes, not counting the special END_BLOCK code.
pub(crate) const LENGTH_CODES: usize = 29;
/// Number of literal bytes 0..255.
pub(crate) const LITERALS: usize = 256;
/// Number of literal or length codes, including END_BLOCK.
pub(crate) const L_CODES: usize = LITERALS + 1 + LENGTH_CODES;
/// Number of distance codes.
pub(crate) const D_CODES: usize = 30;
/// Number of codes used to transfer the bit lengths.
pub(crate) const BL_CODES: usize = 19;
/// Maximum heap size.
pub(crate) const HEAP_SIZE: usize = 2 * L_CODES + 1;
/// All codes must not exceed MAX_BITS bits.
const MAX_BITS: usize = 15;
/// Bit length codes must not exceed MAX_BL_BITS bits.
const MAX_BL_BITS: usize = 7;
/// End of block literal code.
pub(crate) const END_BLOCK: usize = 256;
/// Repeat previous bit length 3-6 times (2 bits of repeat count).
pub(crate) const REP_3_6: usize = 16;
/// Repeat a zero length 3-10 times (3 bits of repeat count).
pub(crate) const REPZ_3_10: usize = 17;
/// Repeat a zero length 11-138 times (7 bits of repeat count).
pub(crate) const REPZ_11_138: usize = 18;

/// Extra bits for each length code.
pub(crate) const EXTRA_LBITS: [u8; LENGTH_CODES] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Extra bits for each distance code.
pub(crate) const EXTRA_DBITS: [u8; D_CODES] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// Extra bits for each bit length code.
const EXTRA_BLBITS: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
/// The order in which the bit length codes are sent.
pub(crate) const BL_ORDER: [usize; BL_CODES] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Which tree a [`Tree`] is: its size, extra bits and static counterpart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Literal/length tree.
    Lit,
    /// Distance tree.
    Dist,
    /// Bit length tree.
    BitLen,
}

impl Kind {
    fn elems(self) -> usize {
        match self {
            Kind::Lit => L_CODES,
            Kind::Dist => D_CODES,
            Kind::BitLen => BL_CODES,
        }
    }

    fn extra(self, n: usize) -> u32 {
        match self {
            Kind::Lit if n > LITERALS => u32::from(EXTRA_LBITS[n - LITERALS - 1]),
            Kind::Dist => u32::from(EXTRA_DBITS[n]),
            Kind::BitLen if n >= 16 => u32::from(EXTRA_BLBITS[n]),
            _ => 0,
        }
    }

    fn max_length(self) -> u16 {
        if self == Kind::BitLen {
            MAX_BL_BITS as u16
        } else {
            MAX_BITS as u16
        }
    }
}

/// Static lookup tables (`tr_static_init`).
pub(crate) struct Tables {
    /// Length code for each match length - 3.
    pub length_code: [u8; 256],
    /// Distance code for distances, see [`Tables::d_code`].
    pub dist_code: [u8; 512],
    /// First normalized length for each code.
    pub base_length: [u16; LENGTH_CODES],
    /// First normalized distance for each code.
    pub base_dist: [u16; D_CODES],
    /// Static literal tree: (code, len), 288 entries.
    pub static_l: [(u16, u16); L_CODES + 2],
    /// Static distance tree: (code, len).
    pub static_d: [(u16, u16); D_CODES],
}

impl Tables {
    /// Builds the tables as `tr_static_init` does.
    pub fn new() -> Self {
        let mut t = Tables {
            length_code: [0; 256],
            dist_code: [0; 512],
            base_length: [0; LENGTH_CODES],
            base_dist: [0; D_CODES],
            static_l: [(0, 0); L_CODES + 2],
            static_d: [(0, 0); D_CODES],
        };
        let mut length = 0usize;
        for (code, &eb) in EXTRA_LBITS[..LENGTH_CODES - 1].iter().enumerate() {
            t.base_length[code] = length as u16;
            for _ in 0..(1 << eb) {
                t.length_code[length] = code as u8;
                length += 1;
            }
        }
        t.length_code[255] = (LENGTH_CODES - 1) as u8;
        let mut dist = 0usize;
        for (code, &eb) in EXTRA_DBITS[..16].iter().enumerate() {
            t.base_dist[code] = dist as u16;
            for _ in 0..(1 << eb) {
                t.dist_code[dist] = code as u8;
                dist += 1;
            }
        }
        dist >>= 7;
        for (code, &eb) in EXTRA_DBITS.iter().enumerate().skip(16) {
            t.base_dist[code] = (dist << 7) as u16;
            for _ in 0..(1 << (eb - 7)) {
                t.dist_code[256 + dist] = code as u8;
                dist += 1;
            }
        }
        t.static_trees();
        t
    }

    fn static_trees(&mut self) {
        let mut bl_count = [0u16; MAX_BITS + 1];
        let mut lens = [0u16; L_CODES + 2];
        for (n, l) in lens.iter_mut().enumerate() {
            *l = match n {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
            bl_count[usize::from(*l)] += 1;
        }
        let mut codes = [0u16; L_CODES + 2];
        gen_codes(&mut codes, &lens, L_CODES + 1, &bl_count);
        for n in 0..L_CODES + 2 {
            self.static_l[n] = (codes[n], lens[n]);
        }
        for n in 0..D_CODES {
            self.static_d[n] = (bi_reverse(n as u32, 5) as u16, 5);
        }
    }

    /// The distance code of `dist` (the match distance - 1).
    #[inline]
    pub fn d_code(&self, dist: usize) -> usize {
        if dist < 256 {
            usize::from(self.dist_code[dist])
        } else {
            usize::from(self.dist_code[256 + (dist >> 7)])
        }
    }
}

/// Reverses the first `len` bits of `code`.
fn bi_reverse(code: u32, len: u16) -> u32 {
    code.reverse_bits() >> (32 - u32::from(len))
}

/// Assigns canonical codes to the lengths in `lens[..=max_code]`.
fn gen_codes(codes: &mut [u16], lens: &[u16], max_code: usize, bl_count: &[u16]) {
    let mut next_code = [0u16; MAX_BITS + 1];
    let mut code = 0u32;
    for bits in 1..=MAX_BITS {
        code = (code + u32::from(bl_count[bits - 1])) << 1;
        next_code[bits] = code as u16;
    }
    for n in 0..=max_code {
        let len = lens[n];
        if len == 0 {
            continue;
        }
        let l = usize::from(len);
        codes[n] = bi_reverse(u32::from(next_code[l]), len) as u16;
        next_code[l] = next_code[l].wrapping_add(1);
    }
}

/// One dynamic tree (zlib's `ct_data` array with its `tree_desc`).
pub(crate) struct Tree {
    /// Which tree this is.
    kind: Kind,
    /// Symbol (and internal node) frequencies.
    pub freq: [u16; HEAP_SIZE],
    /// Codes, valid after [`Heap::build_tree`].
    pub code: [u16; HEAP_SIZE],
    /// Parent of each node.
    dad: [u16; HEAP_SIZE],
    /// Code lengths.
    pub len: [u16; HEAP_SIZE],
    /// Largest code with non-zero frequency.
    pub max_code: usize,
}

impl Tree {
    /// An empty tree of `kind`.
    pub fn new(kind: Kind) -> Self {
        Tree {
            kind,
            freq: [0; HEAP_SIZE],
            code: [0; HEAP_SIZE],
            dad: [0; HEAP_SIZE],
            len: [0; HEAP_SIZE],
            max_code: 0,
        }
    }

    /// Zeroes the symbol frequencies (`init_block`).
    pub fn clear(&mut self) {
        let n = self.kind.elems();
        self.freq[..n].fill(0);
    }
}

/// The shared heap and bit-length counts, plus the running block costs.
pub(crate) struct Heap {
    heap: [u16; HEAP_SIZE],
    heap_len: usize,
    heap_max: usize,
    depth: [u8; HEAP_SIZE],
    bl_count: [u16; MAX_BITS + 1],
    /// Bit length of the current block with optimal trees.
    pub opt_len: u64,
    /// Bit length of the current block with static trees.
    pub static_len: u64,
}

/// zlib's `smaller` macro: compares by frequency, then depth.
#[inline]
fn smaller(tree: &Tree, depth: &[u8], n: usize, m: usize) -> bool {
    tree.freq[n] < tree.freq[m] || (tree.freq[n] == tree.freq[m] && depth[n] <= depth[m])
}

impl Heap {
    /// An empty heap.
    pub fn new() -> Self {
        Heap {
            heap: [0; HEAP_SIZE],
            heap_len: 0,
            heap_max: 0,
            depth: [0; HEAP_SIZE],
            bl_count: [0; MAX_BITS + 1],
            opt_len: 0,
            static_len: 0,
        }
    }

    fn pqdownheap(&mut self, tree: &Tree, mut k: usize) {
        let v = usize::from(self.heap[k]);
        let mut j = k << 1;
        while j <= self.heap_len {
            if j < self.heap_len
                && smaller(
                    tree,
                    &self.depth,
                    usize::from(self.heap[j + 1]),
                    usize::from(self.heap[j]),
                )
            {
                j += 1;
            }
            if smaller(tree, &self.depth, v, usize::from(self.heap[j])) {
                break;
            }
            self.heap[k] = self.heap[j];
            k = j;
            j <<= 1;
        }
        self.heap[k] = v as u16;
    }

    /// Computes the optimal bit lengths, limited to the kind's maximum.
    fn gen_bitlen(&mut self, tree: &mut Tree, stat: Option<&[(u16, u16)]>) {
        let max_code = tree.max_code;
        let max_length = tree.kind.max_length();
        let mut overflow = 0i32;
        self.bl_count.fill(0);
        tree.len[usize::from(self.heap[self.heap_max])] = 0;
        let mut h = self.heap_max + 1;
        while h < HEAP_SIZE {
            let n = usize::from(self.heap[h]);
            h += 1;
            let mut bits = tree.len[usize::from(tree.dad[n])] + 1;
            if bits > max_length {
                bits = max_length;
                overflow += 1;
            }
            tree.len[n] = bits;
            if n > max_code {
                continue;
            }
            self.bl_count[usize::from(bits)] += 1;
            let xbits = tree.kind.extra(n);
            let f = u64::from(tree.freq[n]);
            self.opt_len = self
                .opt_len
                .wrapping_add(f * u64::from(u32::from(bits) + xbits));
            if let Some(st) = stat {
                let sl = u64::from(u32::from(st[n].1) + xbits);
                self.static_len = self.static_len.wrapping_add(f * sl);
            }
        }
        if overflow == 0 {
            return;
        }
        self.fix_overflow(tree, overflow, max_length, h);
    }

    /// The second half of `gen_bitlen`: moves overflowing leaves up.
    fn fix_overflow(&mut self, tree: &mut Tree, mut overflow: i32, max_length: u16, mut h: usize) {
        let ml = usize::from(max_length);
        loop {
            let mut bits = ml - 1;
            while self.bl_count[bits] == 0 {
                bits -= 1;
            }
            self.bl_count[bits] -= 1;
            self.bl_count[bits + 1] += 2;
            self.bl_count[ml] -= 1;
            overflow -= 2;
            if overflow <= 0 {
                break;
            }
        }
        for bits in (1..=ml).rev() {
            let mut n = self.bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = usize::from(self.heap[h]);
                if m > tree.max_code {
                    continue;
                }
                if usize::from(tree.len[m]) != bits {
                    let delta = (bits as u64).wrapping_sub(u64::from(tree.len[m]));
                    self.opt_len = self
                        .opt_len
                        .wrapping_add(delta.wrapping_mul(u64::from(tree.freq[m])));
                    tree.len[m] = bits as u16;
                }
                n -= 1;
            }
        }
    }

    /// Builds one Huffman tree and its codes (`build_tree`).
    pub fn build_tree(&mut self, tree: &mut Tree, stat: Option<&[(u16, u16)]>) {
        let elems = tree.kind.elems();
        let mut max_code: isize = -1;
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        for n in 0..elems {
            if tree.freq[n] != 0 {
                self.heap_len += 1;
                self.heap[self.heap_len] = n as u16;
                max_code = n as isize;
                self.depth[n] = 0;
            } else {
                tree.len[n] = 0;
            }
        }
        while self.heap_len < 2 {
            let node = if max_code < 2 {
                max_code += 1;
                max_code as usize
            } else {
                0
            };
            self.heap_len += 1;
            self.heap[self.heap_len] = node as u16;
            tree.freq[node] = 1;
            self.depth[node] = 0;
            self.opt_len = self.opt_len.wrapping_sub(1);
            if let Some(st) = stat {
                self.static_len = self.static_len.wrapping_sub(u64::from(st[node].1));
            }
        }
        tree.max_code = max_code as usize;
        for n in (1..=self.heap_len / 2).rev() {
            self.pqdownheap(tree, n);
        }
        self.combine(tree, elems);
        self.gen_bitlen(tree, stat);
        gen_codes(&mut tree.code, &tree.len, tree.max_code, &self.bl_count);
    }

    /// The main loop of `build_tree`: joins the two least frequent nodes.
    fn combine(&mut self, tree: &mut Tree, elems: usize) {
        let mut node = elems;
        loop {
            let n = usize::from(self.heap[1]);
            self.heap[1] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.pqdownheap(tree, 1);
            let m = usize::from(self.heap[1]);
            self.heap_max -= 1;
            self.heap[self.heap_max] = n as u16;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m as u16;
            tree.freq[node] = tree.freq[n].wrapping_add(tree.freq[m]);
            self.depth[node] = self.depth[n].max(self.depth[m]) + 1;
            tree.dad[n] = node as u16;
            tree.dad[m] = node as u16;
            self.heap[1] = node as u16;
            node += 1;
            self.pqdownheap(tree, 1);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[1];
    }
}
