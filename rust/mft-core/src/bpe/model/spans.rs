//! Each id's span in the source text, for offsets.

use super::BpeModel;

impl BpeModel {
    /// Byte length in the source text of each of `ids` (the ids of `piece`),
    /// for offsets. Byte-level tokens: one byte per char; byte-fallback
    /// tokens: one byte; unknown tokens: the chars they stand for.
    pub fn token_spans(&self, piece: &str, ids: &[u32]) -> Vec<usize> {
        let mut out = Vec::with_capacity(ids.len());
        let mut pos = 0usize;
        for &id in ids {
            let tok = self.id_to_token(id).unwrap_or("");
            let n = if self.byte_level {
                tok.chars().count()
            } else if Some(id) == self.unk_id && !piece[pos.min(piece.len())..].starts_with(tok) {
                // The unknown chars it replaced (several when fused).
                let mut n = 0;
                for c in piece[pos.min(piece.len())..].chars() {
                    let known = self.vocab.contains_key(c.encode_utf8(&mut [0; 4]) as &str);
                    if known || (n > 0 && !self.options.fuse_unk) {
                        break;
                    }
                    n += c.len_utf8();
                }
                n.max(1)
            } else if tok.len() == 6
                && tok.starts_with("<0x")
                && tok.ends_with('>')
                && self.options.byte_fallback
            {
                1
            } else {
                let mut t = tok;
                if pos > 0 {
                    if let Some(p) = &self.options.continuing_subword_prefix {
                        t = t.strip_prefix(p.as_str()).unwrap_or(t);
                    }
                }
                if let Some(s) = &self.options.end_of_word_suffix {
                    t = t.strip_suffix(s.as_str()).unwrap_or(t);
                }
                t.len()
            };
            out.push(n);
            pos += n;
        }
        out
    }

    /// Char-level (not byte-level) BPE of one piece with each id's byte
    /// range in `piece`: the same merges as `encode_piece`, ranges merged along.
    pub fn encode_char_level_spans(
        &self,
        piece: &str,
        ids: &mut Vec<u32>,
        spans: &mut Vec<(usize, usize)>,
    ) {
        if self.options.ignore_merges {
            if let Some(&id) = self.vocab.get(piece) {
                ids.push(id);
                spans.push((0, piece.len()));
                return;
            }
        }
        let mut syms = self.initial_symbols_spanned(piece);
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, id)) = self.merges.get(&(syms[i].0, syms[i + 1].0)) {
                    if best.is_none_or(|b| rank < b.0) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            let end = syms[i + 1].1 .1;
            syms[i] = (id, (syms[i].1 .0, end));
            syms.remove(i + 1);
        }
        for (id, span) in syms {
            ids.push(id);
            spans.push(span);
        }
    }
}
