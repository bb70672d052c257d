//! Writing `tokenizer.json` in the layout HF `tokenizers` writes, so HF
//! loads what mft saves (vocab in id order, merges as [left, right] pairs).

use super::added::AddedToken;
use super::error::{Error, Result};
use super::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or("null".to_string(), q)
}

fn added_token_json(t: &AddedToken) -> Value {
    json!({
        "id": t.id, "content": t.content, "single_word": t.single_word, "lstrip": t.lstrip,
        "rstrip": t.rstrip, "normalized": t.normalized, "special": t.special,
    })
}

pub fn to_json_string(tok: &Tokenizer) -> String {
    let mut out = String::with_capacity(64 * tok.model.vocab_len());
    let pretty = |v: &Value| serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    out.push_str("{\n  \"version\": \"1.0\",\n");
    let _ = writeln!(out, "  \"truncation\": {},", pretty(&tok.raw.truncation));
    let _ = writeln!(out, "  \"padding\": {},", pretty(&tok.raw.padding));
    out.push_str("  \"added_tokens\": [");
    // Sorted by id, as HF writes them.
    let mut added: Vec<&AddedToken> = tok.added.tokens.iter().collect();
    added.sort_by_key(|t| t.id);
    for (i, t) in added.into_iter().enumerate() {
        out.push_str(if i == 0 { "\n    " } else { ",\n    " });
        out.push_str(&pretty(&added_token_json(t)));
    }
    out.push_str(if tok.added.tokens.is_empty() {
        "],\n"
    } else {
        "\n  ],\n"
    });
    let _ = writeln!(out, "  \"normalizer\": {},", pretty(&tok.raw.normalizer));
    let _ = writeln!(
        out,
        "  \"pre_tokenizer\": {},",
        pretty(&tok.raw.pre_tokenizer)
    );
    let _ = writeln!(
        out,
        "  \"post_processor\": {},",
        pretty(&tok.raw.post_processor)
    );
    let _ = writeln!(out, "  \"decoder\": {},", pretty(&tok.raw.decoder));
    let Some(bpe) = tok.model.as_bpe() else {
        // Other models are written back as the file had them.
        let _ = writeln!(out, "  \"model\": {}\n}}", pretty(&tok.raw.model));
        return out;
    };
    let o = &bpe.options;
    out.push_str("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n");
    let _ = writeln!(out, "    \"unk_token\": {},", opt(&o.unk_token));
    let _ = writeln!(
        out,
        "    \"continuing_subword_prefix\": {},",
        opt(&o.continuing_subword_prefix)
    );
    let _ = writeln!(
        out,
        "    \"end_of_word_suffix\": {},",
        opt(&o.end_of_word_suffix)
    );
    let _ = writeln!(out, "    \"fuse_unk\": {},", o.fuse_unk);
    let _ = writeln!(out, "    \"byte_fallback\": {},", o.byte_fallback);
    let _ = writeln!(out, "    \"ignore_merges\": {},", o.ignore_merges);
    out.push_str("    \"vocab\": {");
    for (i, (t, id)) in bpe.vocab_sorted().into_iter().enumerate() {
        out.push_str(if i == 0 { "\n      " } else { ",\n      " });
        let _ = write!(out, "{}: {}", q(t), id);
    }
    out.push_str("\n    },\n    \"merges\": [");
    for (i, (a, b)) in bpe.merge_list().iter().enumerate() {
        out.push_str(if i == 0 { "\n      " } else { ",\n      " });
        let _ = write!(out, "[{}, {}]", q(a), q(b));
    }
    out.push_str("\n    ]\n  }\n}\n");
    out
}

/// Writes to a temporary file beside `path`, then renames it into place.
pub fn save(tok: &Tokenizer, path: &Path) -> Result<()> {
    let text = to_json_string(tok);
    let shown = path.display();
    let file_name = path.file_name().ok_or_else(|| {
        Error::Invalid(format!("cannot save tokenizer to {shown}: not a file path"))
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!("cannot write tokenizer file {shown}: {e}"))
    })
}
