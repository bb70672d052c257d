//! HF's overflowing windows (`Encoding.overflowing`, what transformers
//! returns with `return_overflowing_tokens=True`): when the file's
//! `truncation` cuts a sequence, the cut-off tokens are not lost but come
//! back as further windows of the same length, each overlapping the one
//! before by `stride` tokens.
//!
//! HF cuts each sequence into windows (`windows`), lays every window out
//! with the template, and for a pair combines them in the order its
//! `Encoding::merge_with` builds them (`combinations`).

use super::components::{OverflowTypes, TemplatePiece};
use super::error::Result;
use super::pair::{Body, PairEncoding};
use super::tokenizer::Tokenizer;
use rayon::prelude::*;

/// The (start, stop) token windows HF's `Encoding::truncate(keep, stride,
/// direction)` makes of `len` tokens: the kept part first, then the
/// overflow. `keep == 0` leaves an empty main part and the whole as the
/// one overflow (a sequence with nothing to cut is one window).
pub(crate) fn windows(len: usize, keep: usize, stride: usize, left: bool) -> Vec<(usize, usize)> {
    if keep >= len {
        return vec![(0, len)];
    }
    if keep == 0 {
        return vec![(0, 0), (0, len)];
    }
    // `Limits::pair_lengths` refuses stride >= keep before we get here.
    let step = keep - stride;
    let mut out = Vec::new();
    if left {
        let mut stop = len;
        loop {
            let start = stop.saturating_sub(keep);
            out.push((start, stop));
            if start == 0 || stop <= step {
                break;
            }
            stop -= step;
        }
    } else {
        let mut start = 0;
        loop {
            let stop = (start + keep).min(len);
            out.push((start, stop));
            if stop == len {
                break;
            }
            start += step;
        }
    }
    out
}

/// Which sequences a layout names, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Named {
    AThenB,
    BThenA,
    OnlyA,
    OnlyB,
}

/// The rows of a text with `na` windows (and its pair with `nb`), as
/// indices (window of A, window of B), in HF's order. Row 0 is the main
/// encoding (both sequences' first windows). A sequence the layout does
/// not name never reaches HF's merge, so its windows make no rows.
fn combinations(na: usize, nb: Option<usize>, named: Named) -> Vec<(usize, Option<usize>)> {
    let Some(nb) = nb else {
        return (0..na).map(|i| (i, None)).collect();
    };
    let b_first = match named {
        Named::OnlyA => return (0..na).map(|i| (i, Some(0))).collect(),
        Named::OnlyB => return (0..nb).map(|j| (0, Some(j))).collect(),
        Named::AThenB => false,
        Named::BThenA => true,
    };
    // Merging X (laid out first) with Y: every overflow of X with Y's main
    // and then each overflow of Y, then X's main with each overflow of Y.
    let (nx, ny) = if b_first { (nb, na) } else { (na, nb) };
    let mut xy = vec![(0, 0)];
    for x in 1..nx {
        xy.extend((0..ny).map(|y| (x, y)));
    }
    xy.extend((1..ny).map(|y| (0, y)));
    xy.into_iter()
        .map(|(x, y)| if b_first { (y, Some(x)) } else { (x, Some(y)) })
        .collect()
}

fn window(body: &Body, (start, stop): (usize, usize)) -> Body {
    (
        body.0[start..stop].to_vec(),
        body.1.as_ref().map(|o| o[start..stop].to_vec()),
    )
}

impl Tokenizer {
    /// `a` (and its pair `b`) as HF's `encode` returns it together with its
    /// overflowing windows: the main encoding first, then each overflow,
    /// all laid out by the template and padded by the file's padding.
    /// Without a `truncation` section there is only the main encoding.
    pub fn encode_overflowing(
        &self,
        a: &str,
        b: Option<&str>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<Vec<PairEncoding>> {
        let mut rows = self.overflow_rows(a, b, add_special_tokens, with_offsets)?;
        let main = rows[0].ids.len();
        self.pad_rows(&mut rows, main);
        Ok(rows)
    }

    /// `encode_overflowing` over many items on the pool, in order;
    /// "BatchLongest" padding pads every row to the longest main encoding.
    pub fn encode_overflowing_batch<S: AsRef<str> + Sync>(
        &self,
        items: &[(S, Option<S>)],
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<Vec<Vec<PairEncoding>>> {
        let mut all: Vec<Vec<PairEncoding>> = crate::bpe::pool().install(|| {
            items
                .par_iter()
                .map(|(a, b)| {
                    self.overflow_rows(
                        a.as_ref(),
                        b.as_ref().map(|s| s.as_ref()),
                        add_special_tokens,
                        with_offsets,
                    )
                })
                .collect::<Result<_>>()
        })?;
        let longest = all.iter().map(|r| r[0].ids.len()).max().unwrap_or(0);
        for rows in all.iter_mut() {
            self.pad_rows(rows, longest);
        }
        Ok(all)
    }

    fn overflow_rows(
        &self,
        a: &str,
        b: Option<&str>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<Vec<PairEncoding>> {
        let first = self.pair_body(a, with_offsets);
        let second = b.map(|t| self.pair_body(t, with_offsets));
        let n_added = if add_special_tokens {
            self.post_processor.n_added(second.is_some())
        } else {
            0
        };
        let (la, lb) = (first.0.len(), second.as_ref().map(|s| s.0.len()));
        let kept = self.limits.pair_lengths(la, lb, n_added)?;
        let (stride, left) = self
            .limits
            .truncation
            .as_ref()
            .map_or((0, false), |t| (t.stride, t.left));
        let wa = match kept {
            Some((ka, _)) => windows(la, ka, stride, left),
            None => vec![(0, la)],
        };
        let wb = lb.map(|lb| match kept {
            Some((_, Some(kb))) => windows(lb, kb, stride, left),
            _ => vec![(0, lb)],
        });
        let named = self.pair_layout();
        let raw_types = match self.post_processor.template().map(|t| t.overflow_types) {
            Some(OverflowTypes::Raw) => true,
            Some(OverflowTypes::RawWithoutSpecials) => !add_special_tokens,
            None => false,
        };
        let rows = combinations(wa.len(), wb.as_ref().map(Vec::len), named)
            .into_iter()
            .map(|(i, j)| {
                let mut x = window(&first, wa[i]);
                let mut y = match (&second, &wb, j) {
                    (Some(s), Some(w), Some(j)) => Some(window(s, w[j])),
                    _ => None,
                };
                for (part, text) in std::iter::once((&mut x, a)).chain(y.as_mut().zip(b)) {
                    if let Some(o) = part.1.as_mut() {
                        self.trim_body(text, &part.0, o);
                    }
                }
                // A window past the main one keeps the encoder's type id.
                let raw = [raw_types && i > 0, raw_types && j.is_some_and(|j| j > 0)];
                self.lay_out(x, y, add_special_tokens, with_offsets, raw)
            })
            .collect();
        Ok(rows)
    }

    /// Which sequences the pair template names, in its order (no template:
    /// A then B, as HF's default layout).
    fn pair_layout(&self) -> Named {
        let Some(t) = self.post_processor.template() else {
            return Named::AThenB;
        };
        let mut order: Vec<bool> = Vec::with_capacity(2);
        for p in &t.pair {
            if let TemplatePiece::Sequence { second, .. } = p {
                if !order.contains(second) {
                    order.push(*second);
                }
            }
        }
        match order.as_slice() {
            [false, true] => Named::AThenB,
            [true, false] => Named::BThenA,
            [true] => Named::OnlyB,
            _ => Named::OnlyA,
        }
    }

    /// HF pads the main encoding and every overflow to one length: the
    /// fixed one, else the batch's longest main encoding (`longest`), each
    /// rounded up to `pad_to_multiple_of`.
    fn pad_rows(&self, rows: &mut [PairEncoding], longest: usize) {
        let Some(p) = &self.limits.padding else {
            return;
        };
        let mut n = p.fixed.unwrap_or(longest);
        if let Some(m) = p.multiple_of {
            n = n.div_ceil(m) * m;
        }
        for r in rows.iter_mut() {
            if r.ids.len() < n {
                self.pad_pair(r, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_step_by_keep_minus_stride() {
        assert_eq!(windows(7, 4, 2, false), [(0, 4), (2, 6), (4, 7)]);
        assert_eq!(windows(7, 4, 2, true), [(3, 7), (1, 5), (0, 3)]);
        assert_eq!(windows(7, 3, 0, false), [(0, 3), (3, 6), (6, 7)]);
        assert_eq!(windows(6, 3, 0, true), [(3, 6), (0, 3)]);
        assert_eq!(windows(5, 5, 1, false), [(0, 5)]);
        assert_eq!(windows(5, 0, 0, false), [(0, 0), (0, 5)]);
    }

    #[test]
    fn pair_rows_in_merge_order() {
        // X = A with 3 windows, Y = B with 2: (A1,B0) (A1,B1) (A2,B0) (A2,B1) (A0,B1).
        assert_eq!(
            combinations(3, Some(2), Named::AThenB),
            [
                (0, Some(0)),
                (1, Some(0)),
                (1, Some(1)),
                (2, Some(0)),
                (2, Some(1)),
                (0, Some(1))
            ]
        );
        assert_eq!(
            combinations(2, Some(2), Named::BThenA),
            [(0, Some(0)), (0, Some(1)), (1, Some(1)), (1, Some(0))]
        );
        assert_eq!(combinations(2, None, Named::AThenB), [(0, None), (1, None)]);
        assert_eq!(
            combinations(2, Some(3), Named::OnlyA),
            [(0, Some(0)), (1, Some(0))]
        );
    }

    /// Every case of tests/fixtures/tokenizers/overflow.cases.json (HF
    /// `tokenizers` 0.23, tools/make_tokenizer_overflow_fixtures.py).
    #[test]
    fn matches_hf_overflowing() {
        use serde_json::{json, Value};
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tokenizers");
        let read = |name: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
        };
        let data = read("overflow.cases.json");
        let as_json = |rows: &[PairEncoding]| -> Value {
            Value::Array(
                rows.iter()
                    .map(|r| match &r.offsets {
                        Some(o) => json!({"ids": r.ids, "type_ids": r.type_ids, "offsets": o}),
                        None => json!({"ids": r.ids, "type_ids": r.type_ids}),
                    })
                    .collect(),
            )
        };
        let same = |want: &Value, got: Result<Vec<PairEncoding>>| match got {
            Ok(rows) => *want == as_json(&rows),
            Err(_) => want.get("error").is_some(),
        };
        let texts: Vec<&str> = data["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let pairs: Vec<(&str, &str)> = data["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
            .collect();
        let mut bad = Vec::new();
        for (name, t) in data["tokenizers"].as_object().unwrap() {
            let mut doc = read(t["file"].as_str().unwrap());
            for case in t["cases"].as_array().unwrap() {
                doc["truncation"] = case["truncation"].clone();
                doc["padding"] = case["padding"].clone();
                let tok = crate::bpe::from_json_str(&doc.to_string()).unwrap();
                let at = format!("{name} {} {}", case["truncation"], case["padding"]);
                for (text, want) in texts.iter().zip(case["singles"].as_array().unwrap()) {
                    if !same(want, tok.encode_overflowing(text, None, true, true)) {
                        bad.push(format!("{at} single {text:?}"));
                    }
                }
                for ((a, b), row) in pairs.iter().zip(case["pairs"].as_array().unwrap()) {
                    for (special, key) in [(true, "special"), (false, "plain")] {
                        if !same(
                            &row[key],
                            tok.encode_overflowing(a, Some(b), special, special),
                        ) {
                            bad.push(format!("{at} {key} {a:?} {b:?}"));
                        }
                    }
                }
                let items: Vec<(&str, Option<&str>)> = vec![
                    (texts[0], None),
                    (texts[1], None),
                    (pairs[0].0, Some(pairs[0].1)),
                ];
                let got = tok.encode_overflowing_batch(&items, true, false);
                let want = &case["batch"];
                let ok = match got {
                    Ok(all) => *want == Value::Array(all.iter().map(|r| as_json(r)).collect()),
                    Err(_) => want.get("error").is_some(),
                };
                if !ok {
                    bad.push(format!("{at} batch"));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} differ from HF, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
    }
}
