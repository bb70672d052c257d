//! The Unigram model's vocab trie, laid out flat for the Viterbi scan: the
//! root's children in a 256-entry table, every other node's children in one
//! sorted run of `(byte, child)` edges, and each node's piece id in the node
//! itself (one memory access per byte, no hashing).

use rustc_hash::FxHashMap;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    /// The vocab id of the piece ending here, or NONE.
    id: u32,
    /// This node's children: edges[first..first + len].
    first: u32,
    len: u32,
}

pub(super) struct Trie {
    root: Box<[u32; 256]>,
    nodes: Vec<Node>,
    edges: Vec<(u8, u32)>,
}

impl Trie {
    /// `pieces`: (bytes, id); the first id of a duplicated piece wins.
    pub(super) fn build<'a>(pieces: impl Iterator<Item = (&'a str, u32)>) -> Self {
        // A pointer trie first, then flattened.
        let mut children: Vec<FxHashMap<u8, u32>> = vec![FxHashMap::default()];
        let mut ids = vec![NONE];
        for (p, id) in pieces {
            let mut node = 0usize;
            for b in p.bytes() {
                let next = children.len() as u32;
                let child = *children[node].entry(b).or_insert(next);
                if child == next {
                    children.push(FxHashMap::default());
                    ids.push(NONE);
                }
                node = child as usize;
            }
            if ids[node] == NONE && !p.is_empty() {
                ids[node] = id;
            }
        }
        let mut root = Box::new([NONE; 256]);
        let mut nodes = Vec::with_capacity(children.len());
        let mut edges = Vec::new();
        for (n, kids) in children.iter().enumerate() {
            let mut sorted: Vec<(u8, u32)> = kids.iter().map(|(&b, &c)| (b, c)).collect();
            sorted.sort_unstable();
            if n == 0 {
                for &(b, c) in &sorted {
                    root[b as usize] = c;
                }
            }
            nodes.push(Node {
                id: ids[n],
                first: edges.len() as u32,
                len: sorted.len() as u32,
            });
            edges.extend(sorted);
        }
        Trie { root, nodes, edges }
    }

    fn child(&self, node: u32, b: u8) -> u32 {
        if node == 0 {
            return self.root[b as usize];
        }
        let n = self.nodes[node as usize];
        let run = &self.edges[n.first as usize..(n.first + n.len) as usize];
        if run.len() <= 8 {
            run.iter().find(|e| e.0 == b).map_or(NONE, |e| e.1)
        } else {
            run.binary_search_by_key(&b, |e| e.0)
                .map_or(NONE, |i| run[i].1)
        }
    }

    /// Calls `f(byte length, id)` for every vocab piece `s` starts with, shortest first.
    #[inline]
    pub(super) fn prefixes(&self, s: &[u8], mut f: impl FnMut(usize, u32)) {
        let mut node = 0u32;
        for (i, &b) in s.iter().enumerate() {
            node = self.child(node, b);
            if node == NONE {
                return;
            }
            let id = self.nodes[node as usize].id;
            if id != NONE {
                f(i + 1, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_shortest_first_first_id_wins() {
        let words = ["a", "ab", "abc", "b", "ab", "▁x", "▁xy"];
        let t = Trie::build(words.iter().enumerate().map(|(i, w)| (*w, i as u32)));
        let mut got = vec![];
        t.prefixes(b"abcd", |n, id| got.push((n, id)));
        assert_eq!(got, vec![(1, 0), (2, 1), (3, 2)]);
        got.clear();
        t.prefixes("▁xyz".as_bytes(), |n, id| got.push((n, id)));
        assert_eq!(got, vec![(4, 5), (5, 6)]);
        got.clear();
        t.prefixes(b"zz", |n, id| got.push((n, id)));
        assert!(got.is_empty());
    }
}
