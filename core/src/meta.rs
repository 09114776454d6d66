//! Node metadata: an ordered list of named tokens with options, as in
//! `core;group=group1;master, meta2;labelA=1;labelB=2`.
//!
//! Tokens are separated by `,`; within a token, the name comes first and each option
//! follows a `;`, either as a bare `key` or as `key=value`. Whitespace around every part
//! is ignored. Names, keys and values are non-empty and may not contain `,`, `;`, `=` or
//! whitespace. Token names are unique within a [`Meta`], and keys within a token.
//!
//! The parser never panics and only allocates in proportion to its input. The
//! [`Display`](std::fmt::Display) form is canonical and parses back to the same value.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error from parsing or validating metadata. Metadata being updated is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The text is malformed; carries what was wrong (e.g. `"empty token"`, `"empty key"`).
    #[error("syntax_error: {0}")]
    SyntaxError(String),
}

impl MetaError {
    /// Stable error code: `"syntax_error"`.
    pub fn code(&self) -> &'static str {
        match self {
            MetaError::SyntaxError(_) => "syntax_error",
        }
    }
}

fn syntax(what: &str) -> MetaError {
    MetaError::SyntaxError(what.to_string())
}

/// Node metadata: tokens in order, with unique names.
///
/// Deserialization validates like [`Meta::from_tokens`], so a peer cannot smuggle in a
/// value that would not print and parse back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "MetaWire")]
pub struct Meta {
    tokens: Vec<MetaToken>,
}

/// Unvalidated wire shape of [`Meta`] (same layout as the derived serialization).
#[derive(Deserialize)]
struct MetaWire {
    tokens: Vec<MetaToken>,
}

impl TryFrom<MetaWire> for Meta {
    type Error = MetaError;

    fn try_from(wire: MetaWire) -> Result<Self, Self::Error> {
        Meta::from_tokens(wire.tokens)
    }
}

/// One metadata token: a name and its ordered options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaToken {
    /// Token name.
    pub name: String,
    /// Options in order: a key with an optional value (`;key` or `;key=value`).
    pub options: Vec<(String, Option<String>)>,
}

impl MetaToken {
    /// Looks up an option: `None` if absent, `Some(None)` for a bare key,
    /// `Some(Some(value))` for `key=value`.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Checks the rules a parsed token satisfies (valid, unique keys; valid values).
    fn validate(&self) -> Result<(), MetaError> {
        check_part(&self.name, "name")?;
        let mut keys = BTreeSet::new();
        for (key, value) in &self.options {
            check_part(key, "key")?;
            if let Some(value) = value {
                check_part(value, "value")?;
            }
            if !keys.insert(key.as_str()) {
                return Err(syntax("duplicate key"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for MetaToken {
    /// Canonical form: `name;key;key=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (key, value) in &self.options {
            match value {
                Some(value) => write!(f, ";{key}={value}")?,
                None => write!(f, ";{key}")?,
            }
        }
        Ok(())
    }
}

impl Meta {
    /// Parses metadata text; empty (or all-whitespace) text is empty metadata.
    pub fn parse(s: &str) -> Result<Meta, MetaError> {
        if s.trim().is_empty() {
            return Ok(Meta::default());
        }
        let mut tokens = Vec::new();
        let mut names = BTreeSet::new();
        for raw in s.split(',') {
            let token = parse_token(raw)?;
            if !names.insert(token.name.clone()) {
                return Err(syntax("duplicate token"));
            }
            tokens.push(token);
        }
        Ok(Meta { tokens })
    }

    /// Builds metadata from tokens, checking the same rules as [`Meta::parse`].
    pub fn from_tokens(tokens: Vec<MetaToken>) -> Result<Meta, MetaError> {
        let mut names = BTreeSet::new();
        for token in &tokens {
            token.validate()?;
            if !names.insert(token.name.as_str()) {
                return Err(syntax("duplicate token"));
            }
        }
        Ok(Meta { tokens })
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> &[MetaToken] {
        &self.tokens
    }

    /// The token with this name, if any.
    pub fn get(&self, name: &str) -> Option<&MetaToken> {
        self.tokens.iter().find(|t| t.name == name)
    }

    /// Update: for each token in `other`, replace the token of the same name in place
    /// (keeping its position) or append it at the end.
    pub fn update(&mut self, other: &Meta) {
        for token in &other.tokens {
            match self.tokens.iter_mut().find(|t| t.name == token.name) {
                Some(existing) => existing.clone_from(token),
                None => self.tokens.push(token.clone()),
            }
        }
    }

    /// Remove every token whose name is in `names`; returns how many were removed.
    pub fn remove(&mut self, names: &[&str]) -> usize {
        let before = self.tokens.len();
        self.tokens.retain(|t| !names.contains(&t.name.as_str()));
        before - self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

impl fmt::Display for Meta {
    /// Canonical form: tokens joined by `", "`, options as `;key` or `;key=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, token) in self.tokens.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{token}")?;
        }
        Ok(())
    }
}

impl FromStr for Meta {
    type Err = MetaError;

    /// Same as [`Meta::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Meta::parse(s)
    }
}

/// A name, key or value: non-empty, without `,`, `;`, `=` or whitespace.
fn is_valid_part(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | ';' | '='))
}

/// Checks a part, reporting `"empty <what>"` or `"invalid <what>"`.
fn check_part(s: &str, what: &str) -> Result<(), MetaError> {
    if s.is_empty() {
        Err(MetaError::SyntaxError(format!("empty {what}")))
    } else if !is_valid_part(s) {
        Err(MetaError::SyntaxError(format!("invalid {what}")))
    } else {
        Ok(())
    }
}

/// Parses one token (the text between two commas).
fn parse_token(raw: &str) -> Result<MetaToken, MetaError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(syntax("empty token"));
    }
    let mut parts = raw.split(';');
    let name = parts.next().unwrap_or_default().trim();
    check_part(name, "name")?;
    let mut options = Vec::new();
    let mut keys = BTreeSet::new();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim())),
            None => (part.trim(), None),
        };
        check_part(key, "key")?;
        if let Some(value) = value {
            check_part(value, "value")?;
        }
        if !keys.insert(key) {
            return Err(syntax("duplicate key"));
        }
        options.push((key.to_string(), value.map(str::to_string)));
    }
    Ok(MetaToken {
        name: name.to_string(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(s: &str) -> Meta {
        Meta::parse(s).expect("valid")
    }

    #[test]
    fn parse_original_example() {
        let m = meta("core;group=group1;master, meta2;labelA=1;labelB=2");
        assert_eq!(m.len(), 2);
        let core = m.get("core").expect("present");
        assert_eq!(core.get("group"), Some(Some("group1")));
        assert_eq!(core.get("master"), Some(None));
        assert_eq!(core.get("other"), None);
        assert_eq!(
            m.get("meta2").expect("present").get("labelB"),
            Some(Some("2"))
        );
        assert_eq!(m.get("meta3"), None);
        assert_eq!(
            m.tokens()[1],
            MetaToken {
                name: "meta2".into(),
                options: vec![
                    ("labelA".into(), Some("1".into())),
                    ("labelB".into(), Some("2".into()))
                ],
            }
        );
        assert_eq!(
            m.to_string(),
            "core;group=group1;master, meta2;labelA=1;labelB=2"
        );
        let spaced = meta("  core ; group = group1 ;master ,meta2;labelA=1 ; labelB=2 ");
        assert_eq!(spaced, m);
        assert_eq!(
            "core;group=group1;master"
                .parse::<Meta>()
                .expect("valid")
                .len(),
            1
        );
    }

    #[test]
    fn empty() {
        assert!(meta("").is_empty());
        assert!(meta(" \t ").is_empty());
        assert_eq!(Meta::default().to_string(), "");
    }

    #[test]
    fn errors() {
        let cases = [
            ("a,,b", "empty token"),
            ("a,", "empty token"),
            (",a", "empty token"),
            ("a, ,b", "empty token"),
            (";x", "empty name"),
            ("=x", "invalid name"),
            ("a b", "invalid name"),
            ("a;", "empty key"),
            ("a;;b", "empty key"),
            ("a;=1", "empty key"),
            ("a;k k=1", "invalid key"),
            ("a;k=", "empty value"),
            ("a;k=1=2", "invalid value"),
            ("a;k=1 2", "invalid value"),
            ("a, a;x", "duplicate token"),
            ("a;x;x=1", "duplicate key"),
        ];
        for (input, what) in cases {
            let err = Meta::parse(input).expect_err("invalid");
            assert_eq!(err, MetaError::SyntaxError(what.into()), "{input}");
            assert_eq!(err.code(), "syntax_error");
        }
        assert_eq!(
            Meta::parse("a,,b").expect_err("invalid").to_string(),
            "syntax_error: empty token"
        );
    }

    #[test]
    fn update_and_remove_acceptance() {
        let original = "meta1;a=1";
        let mut m = meta(original);
        m.update(&meta("meta2;b"));
        assert_eq!(m.to_string(), "meta1;a=1, meta2;b");
        m.update(&meta("meta1;c=3"));
        assert_eq!(m.to_string(), "meta1;c=3, meta2;b");
        assert_eq!(m.remove(&["meta2"]), 1);
        assert_eq!(m.to_string(), "meta1;c=3");
        m.update(&meta("meta1;a=1"));
        assert_eq!(m.to_string(), original);
        assert_eq!(m, meta(original));
    }

    #[test]
    fn update_keeps_positions_and_remove_counts() {
        let mut m = meta("a;x, b, c;y=1");
        m.update(&meta("b;z=2, d, a"));
        assert_eq!(m.to_string(), "a, b;z=2, c;y=1, d");
        assert_eq!(m.remove(&["a", "c", "nope"]), 2);
        assert_eq!(m.to_string(), "b;z=2, d");
        assert_eq!(m.remove(&[]), 0);
        m.update(&Meta::default());
        assert_eq!(m.to_string(), "b;z=2, d");
    }

    #[test]
    fn from_tokens_validates() {
        let token = |name: &str, options: Vec<(&str, Option<&str>)>| MetaToken {
            name: name.into(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        };
        let ok = Meta::from_tokens(vec![token("a", vec![("k", Some("v"))]), token("b", vec![])]);
        assert_eq!(ok.expect("valid").to_string(), "a;k=v, b");
        let bad = [
            vec![token("a b", vec![])],
            vec![token("", vec![])],
            vec![token("a", vec![("k;", None)])],
            vec![token("a", vec![("k", Some(""))])],
            vec![token("a", vec![("k", Some("v,w"))])],
            vec![token("a", vec![("k", None), ("k", None)])],
            vec![token("a", vec![]), token("a", vec![])],
        ];
        for tokens in bad {
            assert!(Meta::from_tokens(tokens).is_err());
        }
    }

    #[test]
    fn serde_validates() {
        let m = meta("core;group=group1;master, meta2;labelA=1");
        let bytes = postcard::to_allocvec(&m).expect("serializes");
        assert_eq!(postcard::from_bytes::<Meta>(&bytes), Ok(m));
        let bad = MetaWireOut {
            tokens: vec![MetaToken {
                name: "a b".into(),
                options: vec![],
            }],
        };
        let bytes = postcard::to_allocvec(&bad).expect("serializes");
        assert!(postcard::from_bytes::<Meta>(&bytes).is_err());
    }

    /// Same layout as [`Meta`] but without validation, to forge bad input.
    #[derive(Serialize)]
    struct MetaWireOut {
        tokens: Vec<MetaToken>,
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [";", ",", "=", ";=;", "é;ü=ö", "\u{0}", "a;b=c;d=e,f;g"] {
            let _ = Meta::parse(input);
        }
        assert_eq!(meta("é;ü=ö").to_string(), "é;ü=ö");
    }

    fn part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_./:+@!é-]{1,8}"
    }

    fn token() -> impl Strategy<Value = MetaToken> {
        (
            part(),
            proptest::collection::vec((part(), proptest::option::of(part())), 0..4),
        )
            .prop_map(|(name, options)| {
                let mut seen = BTreeSet::new();
                let options = options
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .collect();
                MetaToken { name, options }
            })
    }

    fn any_meta() -> impl Strategy<Value = Meta> {
        proptest::collection::vec(token(), 0..5).prop_map(|tokens| {
            let mut seen = BTreeSet::new();
            let tokens = tokens
                .into_iter()
                .filter(|t| seen.insert(t.name.clone()))
                .collect();
            Meta { tokens }
        })
    }

    proptest! {
        #[test]
        fn meta_round_trip(m in any_meta()) {
            prop_assert_eq!(Meta::from_tokens(m.tokens().to_vec()), Ok(m.clone()));
            prop_assert_eq!(Meta::parse(&m.to_string()), Ok(m));
        }

        #[test]
        fn meta_update_then_remove(base in any_meta(), other in any_meta()) {
            let mut m = base.clone();
            m.update(&other);
            for token in other.tokens() {
                prop_assert_eq!(m.get(&token.name), Some(token));
            }
            let added: Vec<&str> = other
                .tokens()
                .iter()
                .map(|t| t.name.as_str())
                .filter(|n| base.get(n).is_none())
                .collect();
            prop_assert_eq!(m.len(), base.len() + added.len());
            prop_assert_eq!(m.remove(&added), added.len());
            m.update(&base);
            prop_assert_eq!(m, base);
        }

        #[test]
        fn meta_never_panics(s in any::<String>()) {
            let _ = Meta::parse(&s);
        }

        #[test]
        fn meta_like_never_panics(s in "[a-z=;, é\t]{0,30}") {
            if let Ok(m) = Meta::parse(&s) {
                prop_assert_eq!(Meta::parse(&m.to_string()), Ok(m));
            }
        }
    }
}
